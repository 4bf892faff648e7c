"""Soak figures: memory over time and gaps heard while listeners come and go for minutes.

    python benchmarks/bench_soak.py                      # 60 s, deterministic stand-in engine
    python benchmarks/bench_soak.py --seconds 30
    python benchmarks/bench_soak.py --engine tiny        # tiny random-weight diffusers pipeline
    python benchmarks/bench_soak.py --sessions 3 --max-listeners 20 --churn 0.5 --seconds 600

A real server on 127.0.0.1 (port 0) runs ``--sessions`` jams. Each has a host and ``--stayers``
listeners that stay the whole run; about every ``--churn`` seconds a random session gains or
loses 1-3 listeners, wandering between random sizes from ``--min-listeners`` to
``--max-listeners`` (host and stayers included). Every 5 s this
process's RSS is printed, so a leak per join/leave shows as a climb. The stayers keep the
page's play clock (bench_server's rule): it starts at their first chunk plus a 0.3 s jitter
buffer; a chunk arriving after its play time is an underrun (the clock then re-buffers), and
one more than 0.5 s late is an audible gap. Clients share this process and its CPU with the
server, so on a small machine the figures are a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_server import PlayClock, build, engine_arguments

from jam.serve import protocol
from jam.serve.server import JamServer
from jam.serve.settings import ServerSettings

AUDIBLE_GAP = 0.5  # seconds late: a silence anyone notices
RSS_EVERY = 5.0
RECV_TIMEOUT = 30.0


def rss_mb() -> float:
    """This process's resident set size (server and clients together), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Totals:
    joined: int = 0
    left: int = 0
    refused: int = 0
    kicked: int = 0  # closed by the server (4008 too slow, or anything unexpected)
    frames: int = 0
    rss: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class Stayer:
    """One stayer's view of its stream on the page's play clock."""

    rate: int
    clock: PlayClock = field(init=False)
    last_arrival: float | None = None
    last_seq: int | None = None
    frames: int = 0
    underruns: int = 0
    audible_gaps: int = 0
    max_late: float = 0.0  # seconds a chunk arrived after its play time
    max_arrival_gap: float = 0.0  # seconds between consecutive chunks' arrivals
    seq_gaps: int = 0  # chunks the server dropped for this listener
    failed: str | None = None

    def __post_init__(self) -> None:
        self.clock = PlayClock(self.rate)

    def arrive(self, seq: int, offset: int, frames: int, now: float) -> None:
        self.frames += 1
        if self.last_seq is not None and seq != self.last_seq + 1:
            self.seq_gaps += 1
        self.last_seq = seq
        if self.last_arrival is not None:
            self.max_arrival_gap = max(self.max_arrival_gap, now - self.last_arrival)
        self.last_arrival = now
        late = self.clock.lateness(offset, frames, now)
        if late > 0:
            self.underruns += 1
            self.audible_gaps += late > AUDIBLE_GAP
            self.max_late = max(self.max_late, late)


async def hello(url: str, message: dict[str, Any]) -> tuple[ClientConnection, dict[str, Any]]:
    """Connect and say hello; the welcome, or ConnectionError with the server's refusal."""
    ws = await connect(url, max_size=None)
    await ws.send(json.dumps(message))
    while True:
        reply = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
        if isinstance(reply, str):
            msg = json.loads(reply)
            if msg["type"] == "welcome":
                return ws, msg
            if msg["type"] == "error":
                await ws.close()
                raise ConnectionError(msg["code"])


async def drain(
    ws: ClientConnection, stop: asyncio.Event, totals: Totals, stayer: Stayer | None
) -> None:
    """Read everything (a listener that stops reading is dropped, then kicked) until told."""
    stopping = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            recv = asyncio.create_task(ws.recv())
            done, _ = await asyncio.wait(
                {recv, stopping}, timeout=RECV_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            if recv not in done:
                recv.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await recv
                if not stop.is_set():
                    raise TimeoutError(f"nothing for {RECV_TIMEOUT:.0f} s")
                break
            msg = recv.result()
            if isinstance(msg, str) or msg[:4] != protocol.AUDIO_MAGIC:
                continue
            totals.frames += 1
            if stayer is not None:
                _, seq, offset, _, _, _, frames, _ = protocol.AUDIO_HEADER.unpack_from(msg)
                stayer.arrive(seq, offset, frames, time.monotonic())
    except Exception as e:  # closed by the server or starved: the run reports it
        totals.kicked += 1
        if stayer is not None:
            stayer.failed = f"{type(e).__name__}: {e}"
    finally:
        stopping.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 5)


@dataclass
class Churner:
    ws: ClientConnection
    stop: asyncio.Event
    task: asyncio.Task[None]


async def soak(server: JamServer, args: argparse.Namespace, rate: int) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{server.port}/ws"
    rng = random.Random(args.seed)
    totals = Totals()
    finish = asyncio.Event()
    stayers: list[Stayer] = []
    stay_tasks: list[asyncio.Task[None]] = []
    sessions: list[str] = []
    churners: list[list[Churner]] = []
    for k in range(args.sessions):
        try:
            ws, welcome = await hello(url, {"type": "create", "prompt": f"soak {k}"})
        except ConnectionError as e:  # e.g. the per-client session limit of the admission
            raise SystemExit(f"the server refused session {k + 1}: {e}") from None
        sessions.append(welcome["session"])
        churners.append([])
        members = [ws]
        for _ in range(args.stayers):
            members.append((await hello(url, {"type": "join", "session": sessions[k]}))[0])
        for member in members:
            stayers.append(Stayer(rate))
            stay_tasks.append(asyncio.create_task(drain(member, finish, totals, stayers[-1])))
    fixed = 1 + args.stayers
    lo, hi = max(fixed, args.min_listeners), args.max_listeners
    targets = [rng.randint(lo, hi) for _ in sessions]  # each session's size wanders

    async def churn_once() -> None:
        """One step: a random session moves 1-3 listeners towards its (sometimes new) size."""
        k = rng.randrange(len(sessions))
        if rng.random() < 0.1 or targets[k] == fixed + len(churners[k]):
            targets[k] = rng.randint(lo, hi)
        for _ in range(rng.randint(1, 3)):
            here = fixed + len(churners[k])
            if here < targets[k]:
                try:
                    ws, _ = await hello(url, {"type": "join", "session": sessions[k]})
                except (ConnectionError, OSError, TimeoutError):
                    totals.refused += 1
                    return
                stop = asyncio.Event()
                task = asyncio.create_task(drain(ws, stop, totals, None))
                churners[k].append(Churner(ws, stop, task))
                totals.joined += 1
            elif here > targets[k] and churners[k]:
                gone = churners[k].pop(rng.randrange(len(churners[k])))
                gone.stop.set()
                await gone.task
                totals.left += 1

    t0 = time.monotonic()
    end = t0 + args.seconds

    async def sample_rss() -> None:
        """Every RSS_EVERY seconds on the dot, however long a churn step takes."""
        print(
            f"{'t (s)':>6} {'RSS (MB)':>9} {'listeners':>9} {'joined':>7} {'left':>5} {'frames':>7}"
        )
        for i in range(int(args.seconds // RSS_EVERY) + 1):
            await asyncio.sleep(max(0.0, t0 + i * RSS_EVERY - time.monotonic()))
            live = sum(fixed + len(c) for c in churners)
            totals.rss.append((time.monotonic() - t0, rss_mb()))
            print(
                f"{i * RSS_EVERY:6.0f} {totals.rss[-1][1]:9.1f} {live:9d} {totals.joined:7d} "
                f"{totals.left:5d} {totals.frames:7d}",
                flush=True,
            )

    sampler = asyncio.create_task(sample_rss())
    while (now := time.monotonic()) < end:
        await churn_once()
        await asyncio.sleep(min(rng.expovariate(1 / args.churn), 4 * args.churn, end - now))
    await sampler

    finish.set()
    for group in churners:
        for c in group:
            c.stop.set()
    await asyncio.gather(*stay_tasks, *(c.task for group in churners for c in group))
    totals.rss.append((time.monotonic() - t0, rss_mb()))
    return {"totals": totals, "stayers": stayers, "hub": server.hub.stats()}


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    totals: Totals = result["totals"]
    stayers: list[Stayer] = result["stayers"]
    rss = [mb for _, mb in totals.rss]
    failed = [s.failed for s in stayers if s.failed]
    rows = [
        ("engine", f"{args.engine}, {args.sessions} sessions, {args.seconds:.0f} s"),
        ("RSS start / max / end", f"{rss[0]:.1f} / {max(rss):.1f} / {rss[-1]:.1f} MB"),
        ("listeners joined / left", f"{totals.joined} / {totals.left} (refused {totals.refused})"),
        ("closed by the server", str(totals.kicked)),
        ("frames received (all)", str(totals.frames)),
        ("stayers", f"{len(stayers)} ({len(failed)} lost their connection)"),
        ("stayer frames, min per stayer", str(min(s.frames for s in stayers))),
        ("underruns (stayers)", str(sum(s.underruns for s in stayers))),
        (f"audible gaps (> {AUDIBLE_GAP} s late)", str(sum(s.audible_gaps for s in stayers))),
        ("max lateness", f"{max(s.max_late for s in stayers):.3f} s"),
        ("max gap between arrivals", f"{max(s.max_arrival_gap for s in stayers):.3f} s"),
        ("dropped chunks (seq gaps)", str(sum(s.seq_gaps for s in stayers))),
        ("generation speed", f"{result['hub']['real_time_factor']}x real time"),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for why in failed[:3]:
        print(f"  lost: {why}")


async def main() -> None:
    ap = engine_arguments(__doc__)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--stayers", type=int, default=1, help="per session, besides its host")
    ap.add_argument(
        "--min-listeners", type=int, default=1, help="per session, host and stayers included"
    )
    ap.add_argument("--max-listeners", type=int, default=20, help="per session, host included")
    ap.add_argument("--churn", type=float, default=0.5, help="mean seconds between churn steps")
    ap.add_argument("--seed", type=int, default=0, help="for the random churn")
    args = ap.parse_args()
    if not 1 + args.stayers <= args.max_listeners:
        ap.error("--max-listeners must leave room for the host and the stayers")

    app = build(args.engine, args.delay)
    server = await app.serve(ServerSettings(port=0))
    try:
        report(await soak(server, args, app.sample_rate), args)
    finally:
        await server.close()
        await app.close()


if __name__ == "__main__":
    asyncio.run(main())
