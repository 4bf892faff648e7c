"""A cluster on this machine: 2 edges x 2 workers on a real redis-server, with the tiny model.

    python benchmarks/bench_cluster.py [--sessions 4] [--listeners 6] [--seconds 30] [--kills 3]

Every process is the real command line (``jam serve --redis --no-generate``, ``jam worker``);
listeners are websocket clients split over both edges, and what each hears is judged by the
page's player model (a silence is from running dry to playing again). Prints:

- steady state: sessions per worker (by lease), each session's real-time factor, listeners that
  heard no silence at all, and Redis commands per session-second (``INFO commandstats``);
- failover: ``--kills`` times, SIGKILL the worker of a session and measure the silence its
  listeners hear (then start a worker again);
- edge loss: SIGKILL an edge; its listeners rejoin on the other edge (time to audio again).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jam.cluster.store import Store
from jam.model.blank import TINY_PARAMS, build_pipeline
from jam.model.folder import ModelDefaults
from tests.cluster.processes import Jam, Playout
from tests.cluster.redis_server import RedisServer
from tests.serve.client import Client

RATE = TINY_PARAMS.sample_rate
PROMPTS = ("lofi piano", "dark techno", "funky bass", "deep house", "folk guitar", "synthwave")


def heard(client: Client, since: float) -> Playout:
    playout = Playout(RATE)
    for t, frame, _ in client.audio:
        playout.arrive(t, frame.offset, frame.frames)
    playout.silences = [(t, s) for t, s in playout.silences if t >= since]
    return playout


async def redis_calls(store: Store) -> int:
    stats = await store.redis.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    model = build_pipeline(
        tmp / "tiny",
        "tiny",
        TINY_PARAMS,
        ModelDefaults(tile_width=512, steps=8, strength=0.75, guidance=7.0),
        seed=0,
    )
    redis = RedisServer(tmp / "redis")
    (tmp / "redis").mkdir()
    redis.start()
    url = redis.url
    jams: list[Jam] = []

    def start(kind: str, *extra: str) -> Jam:
        argv = [kind, "--redis", url, "--model", str(model), "--bitrate", "0", *extra]
        jam = Jam(argv + (["--port", "0"] if kind == "serve" else []), tmp / f"{len(jams)}.log")
        jams.append(jam)
        return jam

    store = Store(url)
    clients: list[Client] = []
    try:
        edges = [start("serve", "--no-generate") for _ in range(2)]
        workers = [start("worker") for _ in range(2)]
        for jam in edges + workers:
            jam.ready()
        sessions: list[tuple[str, str]] = []
        by_session: dict[str, list[Client]] = {}
        for i in range(args.sessions):
            edge = edges[i % 2]
            owner = await Client.connect(edge.port, {"type": "create", "prompt": PROMPTS[i % 6]})
            welcome = await owner.welcome()
            sid = welcome["session"]
            sessions.append((sid, welcome["token"]))
            by_session[sid] = [owner]
            clients.append(owner)
            for k in range(args.listeners - 1):
                guest = await Client.connect(
                    edges[(i + k + 1) % 2].port, {"type": "join", "session": sid}
                )
                by_session[sid].append(guest)
                clients.append(guest)
        for client in clients:
            await client.welcome()
        warm = time.monotonic()
        await asyncio.sleep(5.0)  # every session claimed and playing
        steady = time.monotonic()
        calls0 = await redis_calls(store)
        await asyncio.sleep(args.seconds)
        calls1 = await redis_calls(store)
        window = time.monotonic() - steady
        owners = [await store.owner(sid) for sid, _ in sessions]
        per_worker = {w.name: owners.count(w.name) for w in workers}
        rtfs = []
        for sid, _ in sessions:
            health = [m["rtf"] for m in by_session[sid][0].of_type("health") if m["rtf"]]
            rtfs.append(health[-1] if health else None)
        clean = sum(1 for c in clients if not heard(c, steady).silences)
        if args.verbose:
            for sid, _ in sessions:
                c = by_session[sid][0]
                gaps_here = heard(c, steady).silences
                print("    silences:", [(round(t - steady, 2), round(x, 2)) for t, x in gaps_here])
        print(f"steady state, {args.sessions} sessions x {args.listeners} listeners on 2 edges:")
        print(f"  sessions per worker: {per_worker}")
        print(f"  real-time factor per session: {rtfs}")
        print(f"  listeners with no silence over {window:.0f} s: {clean} of {len(clients)}")
        ops = (calls1 - calls0) / window / args.sessions
        print(f"  Redis commands per session-second: {ops:.1f}")
        print(f"  (setup to steady: {steady - warm:.1f} s)")

        gaps: list[float] = []
        for n in range(args.kills):
            sid, _ = sessions[n % len(sessions)]
            name = await store.owner(sid)
            victim = next(w for w in workers if w.alive() and w.name == name)
            victim.kill()
            killed = time.monotonic()
            await asyncio.sleep(8.0)
            now = time.monotonic()
            worst = max(heard(c, killed - 2).longest_silence(now) for c in by_session[sid])
            gaps.append(worst)
            if args.verbose:
                c = by_session[sid][0]
                after = [(round(t - killed, 2), f.offset) for t, f, _ in c.audio if t > killed - 1]
                print(f"    owner now {await store.owner(sid)}; arrivals {after[:12]}")
            print(
                f"  kill {n + 1}: worker {name} killed; its listeners' longest silence "
                f"{worst:.2f} s"
            )
            workers = [w for w in workers if w is not victim]
            fresh = start("worker")
            await asyncio.to_thread(fresh.ready)  # (the listeners keep reading meanwhile)
            workers.append(fresh)
            await asyncio.sleep(2.0)
        if gaps:
            print(
                f"failover silence over {len(gaps)} kills: median {statistics.median(gaps):.2f} s, "
                f"max {max(gaps):.2f} s (target <= 3 s)"
            )

        sid, token = sessions[0]
        dead, alive = edges[0], edges[1]
        dead.kill()
        killed = time.monotonic()
        again = await Client.connect(alive.port, {"type": "join", "session": sid, "token": token})
        welcome = await again.welcome()
        await again.until(lambda: again.audio, 10, "audio")
        clients.append(again)
        print(
            f"edge killed: rejoined the same session (control {welcome['control']}) "
            f"{again.audio[0][0] - killed:.2f} s later (target <= 3 s)"
        )
        await again.ws.send(json.dumps({"type": "prompt", "text": "sunny reggae"}))
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        await store.close()
        for jam in jams:
            jam.stop()
        redis.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sessions", type=int, default=4)
    p.add_argument("--listeners", type=int, default=6, help="per session, over both edges")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--verbose", action="store_true", help="print arrivals around each kill")
    asyncio.run(main(p.parse_args()))
