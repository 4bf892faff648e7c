"""The server end to end: a real server on port 0, real websockets clients, the real producer.

The engine is the deterministic stand-in (tests/standin.py) except in the last test, which runs
the tiny random-weight diffusers pipeline through the device queue.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from jam.app import App
from jam.model.blank import TINY_PARAMS
from jam.seeds.library import SeedLibrary
from jam.serve import protocol
from jam.serve.settings import ServerSettings, SessionSettings
from jam.stream.producer import StreamSettings
from tests.serve.client import Client, eventually, http_get, new_prompt_weight, running
from tests.standin import PoisonedRenderer, StandinRenderer, standin_app

WIDTH = 256  # 2.55 s tiles at the tiny params: quick to glide through
LEAD = 1.0
CHUNK = 0.25
TILE_SECONDS = TINY_PARAMS.num_samples(WIDTH) / TINY_PARAMS.sample_rate


@pytest.fixture(scope="module")
def seeds() -> SeedLibrary:
    return SeedLibrary(TINY_PARAMS, width=WIDTH)


SESSION = SessionSettings(lead=LEAD)


def settings(session: SessionSettings = SESSION, idle_seconds: float = 30.0) -> ServerSettings:
    return ServerSettings(port=0, idle_seconds=idle_seconds, session=session)


def app(seeds: SeedLibrary, renderer: StandinRenderer | None = None) -> App:
    return standin_app(seeds, renderer, StreamSettings(chunk_seconds=CHUNK))


async def test_http_routes_serve_page_files_health_status_and_refuse_traversal(seeds) -> None:
    async with running(app(seeds), settings()) as server:
        port = server.port
        status, headers, body = await http_get(port, "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b'<script type="module" src="/app.js">' in body
        status, _, shared = await http_get(port, "/s/abc123")
        assert status == 200 and shared == body
        for path, mime in [
            ("/app.js", "text/javascript"),
            ("/player-worklet.js", "text/javascript"),
            ("/style.css", "text/css"),
        ]:
            status, headers, _ = await http_get(port, path)
            assert (status, headers["content-type"].split(";")[0]) == (200, mime), path
        assert (await http_get(port, "/healthz"))[::2] == (200, b"ok\n")
        status, headers, body = await http_get(port, "/status")
        assert status == 200 and headers["content-type"] == "application/json"
        assert json.loads(body)["sessions"] == 0
        status, _, body = await http_get(port, "/api/info")
        info = json.loads(body)
        assert info["sample_rate"] == TINY_PARAMS.sample_rate
        assert "four_on_floor" in [s["name"] for s in info["seeds"]]
        for bad in [
            "/../pyproject.toml",
            "/%2e%2e/pyproject.toml",
            "/..%2fjam/server.py",
            "/.hidden",
            "/nope.js",
            "/s/",
            "/web/../../etc/passwd",
        ]:
            assert (await http_get(port, bad))[0] == 404, bad
        status, _, _ = await http_get(port, "/ws")  # plain HTTP to the websocket endpoint
        assert status == 426


async def test_every_listener_receives_identical_bytes(seeds) -> None:
    async with running(app(seeds), settings()) as server:
        host = await Client.open(server, {"type": "create", "prompt": "bright disco"})
        welcome = await host.welcome()
        assert welcome["control"] and welcome["token"]
        others = [
            await Client.open(server, {"type": "join", "session": welcome["session"]})
            for _ in range(3)
        ]
        for c in others:
            assert (await c.welcome())["control"] is False
        last = (
            max(f.seq for c in others for _, f, _ in c.audio[:1])
            if all(c.audio for c in others)
            else None
        )
        target = (last or 0) + 12
        for c in [host, *others]:
            await c.until(
                lambda c=c: any(f.seq >= target for _, f, _ in c.audio), 15, f"chunk {target}"
            )
        by_seq = [{f.seq: raw for _, f, raw in c.audio} for c in [host, *others]]
        common = set.intersection(*(set(s) for s in by_seq))
        assert len(common) >= 8
        for seq in common:
            assert len({s[seq] for s in by_seq}) == 1, f"chunk {seq} differs between listeners"
        # the listener count reached everyone
        assert host.of_type("listeners")[-1]["count"] == 4
        for c in [host, *others]:
            await c.close()


async def test_a_prompt_change_replaces_sent_audio_from_the_first_beat_listeners_can_reach(
    seeds,
) -> None:
    async with running(app(seeds), settings()) as server:
        host = await Client.open(server, {"type": "create", "prompt": "old prompt"})
        welcome = await host.welcome()
        guest = await Client.open(server, {"type": "join", "session": welcome["session"]})
        await guest.welcome()
        await host.until(lambda: len(host.audio) >= 8, 10, "audio")
        session = server.hub.get(welcome["session"])
        sent_end = max(f.offset + f.frames for _, f, _ in host.audio)  # published before
        playhead = session.playhead()
        await host.ws.send(json.dumps({"type": "prompt", "text": "new prompt"}))
        state = await host.until(lambda: host.of_type("state"), 5, "state echo")
        assert state[-1]["state"]["prompt"] == "new prompt"

        def first(threshold: float) -> protocol.AudioFrame | None:
            return next(
                (
                    f
                    for _, f, _ in host.audio
                    if new_prompt_weight(f.meta, "new prompt") >= threshold
                ),
                None,
            )

        heard = await host.until(lambda: first(1e-3), 10, "new prompt heard")
        await host.until(lambda: first(0.999), 20, "new prompt at full weight")
        # the render is instant here: the change comes in on the first beat past the playhead
        # plus the splice margin, inside audio already sent, which is sent again from there
        rate = TINY_PARAMS.sample_rate
        beat = TINY_PARAMS.num_samples(WIDTH) / seeds.get("four_on_floor").beats
        splice = next(f for _, f, _ in host.audio if "splice" in f.meta)
        margin = SESSION.splice_margin * rate
        assert playhead + margin <= splice.offset <= heard.offset < sent_end
        assert heard.offset - (playhead + margin) <= beat + 0.5 * rate  # a beat, and latency
        assert session.splices == 1
        # both listeners hold the same samples at the same offsets after the splice
        await guest.until(
            lambda: guest.held and guest.held.end >= host.held.end, 10, "the guest catches up"
        )
        lo = max(host.held.start, guest.held.start)
        hi = min(host.held.end, guest.held.end)
        assert hi - lo > rate and guest.held.splices == host.held.splices == 1
        a = host.held.audio[:, lo - host.held.start : hi - host.held.start]
        b = guest.held.audio[:, lo - guest.held.start : hi - guest.held.start]
        assert np.array_equal(a, b)
        await host.close()
        await guest.close()


async def test_the_controller_switches_through_every_seed_and_every_listener_follows(
    seeds,
) -> None:
    """The page's beat picker: each listed seed is accepted, echoed to all, and played."""
    async with running(app(seeds), settings()) as server:
        host = await Client.open(server, {"type": "create"})
        welcome = await host.welcome()
        names = [s["name"] for s in welcome["seeds"]]
        assert len(names) >= 6 and welcome["state"]["seed_image"] in names
        guest = await Client.open(server, {"type": "join", "session": welcome["session"]})
        await guest.welcome()
        for name in [n for n in names if n != welcome["state"]["seed_image"]]:
            await host.ws.send(json.dumps({"type": "seed_image", "name": name}))
            for c in (host, guest):
                await c.until(
                    lambda c=c, name=name: any(
                        m["state"]["seed_image"] == name for m in c.of_type("state")
                    ),
                    5,
                    f"state naming {name}",
                )
            await guest.until(
                lambda name=name: any(i.meta["seed_image"] == name for i in guest.images),
                10,
                f"a tile from {name}",
            )
            await guest.until(
                lambda name=name: any(f.meta["seed_image"] == name for _, f, _ in guest.audio),
                10,
                f"audio from {name}",
            )
        assert host.of_type("error") == []
        for c in (host, guest):
            await c.close()


async def test_slow_listener_is_dropped_and_never_delays_a_fast_one(seeds) -> None:
    slow_policy = SessionSettings(lead=LEAD, listener_queue_seconds=1.0, kick_after=1.5)
    async with running(app(seeds), settings(slow_policy)) as server:
        fast = await Client.open(server, {"type": "create"})
        session = (await fast.welcome())["session"]
        # A client that never reads, with tiny socket buffers so it backs up quickly.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        slow_ws = await connect(f"ws://127.0.0.1:{server.port}/ws", sock=sock, max_queue=1)
        await slow_ws.send(json.dumps({"type": "join", "session": session}))
        live = server.hub.get(session)
        assert live is not None
        await fast.until(lambda: len(live.listeners) == 2, 5, "slow listener joined")
        joined_at = time.monotonic()
        await fast.until(lambda: len(live.listeners) == 1, 30, "slow listener dropped")
        dropped_at = time.monotonic()
        # The fast listener got every chunk, in order, and kept receiving while the slow one
        # stalled: no gaps, no drop notices, and the stream kept pace with the clock.
        seqs = [f.seq for _, f, _ in fast.audio]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert fast.of_type("dropped") == []
        during = [f for t, f, _ in fast.audio if joined_at <= t <= dropped_at]
        assert sum(f.seconds for f in during) >= 0.5 * (dropped_at - joined_at) - CHUNK
        # The slow client, once it reads again, finds itself disconnected.
        with pytest.raises(ConnectionClosed):
            for _ in range(10_000):
                await asyncio.wait_for(slow_ws.recv(), 10)
        await fast.close()


async def test_late_joiner_starts_at_the_live_edge(seeds) -> None:
    async with running(app(seeds), settings()) as server:
        host = await Client.open(server, {"type": "create"})
        session = (await host.welcome())["session"]
        await host.until(lambda: sum(f.seconds for _, f, _ in host.audio) >= 4.0, 15, "4 s")
        started = time.monotonic()
        late = await Client.open(server, {"type": "join", "session": session})
        welcome = await late.welcome()
        first_t, first, _ = (await late.until(lambda: late.audio, 5, "late audio"))[0]
        assert first_t - started < 1.0, "a late joiner hears audio within a second"
        playhead = welcome["playhead"]
        assert playhead > 0
        assert first.offset <= playhead < first.offset + first.frames, (
            "the late joiner's first chunk is the one playing now, not the start of the stream"
        )
        assert late.images, "the current tile's spectrogram came with the welcome"
        await host.close()
        await late.close()


async def test_bad_input_gets_clear_errors_and_the_server_keeps_serving(seeds) -> None:
    async with running(app(seeds), settings()) as server:
        c = await Client.open(server, {"type": "hello?"})
        assert (await c.error("unknown_type"))["message"]
        await c.ws.send("{not json")
        await c.error("bad_json")
        await c.ws.send(json.dumps({"type": "join", "session": "nope"}))
        await c.error("unknown_session")
        await c.ws.send(json.dumps({"type": "create", "seed_image": "no_such_beat"}))
        assert "no_such_beat" in (await c.error("bad_value"))["message"]
        await c.ws.send(json.dumps({"type": "create"}))
        welcome = await c.welcome()
        await c.ws.send(json.dumps({"type": "prompt", "text": "x" * 1000}))
        await c.error("too_long")
        await c.ws.send(json.dumps({"type": "prompt", "text": "ok", "pad": "y" * 5000}))
        await c.error("too_large")
        await c.ws.send(json.dumps({"type": "seed_image", "name": "no_such_beat"}))
        await c.error("bad_value")
        await c.ws.send(json.dumps({"type": "create"}))
        await c.error("already_joined")
        for i in range(protocol.PROMPT_CHANGES_PER_WINDOW + 1):
            await c.ws.send(json.dumps({"type": "prompt", "text": f"prompt {i}"}))
        assert "try again" in (await c.error("rate_limited"))["message"]
        await c.ws.send(b"\x01\x02")
        await c.error("binary_not_accepted")
        assert not c.closed, "errors below the frame limit keep the connection open"

        listener = await Client.open(server, {"type": "join", "session": welcome["session"]})
        await listener.welcome()
        await listener.ws.send(json.dumps({"type": "prompt", "text": "mine now"}))
        await listener.error("not_controller")
        wrong = await Client.open(
            server, {"type": "join", "session": welcome["session"], "token": "guess"}
        )
        await wrong.error("bad_token")

        huge = await Client.open(server, {"type": "create"})
        await huge.welcome()
        await huge.ws.send("z" * 100_000)  # beyond the websocket frame limit: closed with 1009
        await huge.until(lambda: huge.closed, 5, "close")
        assert huge.ws.close_code == 1009

        # ... and everyone else is still being served
        n = len(c.audio)
        await c.until(lambda: len(c.audio) >= n + 4, 5, "more audio after bad input")
        status = json.loads((await http_get(server.port, "/status"))[2])
        assert status["sessions"] == 2 and status["listeners"] >= 2
        for client in (c, listener, wrong):
            await client.close()


async def test_session_without_listeners_is_stopped_and_freed(seeds) -> None:
    renderer = StandinRenderer(seeds)
    async with running(app(seeds, renderer), settings(idle_seconds=0.5)) as server:
        c = await Client.open(server, {"type": "create"})
        session = (await c.welcome())["session"]
        await c.until(lambda: c.audio, 5, "audio")
        await c.close()
        await eventually(lambda: server.hub.get(session) is None, 5, "session freed")
        calls = renderer.calls
        await asyncio.sleep(0.5)
        assert renderer.calls == calls, "a freed session renders nothing more"
        again = await Client.open(server, {"type": "join", "session": session})
        await again.error("unknown_session")
        await again.close()


async def test_shutdown_closes_listeners_with_1001_and_stops_producers(seeds) -> None:
    server = await app(seeds).serve(ServerSettings(port=0))
    c = await Client.open(server, {"type": "create"})
    await c.welcome()
    await c.until(lambda: c.audio, 5, "audio")
    await server.close()
    await c.until(lambda: c.closed, 5, "close")
    assert c.ws.close_code == 1001
    assert server.hub.sessions == {}
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("session-")]


SIGTERM_SCRIPT = """
import asyncio, logging, sys
sys.path.insert(0, {root!r})
from jam.model.blank import TINY_PARAMS
from jam.seeds.library import SeedLibrary
from jam.serve.server import serve_until_signalled
from jam.serve.settings import ServerSettings
from tests.standin import standin_app
logging.basicConfig(level=logging.INFO)
app = standin_app(SeedLibrary(TINY_PARAMS, width=256))
async def main():
    await serve_until_signalled(await app.server(ServerSettings(port=0)))
asyncio.run(main())
print("exited cleanly", flush=True)
"""


async def test_sigterm_shuts_the_process_down_cleanly(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parent.parent)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SIGTERM_SCRIPT.format(root=root),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        while "jam: open" not in line:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        port = int(line.rsplit(":", 1)[1].strip("/\n"))
        ws = await connect(f"ws://127.0.0.1:{port}/ws")
        await ws.send(json.dumps({"type": "create"}))
        await ws.recv()
        os.kill(proc.pid, signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        rest = (await asyncio.wait_for(proc.stdout.read(), 20)).decode()
        assert await proc.wait() == 0
        assert "exited cleanly" in rest
        assert "Traceback" not in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_real_tiny_diffusers_pipeline_streams_through_the_server(tiny_engine) -> None:
    """The whole path with the real engine: device queue, diffusers img2img, inversion, frames."""
    from jam.model.device_queue import DeviceQueue

    engine = tiny_engine
    queue = DeviceQueue(engine.render, engine.params.sample_rate)
    jam = App(queue, engine.seeds, engine.defaults, queue=queue)
    server = await jam.serve(ServerSettings(port=0))
    try:
        c = await Client.open(server, {"type": "create", "prompt": "tiny techno"})
        welcome = await c.welcome()
        assert welcome["sample_rate"] == engine.params.sample_rate
        started = time.monotonic()
        await c.until(lambda: sum(f.seconds for _, f, _ in c.audio) >= 2.0, 90, "2 s of audio")
        first_audio = c.audio[0][0] - started
        assert c.images and c.images[0].png[:8] == b"\x89PNG\r\n\x1a\n"
        pcm = [f.pcm for _, f, _ in c.audio]
        assert any(abs(p).max() > 0 for p in pcm), "the pipeline's audio is not silent"
        assert c.audio[0][1].meta["prompt"] == "tiny techno"
        await c.ws.send(json.dumps({"type": "prompt", "text": "tiny jazz"}))
        await c.until(lambda: c.of_type("state"), 5, "state echo")
        sent = time.monotonic()
        await c.until(
            lambda: any(new_prompt_weight(f.meta, "tiny jazz") > 0 for _, f, _ in c.audio),
            120,
            "the new prompt in the stream",
        )
        print(
            f"tiny pipeline: first audio {first_audio:.2f} s, new prompt heard after "
            f"{time.monotonic() - sent:.2f} s, rtf {server.hub.stats()['real_time_factor']}"
        )
        await c.close()
    finally:
        await server.close()
        await jam.close()


async def test_a_refused_change_is_answered_with_the_reason_and_the_true_state(seeds) -> None:
    async with running(app(seeds), settings()) as server:
        host = await Client.open(server, {"type": "create", "prompt": "steady"})
        welcome = await host.welcome()
        await host.ws.send(json.dumps({"type": "bpm", "value": 500}))
        error = await host.error("out_of_range")
        assert "between 60" in error["message"]
        state = await host.until(lambda: host.of_type("state"), 5, "the state after a refusal")
        assert state[-1]["state"] == welcome["state"]  # the page snaps its control back
        await host.close()


async def test_a_change_whose_tile_fails_is_taken_back_for_every_listener(seeds) -> None:
    async with running(app(seeds, PoisonedRenderer(seeds)), settings()) as server:
        host = await Client.open(server, {"type": "create", "prompt": "healthy"})
        welcome = await host.welcome()
        guest = await Client.open(server, {"type": "join", "session": welcome["session"]})
        await guest.welcome()
        await host.until(lambda: host.audio, 10, "audio")
        await host.ws.send(json.dumps({"type": "prompt", "text": "poison"}))
        failed = await host.error("generation_failed")
        assert "taken back" in failed["message"]
        for c in (host, guest):
            states = await c.until(
                lambda c=c: [m for m in c.of_type("state") if m["state"]["prompt"] == "healthy"],
                5,
                "the state taken back",
            )
            assert states[-1]["state"]["prompts"] == [{"text": "healthy", "weight": 1.0}]
        assert server.hub.get(welcome["session"]).state.controls.prompt == "healthy"
        for c in (host, guest):
            await c.close()
