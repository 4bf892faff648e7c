"""Edges and workers in one event loop, on a real redis-server, with the stand-in renderer:
the wiring of sessions through Redis (join anywhere, steer anywhere, counts, failover)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from jam.app import App
from jam.cluster.record import ClusterSettings
from jam.cluster.store import Store
from jam.cluster.worker import Worker
from jam.model.blank import TINY_PARAMS
from jam.seeds.library import SeedLibrary
from jam.serve.server import JamServer
from jam.serve.settings import ServerSettings, SessionSettings
from jam.stream.producer import StreamSettings
from tests.cluster.redis_server import RedisServer
from tests.serve.client import Client, eventually
from tests.standin import StandinRenderer, standin_app

WIDTH = 256
FAST = ClusterSettings(lease_ms=1000, renew_every=0.25, presence_ms=2000, presence_every=0.5)


@pytest.fixture(scope="module")
def seeds() -> SeedLibrary:
    return SeedLibrary(TINY_PARAMS, width=WIDTH)


def app(seeds: SeedLibrary) -> App:
    return standin_app(seeds, StandinRenderer(seeds), StreamSettings(chunk_seconds=0.25))


SETTINGS = ServerSettings(port=0, idle_seconds=5.0, session=SessionSettings(lead=1.0), bitrate=0)


@dataclass
class Cluster:
    """Edges and workers sharing one Redis (each with its own connection pool)."""

    app: App
    url: str
    edges: list[JamServer] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)

    def store(self) -> Store:
        store = Store(self.url, FAST, block_ms=300)
        self.stores.append(store)
        return store

    async def edge(self, name: str) -> JamServer:
        server = await self.app.cluster_server(SETTINGS, self.store(), FAST, name=name)
        await server.start()
        self.edges.append(server)
        return server

    async def worker(self, name: str) -> Worker:
        worker = await self.app.worker(SETTINGS, self.store(), FAST, name=name)
        worker.start()
        self.workers.append(worker)
        return worker

    async def close(self) -> None:
        for edge in self.edges:
            await edge.close()
        for worker in self.workers:
            await worker.close()
        for store in self.stores:
            await store.close()


@contextlib.asynccontextmanager
async def cluster(seeds: SeedLibrary, redis_server: RedisServer) -> AsyncIterator[Cluster]:
    store = Store(redis_server.url)
    await store.redis.flushdb()
    await store.close()
    c = Cluster(app(seeds), redis_server.url)
    try:
        yield c
    finally:
        await c.close()


async def audio_after(client: Client, count: int, timeout: float = 10.0) -> None:
    start = len(client.audio)
    await client.until(lambda: len(client.audio) >= start + count, timeout, f"{count} chunks")


async def test_a_session_made_on_one_edge_is_heard_and_steered_from_another(
    seeds, redis_server
) -> None:
    async with cluster(seeds, redis_server) as c:
        a, b = await c.edge("edge-a"), await c.edge("edge-b")
        await c.worker("worker-1")
        owner = await Client.connect(a.port, {"type": "create", "prompt": "lofi piano"})
        welcome = await owner.welcome()
        sid, token = welcome["session"], welcome["token"]
        await audio_after(owner, 4)
        guest = await Client.connect(b.port, {"type": "join", "session": sid})
        steer = await Client.connect(b.port, {"type": "join", "session": sid, "token": token})
        assert (await guest.welcome())["control"] is False
        assert (await steer.welcome())["control"] is True
        await audio_after(guest, 4)
        # three listen on two edges: everyone is told so
        await owner.until(
            lambda: any(m["count"] == 3 for m in owner.of_type("listeners")), 5, "3 listening"
        )
        await steer.ws.send(json.dumps({"type": "prompt", "text": "dark techno"}))
        for client in (owner, guest, steer):
            await client.until(
                lambda cl=client: any(
                    m["state"]["prompt"] == "dark techno" for m in cl.of_type("state")
                ),
                5,
                "the new state",
            )
        # a refusal goes back to whoever sent it, with the state to snap back to
        await steer.ws.send(json.dumps({"type": "seed_image", "name": "no such loop"}))
        err = await steer.error("bad_value")
        assert "no such loop" in err["message"]
        assert not [m for m in guest.of_type("error") + owner.of_type("error")]
        # the guest cannot steer
        await guest.ws.send(json.dumps({"type": "prompt", "text": "polka"}))
        await guest.error("not_controller")
        # the same audio reaches both edges: each held sample is the same
        await audio_after(guest, 2)
        assert owner.held is not None and guest.held is not None
        start = guest.held.start
        end = min(owner.held.end, guest.held.end)
        assert end - start > 4 * 4000
        mine = owner.held.audio[:, start - owner.held.start : end - owner.held.start]
        assert (mine == guest.held.audio[:, : end - start]).all()
        for client in (owner, guest, steer):
            await client.close()


async def test_a_worker_that_stops_renewing_is_replaced_on_the_same_beat_grid(
    seeds, redis_server
) -> None:
    async with cluster(seeds, redis_server) as c:
        edge = await c.edge("edge-a")
        first = await c.worker("worker-1")
        owner = await Client.connect(edge.port, {"type": "create", "prompt": "lofi piano"})
        welcome = await owner.welcome()
        sid = welcome["session"]
        await audio_after(owner, 8)
        second = await c.worker("worker-2")
        # worker-1 dies without a word: its tasks stop, its lease is not released
        first._loop.cancel()  # a crash, not a shutdown
        for task in first.jobs[sid].tasks:
            task.cancel()
        # the 1 s lease runs out, then a round or two; the bound leaves room for a loaded machine
        await eventually(lambda: sid in second.jobs, 10, "worker-2 to claim the session")

        def resumed() -> int | None:  # where worker-2's audio starts: the offsets jump there
            offsets = [(f.offset, f.offset + f.frames) for _, f, _ in owner.audio]
            return next((o for (_, end), (o, _) in itertools.pairwise(offsets) if o != end), None)

        start = await owner.until(resumed, 10, "worker-2's audio")
        tile = [i for i in owner.images if i.offset < start][-1]  # worker-1's last tile
        beat = tile.meta["samples"] / tile.meta["beats"]
        # the continuation starts on a beat of the first worker's grid
        phase = ((start - tile.offset) / beat) % 1
        assert min(phase, 1 - phase) < 1e-3, (start, tile.offset, beat)
        # and it is steerable: the control reaches worker-2
        await owner.ws.send(json.dumps({"type": "prompt", "text": "dark techno"}))
        await owner.until(
            lambda: any(m["state"]["prompt"] == "dark techno" for m in owner.of_type("state")),
            5,
            "the new state",
        )
        await owner.close()


async def test_a_session_nobody_hears_anywhere_stops_rendering_then_ends_everywhere(
    seeds, redis_server
) -> None:
    async with cluster(seeds, redis_server) as c:
        a, b = await c.edge("edge-a"), await c.edge("edge-b")
        worker = await c.worker("worker-1")
        renderer = c.app.renderer
        assert isinstance(renderer, StandinRenderer)
        owner = await Client.connect(a.port, {"type": "create", "prompt": "lofi piano"})
        sid = (await owner.welcome())["session"]
        guest = await Client.connect(b.port, {"type": "join", "session": sid})
        await audio_after(guest, 4)
        await owner.close()
        await audio_after(guest, 2)  # one listener left, on the other edge: it plays on
        await guest.close()
        await eventually(lambda: not worker.jobs[sid].listeners, 5, "the worker to see nobody")
        await asyncio.sleep(1.0)  # what was asked for before is finished
        calls = renderer.calls
        await asyncio.sleep(2.0)
        assert renderer.calls == calls, "nobody listens anywhere: nothing is rendered"
        await eventually(lambda: sid not in worker.jobs, 10, "the idle session to end")
        late = await Client.connect(a.port, {"type": "join", "session": sid})

        def told_it_ended() -> bool:  # an edge that has not yet read the end closes with 4004
            refused = any(m["code"] == "unknown_session" for m in late.of_type("error"))
            return refused or late.ws.close_code == 4004

        await eventually(told_it_ended, 5, "the late joiner to be told the jam ended")
        await late.close()
