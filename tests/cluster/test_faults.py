"""Faults, for real: a real redis-server and ``jam`` subprocesses with the tiny model, killed
with SIGKILL, restarted, and cut off from Redis; listeners are real websocket clients, and what
they hear is measured with the page's player model (:class:`Playout`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jam.cluster.store import Store
from jam.model.blank import TINY_PARAMS
from tests.cluster.processes import Jam, Playout
from tests.cluster.redis_server import RedisServer, free_port
from tests.serve.client import Client

RATE = TINY_PARAMS.sample_rate
SILENCE_LIMIT = 3.0  # the target for a killed worker, with the tiny model on this CPU


@pytest.fixture
def jams(tmp_path: Path) -> Iterator[list[Jam]]:
    """The processes a test started; all stopped afterwards (logs kept in tmp_path)."""
    started: list[Jam] = []
    yield started
    for jam in started:
        jam.stop()
        jam.output()


@pytest.fixture
async def fresh_redis(redis_server: RedisServer) -> RedisServer:
    if redis_server.process is None:
        redis_server.start()
    store = Store(redis_server.url)
    await store.redis.flushdb()
    await store.close()
    return redis_server


def start(
    jams: list[Jam], tmp: Path, tiny_model_dir: Path, kind: str, url: str, *extra: str
) -> Jam:
    args = [kind, "--redis", url, "--model", str(tiny_model_dir), "--bitrate", "0", *extra]
    if kind == "serve" and "--port" not in extra:
        args += ["--port", "0"]
    jam = Jam(args, tmp / f"jam-{len(jams)}.log")
    jams.append(jam)
    return jam


def cluster(
    jams: list[Jam], tmp: Path, model: Path, url: str, edges: int, workers: int
) -> tuple[list[Jam], list[Jam]]:
    """``edges`` edges (``--no-generate``) and ``workers`` workers on ``url``, all ready."""
    started = (
        [start(jams, tmp, model, "serve", url, "--no-generate") for _ in range(edges)],
        [start(jams, tmp, model, "worker", url) for _ in range(workers)],
    )
    for jam in started[0] + started[1]:
        jam.ready()
    return started


def heard(client: Client) -> Playout:
    playout = Playout(RATE)
    for t, frame, _ in client.audio:
        playout.arrive(t, frame.offset, frame.frames)
    return playout


async def seconds_of_audio(client: Client, seconds: float, timeout: float = 30.0) -> None:
    def enough() -> bool:
        return sum(f.frames for _, f, _ in client.audio) >= seconds * RATE

    await client.until(enough, timeout, f"{seconds} s of audio")


async def state_says(client: Client, prompt: str, timeout: float = 10.0) -> None:
    await client.until(
        lambda: any(m["state"]["prompt"] == prompt for m in client.of_type("state")),
        timeout,
        f"the state to say {prompt!r}",
    )


async def test_killing_the_worker_of_a_session_leaves_under_3s_of_silence_and_loses_no_change(
    fresh_redis, jams, tmp_path, tiny_model_dir
) -> None:
    url = fresh_redis.url
    (edge_a, edge_b), workers = cluster(jams, tmp_path, tiny_model_dir, url, 2, 2)
    owner = await Client.connect(edge_a.port, {"type": "create", "prompt": "lofi piano"})
    sid = (await owner.welcome())["session"]
    guest = await Client.connect(edge_b.port, {"type": "join", "session": sid})
    await guest.welcome()
    await seconds_of_audio(guest, 4)
    # a change acknowledged (its state came back) just before the crash is not lost
    await owner.ws.send(json.dumps({"type": "prompt", "text": "dark techno"}))
    await state_says(owner, "dark techno")
    store = Store(url)
    try:
        name = await store.owner(sid)
        victim = next(w for w in workers if w.name == name)
        victim.kill()
        killed = time.monotonic()
        survivor = next(w for w in workers if w is not victim)
        await asyncio.sleep(8.0)
        assert await store.owner(sid) == survivor.name
        record = await store.load(sid)
        assert record is not None and record.controls.prompt == "dark techno"
    finally:
        await store.close()
    now = time.monotonic()
    for client in (owner, guest):
        playout = heard(client)
        gaps = [(t - killed, s) for t, s in playout.silences if t > killed - 3]
        longest = playout.longest_silence(now)
        print(f"worker killed: listener silences {gaps}, longest {longest:.2f} s")
        assert longest <= SILENCE_LIMIT, gaps
        assert sum(f.frames for t, f, _ in client.audio if t > killed + 4) > 2 * RATE
    # the survivor renders what the controller says now
    await owner.ws.send(json.dumps({"type": "prompt", "text": "sunny reggae"}))
    await state_says(guest, "sunny reggae")
    await owner.until(
        lambda: any(i.meta["prompt_to"] == "sunny reggae" for i in owner.images),
        15,
        "a tile of the new prompt",
    )
    for jam in (edge_a, edge_b, survivor):
        assert jam.alive(), jam.output()
    await owner.close()
    await guest.close()


async def test_killing_an_edge_its_listeners_rejoin_the_same_session_elsewhere_within_3s(
    fresh_redis, jams, tmp_path, tiny_model_dir
) -> None:
    url = fresh_redis.url
    (edge_a, edge_b), (worker,) = cluster(jams, tmp_path, tiny_model_dir, url, 2, 1)
    owner = await Client.connect(edge_a.port, {"type": "create", "prompt": "lofi piano"})
    welcome = await owner.welcome()
    sid, token = welcome["session"], welcome["token"]
    await seconds_of_audio(owner, 3)
    edge_a.kill()
    killed = time.monotonic()
    await owner.until(lambda: owner.closed, 5, "the dead edge's socket to drop")
    # the page's reconnect, pointed at the other edge: the same session and control link
    again = await Client.connect(edge_b.port, {"type": "join", "session": sid, "token": token})
    rejoined = await again.welcome()
    await again.until(lambda: again.audio, 5, "audio on the other edge")
    back = again.audio[0][0] - killed
    print(f"edge killed: back in the same session {back:.2f} s later")
    assert rejoined["session"] == sid and rejoined["control"] is True
    assert back <= 3.0
    await again.ws.send(json.dumps({"type": "prompt", "text": "dark techno"}))
    await state_says(again, "dark techno")
    assert edge_b.alive() and worker.alive()
    await again.close()


async def test_restarting_an_all_in_one_server_resumes_its_share_links(
    fresh_redis, jams, tmp_path, tiny_model_dir
) -> None:
    port = str(free_port())
    server = start(jams, tmp_path, tiny_model_dir, "serve", fresh_redis.url, "--port", port)
    server.ready()
    owner = await Client.connect(server.port, {"type": "create", "prompt": "lofi piano"})
    welcome = await owner.welcome()
    sid, token = welcome["session"], welcome["token"]
    await owner.ws.send(json.dumps({"type": "bpm", "value": 100}))
    await owner.until(
        lambda: any(m["state"]["bpm"] == 100 for m in owner.of_type("state")), 10, "bpm 100"
    )
    await seconds_of_audio(owner, 3)
    server.stop()  # a deploy: SIGTERM
    assert owner.closed or await owner.until(lambda: owner.closed, 5, "the close")
    assert owner.ws.close_code == 1001
    again = start(jams, tmp_path, tiny_model_dir, "serve", fresh_redis.url, "--port", port)
    again.ready()
    guest = await Client.connect(again.port, {"type": "join", "session": sid})
    controller = await Client.connect(again.port, {"type": "join", "session": sid, "token": token})
    assert (await guest.welcome())["state"]["bpm"] == 100
    assert (await controller.welcome())["control"] is True
    await seconds_of_audio(guest, 2, timeout=15)
    await guest.close()
    await controller.close()


async def test_redis_stopped_for_seconds_no_process_dies_listeners_are_told_and_it_resumes(
    fresh_redis, jams, tmp_path, tiny_model_dir
) -> None:
    (edge,), (worker,) = cluster(jams, tmp_path, tiny_model_dir, fresh_redis.url, 1, 1)
    owner = await Client.connect(edge.port, {"type": "create", "prompt": "lofi piano"})
    await owner.welcome()
    await seconds_of_audio(owner, 3)
    fresh_redis.stop()
    await owner.until(
        lambda: any(m["level"] == "warn" for m in owner.of_type("notice")), 5, "a notice"
    )
    # a change while Redis is away is refused in so many words (nothing half-done)
    await owner.ws.send(json.dumps({"type": "prompt", "text": "dark techno"}))
    err = await owner.error("unavailable")
    assert "unreachable" in err["message"]
    await asyncio.sleep(3.0)
    fresh_redis.start()
    restarted = time.monotonic()
    await owner.until(
        lambda: any(m["level"] == "info" for m in owner.of_type("notice")), 10, "the all clear"
    )
    await owner.until(
        lambda: any(t > restarted for t, _, _ in owner.audio), 10, "audio after the outage"
    )
    await owner.ws.send(json.dumps({"type": "prompt", "text": "sunny reggae"}))
    try:
        await state_says(owner, "sunny reggae")
    except AssertionError:
        print([m for _, m in owner.messages if m["type"] != "health"][-8:])
        raise
    assert edge.alive(), edge.output()
    assert worker.alive(), worker.output()
    with contextlib.suppress(Exception):
        await owner.close()
