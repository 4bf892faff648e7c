"""Admission by capacity: how many sessions the server admits before ``server_full``, and
whether the admitted ones keep up.

    python benchmarks/bench_admission.py                    # the shipped embedded model, CPU
    python benchmarks/bench_admission.py --engine tiny --settle 8

One listener per session (real websockets over loopback). After each admitted session the
device settles for ``--settle`` seconds; then the next ``create`` is tried. A listener
"underruns" when a chunk arrives after its play time (first chunk + 0.3 s jitter buffer, the
page's rule).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_server import PlayClock, build
from jam.cli import quiet_libraries
from jam.serve import protocol
from jam.serve.admission import Admission
from jam.serve.settings import ServerSettings


class Listener:
    """Plays one session on the page's clock and counts underruns."""

    def __init__(self, ws: ClientConnection, rate: int) -> None:
        self.ws, self.rate = ws, rate
        self.underruns = 0
        self.audio = 0.0
        self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        clock = PlayClock(self.rate)
        async for msg in self.ws:
            if isinstance(msg, str) or msg[:4] != protocol.AUDIO_MAGIC:
                continue
            _, _, offset, _, _, _, frames, _ = protocol.AUDIO_HEADER.unpack_from(msg)
            self.underruns += clock.lateness(offset, frames, time.monotonic()) > 0
            self.audio += frames / self.rate


async def main() -> None:
    quiet_libraries()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--engine", choices=["tiny", "default"], default="default")
    ap.add_argument("--settle", type=float, default=12.0, help="seconds per admitted session")
    ap.add_argument("--headroom", type=float, default=Admission().headroom)
    ap.add_argument("--max", type=int, default=16, help="stop after this many sessions")
    args = ap.parse_args()

    app = build(args.engine, 0.0)
    admission = Admission(max_sessions=args.max, per_client=args.max, headroom=args.headroom)
    server = await app.serve(ServerSettings(port=0, admission=admission))
    url = f"ws://127.0.0.1:{server.port}/ws"
    listeners: list[Listener] = []
    try:
        while len(listeners) < args.max:
            ws = await connect(url, max_size=None)
            await ws.send(json.dumps({"type": "create"}))
            reply = json.loads(await ws.recv())
            status = server.status()
            if reply["type"] == "error":
                print(
                    f"session {len(listeners) + 1}: refused {reply['code']} "
                    f"(retry_after {reply.get('retry_after')} s): {reply['message']}"
                )
                await ws.close()
                break
            listeners.append(Listener(ws, app.sample_rate))
            before = [li.underruns for li in listeners]
            await asyncio.sleep(args.settle)
            status = server.status()
            late = sum(li.underruns - b for li, b in zip(listeners, before, strict=False))
            print(
                f"session {len(listeners)} admitted: device {status['device_utilization']} busy, "
                f"worst speed {status['real_time_factor']}x real time, "
                f"underruns in the last {args.settle:.0f} s: {late}"
            )
    finally:
        for li in listeners:
            li.task.cancel()
            await li.ws.close()
        await server.close()
        await app.close()
    print(f"admitted {len(listeners)} sessions at headroom {args.headroom}")


if __name__ == "__main__":
    asyncio.run(main())
