"""Nobody can break a jam they don't own: poisons, floods, other origins, other methods.

Real servers on 127.0.0.1 with real websockets clients; the poison test runs the real engine
path (the tiny random-weight diffusers pipeline through the device queue).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from jam.app import App
from jam.model.blank import TINY_PARAMS
from jam.model.device_queue import DeviceQueue
from jam.model.types import WeightedPrompt
from jam.seeds.library import SeedLibrary
from jam.serve.settings import ServerSettings, SessionSettings
from jam.stream.producer import StreamSettings
from tests.serve.client import Client, http_get, running
from tests.standin import PoisonedRenderer, standin_app

SETTINGS = ServerSettings(port=0, session=SessionSettings(lead=1.0))


@pytest.fixture(scope="module")
def seeds() -> SeedLibrary:
    return SeedLibrary(TINY_PARAMS, width=256)


def audio_seconds(c: Client) -> float:
    return sum(f.seconds for _, f, _ in c.audio)


async def test_poisoned_controls_fail_only_the_session_they_reach(tiny_engine) -> None:
    queue = DeviceQueue(tiny_engine.render, tiny_engine.params.sample_rate)
    app = App(queue, tiny_engine.seeds, tiny_engine.defaults, StreamSettings(max_failures=3), queue)
    async with running(app, SETTINGS) as server:
        clients = [await Client.open(server, {"type": "create"}) for _ in range(3)]
        welcomes = [await c.welcome() for c in clients]
        for c in clients:
            await c.until(lambda c=c: audio_seconds(c) >= 1.0, 60, "audio")
        low, odd, poisoned = clients
        # the page's own slider minimum: used to render no step and fail the whole batch
        await low.ws.send(json.dumps({"type": "strength", "value": 0.05}))
        # a lone surrogate inside a prompt (a JSON escape): cleaned before any tokenizer
        await odd.ws.send('{"type": "prompt", "text": "lo\\ud800fi \\u202ehouse"}')
        await odd.until(lambda: odd.of_type("state"), 5, "state")
        assert odd.of_type("state")[-1]["state"]["prompt"] == "lofi house"
        # a poison nothing at the entry knows about, straight into one session's state: its
        # renders raise inside the engine, batched with the other sessions' tiles
        server.hub.get(welcomes[2]["session"]).state.set_prompts((WeightedPrompt("   ", 1.0),))
        failed = await poisoned.error("generation_failed")
        assert "prompt is empty" in failed["message"]
        # every session plays on: the failed switch's slot repeats the last good tile
        heard = [audio_seconds(c) for c in clients]
        for c, before in zip(clients, heard, strict=True):
            await c.until(lambda c=c, b=before: audio_seconds(c) >= b + 2.0, 60, "more audio")
            assert not c.closed
        for c in (low, odd):
            assert [e for e in c.of_type("error") if e["code"] == "generation_failed"] == []
        assert queue.failures >= 1
        for c in clients:
            await c.close()
    await app.close()


async def test_a_session_that_cannot_render_ends_and_says_why_before_closing(seeds) -> None:
    app = standin_app(seeds, PoisonedRenderer(seeds), StreamSettings(max_failures=3))
    async with running(app, SETTINGS) as server:
        healthy = await Client.open(server, {"type": "create", "prompt": "healthy groove"})
        doomed = await Client.open(server, {"type": "create", "prompt": "poison"})
        await doomed.welcome()
        await doomed.until(lambda: doomed.audio, 10, "the seed loop plays meanwhile")
        await doomed.until(lambda: doomed.closed, 30, "the session ends")
        assert doomed.ws.close_code == 4004
        codes = [(e["code"], e["message"]) for e in doomed.of_type("error")]
        assert [c for c, _ in codes].count("generation_failed") == 3  # 2 repeats, then the end
        assert "3 renders failed in a row" in codes[-1][1]
        await healthy.until(lambda: audio_seconds(healthy) >= 3.0, 10, "the other plays on")
        assert not healthy.closed
        await healthy.close()


FLOODER = """
import asyncio, json, sys, time
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

async def main(port, session, seconds):
    sent = cut_off = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:  # bounded: reconnect each time it is cut off
        try:  # reads nothing it is sent, and does not linger when cut off
            async with connect(f"ws://127.0.0.1:{port}/ws", max_queue=1, close_timeout=0.1) as ws:
                await ws.send(json.dumps({"type": "join", "session": session}))
                while time.monotonic() < until:
                    await ws.send("x")
                    sent += 1
        except ConnectionClosed:
            cut_off += 1
    print(sent, cut_off)

asyncio.run(main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3])))
"""


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def test_a_flooding_listener_is_cut_off_and_nobody_else_hears_a_gap(seeds) -> None:
    async with running(standin_app(seeds), SETTINGS) as server:
        host = await Client.open(server, {"type": "create"})
        session = (await host.welcome())["session"]
        others = [await Client.open(server, {"type": "join", "session": session}) for _ in range(2)]
        for c in (host, *others):
            await c.until(lambda c=c: len(c.audio) >= 4, 10, "audio")
        rss_before = rss_mb()
        flood_started = time.monotonic()
        flooder = await asyncio.create_subprocess_exec(  # its own process, as a real one is
            sys.executable,
            "-c",
            FLOODER,
            str(server.port),
            session,
            "10",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(flooder.communicate(), 60)
        sent, cut_off = map(int, out.split())
        await asyncio.sleep(0.5)
        print(f"flood: {sent} messages in 10 s, cut off {cut_off} times")
        assert cut_off >= 3, "every connection of the flooder is cut off within seconds"
        worst = 0.0
        for c in (host, *others):
            times = [t for t, _, _ in c.audio if t >= flood_started]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert len(times) >= 30 and max(gaps) <= 0.5, f"gap of {max(gaps):.2f} s"
            worst = max(worst, *gaps)
        grown = rss_mb() - rss_before
        print(f"flood: others' longest gap {worst:.3f} s; server process grew {grown:.1f} MB")
        assert grown <= 100
        for c in (host, *others):
            await c.close()


async def test_only_the_pages_own_origin_may_open_the_stream_unless_allowed(seeds) -> None:
    async with running(standin_app(seeds), SETTINGS) as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        with pytest.raises(InvalidStatus) as refused:
            await connect(url, origin="http://evil.example")
        assert refused.value.response.status_code == 403
        async with connect(url, origin=f"http://127.0.0.1:{server.port}") as ws:
            await ws.send(json.dumps({"type": "create"}))
            assert json.loads(await ws.recv())["type"] == "welcome"
        async with connect(url) as ws:  # no Origin: not a browser page, nothing to forge
            await ws.send(json.dumps({"type": "create"}))
            assert json.loads(await ws.recv())["type"] == "welcome"
    allowed = ServerSettings(port=0, allow_origins=("https://jam.example.org",))
    async with running(standin_app(seeds), allowed) as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with connect(url, origin="https://jam.example.org") as ws:
            await ws.send(json.dumps({"type": "create"}))
            assert json.loads(await ws.recv())["type"] == "welcome"


async def test_http_answers_get_and_head_only_and_status_keeps_ids_private(seeds) -> None:
    settings = ServerSettings(port=0, operator_token="op-secret")
    async with running(standin_app(seeds), settings) as server:
        host = await Client.open(server, {"type": "create"})
        session = (await host.welcome())["session"]
        assert len(session) >= 20, "session ids are long enough not to be enumerated"
        status, headers, body = await http_get(server.port, "/", method="POST")
        assert status == 405 and headers["allow"] == "GET, HEAD"
        status, headers, body = await http_get(server.port, "/", method="HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 100
        public = (await http_get(server.port, "/status"))[2]
        assert json.loads(public)["sessions"] == 1 and session.encode() not in public
        assert session.encode() not in (await http_get(server.port, "/status?token=guess"))[2]
        operator = json.loads((await http_get(server.port, "/status?token=op-secret"))[2])
        assert [d["id"] for d in operator["detail"]] == [session]
        await host.close()
