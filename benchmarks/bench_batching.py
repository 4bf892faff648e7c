"""Is batching tiles from several sessions into one pipeline call faster? Measured, same run.

Renders N single-endpoint requests (different prompts and seeds, same steps/strength, as the
device queue groups them) one call at a time and then as one batched call, and prints tiles/s.

    python benchmarks/bench_batching.py                    # tiny random model, CPU
    python benchmarks/bench_batching.py --model DIR --device cuda --sizes 1 2 4 8 16
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from jam.model.blank import TINY_PARAMS, build_pipeline
from jam.model.engine import load_engine
from jam.model.folder import ModelDefaults


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model")
    ap.add_argument("--device")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_pipeline(tmp, "tiny", TINY_PARAMS, ModelDefaults(steps=8)))
        engine = load_engine(model, args.device)
    sync = torch.cuda.synchronize if engine.device.type == "cuda" else (lambda: None)
    prompts = ["techno", "ambient pads", "jazz piano", "funk bass", "lofi beat", "metal"]
    print(
        f"{model} on {engine.device}; tile {engine.tile_samples / engine.params.sample_rate:.2f} s"
    )
    engine.render([engine.request("warm up", seed=0)])
    for n in args.sizes:
        reqs = [engine.request(prompts[i % len(prompts)], seed=i) for i in range(n)]
        sync()
        t0 = time.perf_counter()
        for r in reqs:
            engine.render([r])
        sync()
        one_by_one = time.perf_counter() - t0
        t0 = time.perf_counter()
        engine.render(reqs)
        sync()
        batched = time.perf_counter() - t0
        print(
            f"N={n:3d}  one at a time {n / one_by_one:6.2f} tiles/s   "
            f"batched {n / batched:6.2f} tiles/s   speed-up {one_by_one / batched:.2f}x"
        )


if __name__ == "__main__":
    main()
