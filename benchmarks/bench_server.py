"""Server figures: time to first audio, prompt-change latency, listeners held without underruns.

    python benchmarks/bench_server.py                    # deterministic stand-in engine
    python benchmarks/bench_server.py --engine tiny      # tiny random-weight diffusers pipeline
    python benchmarks/bench_server.py --engine default   # the shipped embedded model
    python benchmarks/bench_server.py --listeners 1 16 64 128 --seconds 20

Clients run in this process (real websockets over loopback), so on a small machine the listener
figure is a lower bound: clients and server share the CPU. A listener "underruns" when a chunk
arrives after its play time on a clock started at its first chunk plus a 0.3 s jitter buffer
(the page's rule).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jam.app import App
from jam.serve import protocol
from jam.serve.server import JamServer
from jam.serve.settings import ServerSettings

JITTER = 0.3


class PlayClock:
    """The page's playback rule: a chunk plays at its offset on a clock started at the first
    chunk plus the jitter buffer; one that arrives after its play time is an underrun, and the
    clock restarts there (the page re-buffers)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.start: float | None = None
        self.first = 0

    def lateness(self, offset: int, now: float) -> float:
        """Seconds the chunk at ``offset`` arrived after its play time (<= 0: on time)."""
        if self.start is None:
            self.start, self.first = now + JITTER, offset
            return 0.0
        late = now - (self.start + (offset - self.first) / self.rate)
        if late > 0:
            self.start, self.first = now + JITTER, offset
        return late


def prompt_share(meta: dict[str, Any], prompt: str) -> float:
    return sum(
        s["weight"]
        * ((1 - s["alpha"]) * (s["prompt"] == prompt) + s["alpha"] * (s["prompt_to"] == prompt))
        for s in meta["mix"]
    )


def engine_arguments(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's parser with the engine choice every server benchmark shares."""
    ap = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--engine", choices=["standin", "standin44k", "tiny", "default"], default="standin"
    )
    ap.add_argument("--delay", type=float, default=0.0, help="stand-in render time per tile (s)")
    return ap


def build(engine: str, delay: float) -> App:
    """The app the benchmark serves, built by the composition root as ``jam serve`` builds it."""
    if engine == "default":
        return App.load(None, "cpu")  # the shipped embedded model
    if engine == "tiny":
        from jam.model.blank import TINY_PARAMS, build_pipeline
        from jam.model.folder import ModelDefaults

        defaults = ModelDefaults(tile_width=512, steps=8, strength=0.75, guidance=7.0)
        folder = build_pipeline(Path(tempfile.mkdtemp()), "tiny", TINY_PARAMS, defaults, seed=0)
        return App.load(folder, "cpu")
    from jam.model.blank import TINY_PARAMS
    from jam.seeds.library import SeedLibrary
    from jam.sound.params import SpectrogramParams
    from tests.standin import StandinRenderer, standin_app

    params = SpectrogramParams() if engine == "standin44k" else TINY_PARAMS
    seeds = SeedLibrary(params, width=512)
    return standin_app(seeds, StandinRenderer(seeds, delay))


async def first_audio_and_prompt_latency(server: JamServer, trials: int) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{server.port}/ws"
    async with connect(url, max_size=None) as ws:
        t0 = time.monotonic()
        await ws.send(json.dumps({"type": "create", "prompt": "prompt 0"}))
        first = clock = first_offset = None
        heard: list[float] = []
        full: list[float] = []
        heard_play: list[float] = []
        full_play: list[float] = []
        for k in range(1, trials + 1):
            target, sent, got_a, play_a = f"prompt {k}", None, None, None
            while True:
                msg = await asyncio.wait_for(ws.recv(), 120)
                if isinstance(msg, str):
                    continue
                frame = protocol.decode_frame(msg)
                if not isinstance(frame, protocol.AudioFrame):
                    continue
                now = time.monotonic()
                if first is None:
                    first = now - t0
                    clock, first_offset = now + JITTER, frame.offset  # the page's playback clock
                plays_at = clock + (frame.offset - first_offset) / frame.sample_rate
                if sent is None:
                    if (
                        now - t0 > 3.0 + 10.0 * (k - 1)
                        and prompt_share(frame.meta, f"prompt {k - 1}") > 0.999
                    ):
                        await ws.send(json.dumps({"type": "prompt", "text": target}))
                        sent = time.monotonic()
                    continue
                share = prompt_share(frame.meta, target)
                if got_a is None and share > 0:
                    got_a, play_a = now - sent, plays_at - sent
                if share >= 0.999:
                    heard.append(got_a if got_a is not None else now - sent)
                    heard_play.append(play_a if play_a is not None else plays_at - sent)
                    full.append(now - sent)
                    full_play.append(plays_at - sent)
                    break
    return {
        "first_audio_s": first,
        "prompt_first_s": heard,
        "prompt_full_s": full,
        "prompt_first_heard_s": heard_play,
        "prompt_full_heard_s": full_play,
    }


async def listeners_held(server: JamServer, n: int, seconds: float, rate: int) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{server.port}/ws"
    host = await connect(url, max_size=None)
    await host.send(json.dumps({"type": "create"}))
    welcome = json.loads(await host.recv())
    underruns = [0] * (n + 1)
    received = [0.0] * (n + 1)

    async def listen(i: int, ws: Any) -> None:
        clock = PlayClock(rate)
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                msg = await asyncio.wait_for(ws.recv(), 30)
                if isinstance(msg, str) or msg[:4] != protocol.AUDIO_MAGIC:
                    continue
                _, _, offset, _, _, _, frames, _ = protocol.AUDIO_HEADER.unpack_from(msg)
                underruns[i] += clock.lateness(offset, time.monotonic()) > 0
                received[i] += frames / rate
        except Exception:  # disconnected or starved: count as failed
            underruns[i] += 1000

    others = []
    for _ in range(n - 1):
        ws = await connect(url, max_size=None)
        await ws.send(json.dumps({"type": "join", "session": welcome["session"]}))
        others.append(ws)
    clients = [host, *others]
    await asyncio.gather(*(listen(i, ws) for i, ws in enumerate(clients)))
    for ws in clients:
        await ws.close()
    ok = sum(1 for i in range(n) if underruns[i] == 0)
    return {"listeners": n, "without_underruns": ok, "audio_s_min": round(min(received[:n]), 1)}


async def main() -> None:
    ap = engine_arguments(__doc__)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--listeners", type=int, nargs="*", default=[1, 16, 64])
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()

    app = build(args.engine, args.delay)
    settings = ServerSettings(port=0)
    server = await app.serve(settings)
    rate = app.sample_rate
    try:
        lat = await first_audio_and_prompt_latency(server, args.trials)
        print(f"engine: {args.engine}  lead {settings.session.lead:.1f} s")
        print(f"time to first audio (create -> first chunk): {lat['first_audio_s']:.2f} s")
        for name, key in [
            ("(a) first chunk with the new prompt arrives", "prompt_first_s"),
            ("(a) ... and is heard (page clock)", "prompt_first_heard_s"),
            ("(b) chunk at full weight arrives", "prompt_full_s"),
            ("(b) ... and is heard (page clock)", "prompt_full_heard_s"),
        ]:
            v = lat[key]
            print(
                f"prompt change {name}: median {statistics.median(v):.2f} s "
                f"(min {min(v):.2f}, max {max(v):.2f}, n={len(v)})"
            )
        rtf = server.hub.stats()["real_time_factor"]
        print(f"generation speed: {rtf}x real time (audio seconds per second; > 1 keeps up)")
        for n in args.listeners:
            r = await listeners_held(server, n, args.seconds, rate)
            print(
                f"listeners {r['listeners']:4d}: {r['without_underruns']} without underruns "
                f"over {args.seconds:.0f} s (least audio received {r['audio_s_min']} s)"
            )
    finally:
        await server.close()
        await app.close()


if __name__ == "__main__":
    asyncio.run(main())
