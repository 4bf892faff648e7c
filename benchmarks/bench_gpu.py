"""Riffusion-scale GPU benchmark of jam's engine: floor, per-stage times, what each optimisation
buys, and how many real-time sessions one GPU carries with batching.

Everything runs through jam's own engine (``load_engine`` -> ``Engine.denoise/decode/
audio_from_images/render``) on an SD-1.5-architecture pipeline with random weights built by
``jam.model.blank`` (speed does not depend on weight values), so no download is needed. Riffusion's
default workload per tile: 512x512, 50 PNDM steps at strength 0.75 (38 guided UNet evaluations,
batch 2), full VAE decode, mel pseudo-inverse, 32 Griffin-Lim iterations, float audio out.

Order of work, most important first, so a run cut short still says the most:
  1. the floor (FLOPs counted on the loaded modules / measured matmul rate) and the ceilings;
  2. a ladder of engine configurations, one change at a time, each change's gain predicted
     before it is measured (fp32 -> fp16, classic attention -> SDPA, fp16 -> bf16,
     channels_last, cudnn.benchmark, torch.compile of the UNet, cached text embeddings);
  3. N sessions batched into one pipeline call (N = 1..32, stop at OOM): tiles/s and sessions
     sustained at real time with 30% headroom, eager and compiled.

    python benchmarks/bench_gpu.py --arch sd15 --device cuda --json out/gpu.json
    python benchmarks/bench_gpu.py --arch tiny --device cpu --quick        # dry run, no GPU

Optimisations that the engine does not expose yet are applied here to ``engine.pipe`` after
load (attention processor, memory format, ``torch.compile`` of ``engine.pipe.unet``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from jam.model.blank import TINY_PARAMS, build_pipeline
from jam.model.engine import Engine, load_engine
from jam.model.folder import ModelDefaults
from jam.sound.params import SpectrogramParams
from jam.sound.spectrogram import DEFAULT_MAX_VALUE, INT16_SCALE, spectrogram_from_pixels

HEADROOM = 1.3  # sessions are counted at real time with 30% spare
ISSUE_UNET_TFLOP = 1.6  # per guided step (CFG batch 2) at a 64x64 latent, from the issue
ISSUE_VAE_TFLOP = 2.5  # per full 512x512 VAE decode
PRACTICAL_BF16_TFLOPS = 800.0  # H100/H200 dense bf16 matmul measured in this workplace
TARGET_TILE_S = 0.25
TARGET_GL_S = 0.020
TARGET_SESSIONS = 20
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
PROMPTS = [
    "church bells on a sunday",
    "funky bassline with slap guitar",
    "lofi hip hop piano",
    "techno kick with acid synth",
]


@dataclass(frozen=True)
class Config:
    """One engine configuration: each field is an optimisation that can be toggled."""

    name: str
    dtype: str = "float16"
    sdpa: bool = True  # diffusers' default AttnProcessor2_0; False: classic bmm+softmax
    channels_last: bool = False
    cudnn_benchmark: bool = False
    compile: bool = False


@dataclass(frozen=True)
class Change:
    """One optimisation as a step between two measured configurations, with a prediction."""

    name: str
    before: str
    after: str
    predicted: float  # expected speed-up of the tile (before / after)
    why: str


class Run:
    """Shared state: args, device, the deadline, and the figures written as JSON as they come."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.perf_counter()
        self.figures: dict[str, Any] = {"errors": []}
        self.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def left(self) -> float:
        """Seconds left of ``--budget-s`` (inf when unbounded)."""
        if not self.args.budget_s:
            return math.inf
        return self.args.budget_s - (time.perf_counter() - self.t0)

    def save(self) -> None:
        if self.args.json:
            Path(self.args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(self.args.json).write_text(json.dumps(self.figures, indent=2, default=str))

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Run a section; an exception is logged and recorded, and the run goes on."""
        t = time.perf_counter()
        print(f"\n=== {name}  (t={t - self.t0:.0f} s)", flush=True)
        try:
            yield
        except Exception as e:
            traceback.print_exc()
            self.figures["errors"].append(f"{name}: {type(e).__name__}: {e}")
        finally:
            self.save()
            print(f"--- {name} took {time.perf_counter() - t:.1f} s", flush=True)


class Laps:
    """Times between consecutive marks: CUDA events on a GPU (no host sync inside the region),
    the host clock on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[str, Any]] = []

    def mark(self, label: str = "") -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append((label, event))
        else:
            self.marks.append((label, time.perf_counter()))

    def seconds(self) -> dict[str, float]:
        if self.cuda:
            self.marks[-1][1].synchronize()
        out: dict[str, float] = {}
        for (_, a), (label, b) in zip(self.marks, self.marks[1:], strict=False):
            dt = a.elapsed_time(b) / 1000 if self.cuda else b - a
            out[label] = out.get(label, 0.0) + dt
        return out


def median_of(samples: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


# --- floor and ceilings --------------------------------------------------------------------


def guided_evals(engine: Engine, steps: int, strength: float) -> int:
    """UNet evaluations per tile, from jam's own scheduler slicing (as ``Engine.denoise``)."""
    scheduler = engine.pipe.scheduler
    init_steps = min(int(steps * strength), steps)
    scheduler.start_index = max(steps - init_steps, 0)
    scheduler.set_timesteps(steps, device=engine.device)
    return len(scheduler.timesteps)


@torch.inference_mode()
def count_flops(engine: Engine) -> tuple[float, float]:
    """FLOPs of one guided UNet evaluation (batch 2) and one VAE decode, counted on the loaded
    modules (so the floor follows whatever model is benchmarked, not a constant)."""
    from torch.utils.flop_counter import FlopCounterMode

    pipe, dev, dt = engine.pipe, engine.device, engine.dtype
    latent = torch.randn(2, *engine.latent_shape, device=dev, dtype=dt)
    emb = engine.embed(PROMPTS[0]).expand(2, -1, -1)
    with FlopCounterMode(display=False) as unet_count:
        pipe.unet(latent, torch.tensor(500, device=dev), encoder_hidden_states=emb)
    with FlopCounterMode(display=False) as vae_count:
        engine.decode(latent[:1])
    return unet_count.get_total_flops(), vae_count.get_total_flops()


def measure_ceilings(run: Run) -> dict[str, float]:
    """Measured dense matmul rate (bf16 on CUDA) and device copy bandwidth: the two ceilings."""
    dev = run.device
    n, dtype, reps = (8192, torch.bfloat16, 10) if dev.type == "cuda" else (1024, torch.float32, 3)
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    for _ in range(3):
        a @ b
    laps = Laps(dev)
    laps.mark()
    for _ in range(reps):
        a @ b
    laps.mark("mm")
    matmul = 2 * n**3 * reps / laps.seconds()["mm"] / 1e12
    src = torch.randn(256 * 2**20 if dev.type == "cuda" else 16 * 2**20, device=dev)
    dst = torch.empty_like(src)
    dst.copy_(src)
    laps = Laps(dev)
    laps.mark()
    for _ in range(reps):
        dst.copy_(src)
    laps.mark("copy")
    copy = 2 * src.numel() * 4 * reps / laps.seconds()["copy"] / 1e9
    del a, b, src, dst
    return {"matmul_tflops": matmul, "matmul_dtype": str(dtype), "copy_gbps": copy}


def griffin_lim_bytes(params: SpectrogramParams, width: int) -> float:
    """Device-memory bytes of torchaudio's Griffin-Lim per tile: each iteration makes about 25
    passes over a complex64 (n_fft/2+1) x frames array (phase product, irfft, window and
    overlap-add, window and rfft, momentum, normalise); a fused version would need about 8."""
    return 25 * (params.n_fft // 2 + 1) * width * 8 * params.num_griffin_lim_iters


# --- engine configuration ------------------------------------------------------------------


def configure(engine: Engine, cfg: Config, args: argparse.Namespace) -> None:
    """Put the engine's pipeline into ``cfg``'s state, undoing what the last config set.

    Engine options this stands in for: ``dtype`` (fp16/bf16 on CUDA), ``channels_last`` and
    ``compile_unet`` applied to ``pipe.unet``/``pipe.vae`` in ``load_engine``.
    """
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    pipe = engine.pipe
    if hasattr(pipe.unet, "_orig_mod"):
        pipe.unet = pipe.unet._orig_mod
    dtype = DTYPES[cfg.dtype]
    if engine.dtype != dtype:
        pipe.to(dtype=dtype)
        engine.dtype = dtype
        engine._embeddings.clear()  # cached tensors are in the old dtype
        engine._init_latents.clear()
    for module in (pipe.unet, pipe.vae):
        module.set_attn_processor(AttnProcessor2_0() if cfg.sdpa else AttnProcessor())
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        module.to(memory_format=fmt)
    torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
    if cfg.compile:
        kwargs: dict[str, Any] = {"backend": args.compile_backend, "fullgraph": args.fullgraph}
        if args.compile_backend == "inductor":
            kwargs["mode"] = args.compile_mode
        pipe.unet = torch.compile(pipe.unet, **kwargs)


def requests_for(engine: Engine, n: int, args: argparse.Namespace) -> list:
    """``n`` sessions' tiles: distinct prompts and seeds, one shared strength (one group)."""
    return [
        engine.request(PROMPTS[i % len(PROMPTS)], seed=i, steps=args.steps, strength=args.strength)
        for i in range(n)
    ]


@torch.inference_mode()
def tile_stages(engine: Engine, req, run: Run, reuse_text: bool = False) -> dict[str, Any]:
    """One tile, stage by stage as ``Engine.render`` runs them (timed between events)."""
    laps = Laps(run.device)
    laps.mark()
    if not reuse_text:
        engine._embeddings.clear()  # measure the encoder, not the cache
    engine.embed(req.end.prompt)
    engine.embed(req.end.negative_prompt)
    laps.mark("text encoding")
    latents = engine.denoise([req], output_type="latent")
    laps.mark("denoising loop")
    images = engine.decode(latents)
    laps.mark("VAE decode")
    p = engine.params
    mel = spectrogram_from_pixels(
        images.to(torch.float32).movedim(1, -1) * 255, p.power_for_image, DEFAULT_MAX_VALUE
    )
    linear = engine.converter.linear_from_mel(mel)
    laps.mark("mel pinv")
    audio = engine.converter.griffin_lim(linear) / INT16_SCALE
    laps.mark("Griffin-Lim")
    audio.cpu()
    laps.mark("audio to host")
    return {"laps": laps.seconds(), "latents": latents, "audio": audio}


def render_seconds(engine: Engine, requests: list, run: Run) -> float:
    """Wall time of ``Engine.render`` (it ends in host copies, so it is synchronous)."""
    run.sync()
    t = time.perf_counter()
    engine.render(requests)
    return time.perf_counter() - t


def measure_config(
    engine: Engine, cfg: Config, run: Run, ref: torch.Tensor | None
) -> tuple[dict, torch.Tensor]:
    """Per-stage medians and the one-session ``render`` time for one configuration, plus its
    final latents (the first configuration's are the reference the others are compared to)."""
    args = run.args
    configure(engine, cfg, args)
    req = requests_for(engine, 1, args)[0]
    t = time.perf_counter()
    first = tile_stages(engine, req, run)  # warm-up (compiles, autotunes, fills caches)
    warm_s = time.perf_counter() - t
    for _ in range(args.warmup - 1):  # the first call above is one warm-up
        tile_stages(engine, req, run)
    samples = [tile_stages(engine, req, run)["laps"] for _ in range(args.repeats)]
    stages = median_of(samples)
    render = statistics.median(
        render_seconds(engine, [req], run) for _ in range(args.sweep_repeats)
    )
    lat = first["latents"].float()
    result = {
        "config": dataclasses.asdict(cfg),
        "stages_s": stages,
        "stage_sum_s": sum(stages.values()),
        "render_s": render,
        "first_call_s": warm_s,
        "nonfinite_latents": int((~torch.isfinite(lat)).sum()),
    }
    if ref is not None and ref.shape == lat.shape:
        result["rel_err_vs_first"] = float((lat - ref).norm() / ref.norm().clamp(min=1e-30))
    line = "  ".join(f"{k} {v * 1000:.1f}" for k, v in stages.items())
    print(f"  {cfg.name:28s} render {ms(render)}  | {line} (ms)", flush=True)
    return result, lat


# --- the run -------------------------------------------------------------------------------


def ladder(args: argparse.Namespace, cuda: bool) -> tuple[list[Config], list[Change]]:
    """Configurations measured one change at a time, and the predicted gain of each change."""
    if cuda:
        configs = [
            Config("fp32 + SDPA", "float32"),
            Config("fp16 + SDPA (engine today)", "float16"),
            Config("fp16, classic attention", "float16", sdpa=False),
            Config("bf16 + SDPA", "bfloat16"),
        ]
    else:  # CPU fp16 convs are a slow path and not the question; bf16 stands in for half
        configs = [
            Config("fp32 + SDPA", "float32"),
            Config("fp32, classic attention", "float32", sdpa=False),
            Config("bf16 + SDPA", "bfloat16"),
        ]
    changes = [
        Change(
            "half precision",
            "fp32 + SDPA",
            configs[1].name,
            3.0,
            "fp32 matmuls run on CUDA cores (~60 TFLOP/s) or TF32 convs; fp16 tensor cores ~800",
        ),
        Change(
            "SDPA attention",
            "fp16, classic attention",
            configs[1].name,
            1.35,
            "classic attention writes 2x8x4096^2 fp16 scores (0.5 GB) several times in each of "
            "the 5 self-attention layers at 64x64: ~10 GB/eval, ~3.5 ms of 38 evals",
        ),
        Change(
            "bf16 instead of fp16",
            configs[1].name,
            "bf16 + SDPA",
            1.0,
            "same tensor-core rate; only numerics differ (bf16 cannot overflow the VAE)",
        ),
    ]
    if not cuda:
        changes = [
            Change("SDPA attention", configs[1].name, configs[0].name, 1.3, "no score matrix"),
            Change("bf16 (CPU)", configs[0].name, configs[2].name, 1.0, "dry run only"),
        ]
    return configs, changes


def fastest(results: dict[str, dict], names: list[str]) -> str:
    return min((n for n in names if n in results), key=lambda n: results[n]["render_s"])


def predict(change: Change) -> None:
    print(f"  predict {change.name}: {change.predicted:.2f}x  ({change.why})", flush=True)


def record_change(run: Run, change: Change) -> None:
    results = run.figures["configs"]
    if change.before not in results or change.after not in results:
        return
    measured = results[change.before]["render_s"] / results[change.after]["render_s"]
    loop = (
        results[change.before]["stages_s"]["denoising loop"]
        / results[change.after]["stages_s"]["denoising loop"]
    )
    run.figures["changes"].append(
        {
            **dataclasses.asdict(change),
            "measured": measured,
            "measured_loop": loop,
        }
    )
    print(
        f"  measured {change.name}: {measured:.2f}x tile, {loop:.2f}x loop "
        f"(predicted {change.predicted:.2f}x)",
        flush=True,
    )


def sweep(engine: Engine, run: Run, label: str, recompile_s: float = 0) -> list[dict]:
    """N sessions' tiles in one ``render`` call: tiles/s, sessions at real time, peak memory.

    ``recompile_s``: the time the first new batch size costs a compiled UNet (the deadline
    check counts it once)."""
    args = run.args
    tile_s = engine.tile_samples / engine.params.sample_rate
    rows: list[dict] = []
    per_tile = None
    for n in args.batches:
        estimate = (per_tile or 0.5) * n * (args.sweep_repeats + 1) + 5
        if len(rows) == 1:
            estimate += recompile_s
        if per_tile is not None and estimate > run.left() - args.reserve_s:
            print(f"  N={n}: skipped, ~{estimate:.0f} s needed, {run.left():.0f} s left")
            break
        requests = requests_for(engine, n, args)
        try:
            if run.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(run.device)
            render_seconds(engine, requests, run)  # warm-up (recompiles for a new shape)
            seconds = statistics.median(
                render_seconds(engine, requests, run) for _ in range(args.sweep_repeats)
            )
        except RuntimeError as e:  # torch.OutOfMemoryError, or cuDNN/cuFFT failing to allocate
            if not isinstance(e, torch.OutOfMemoryError) and "memory" not in str(e).lower():
                raise
            print(f"  N={n}: out of memory ({str(e).splitlines()[0][:120]}); stopping")
            rows.append({"n": n, "oom": True})
            if args.cuda:
                torch.cuda.empty_cache()
            break
        per_tile = seconds / n
        tiles_per_s = n / seconds
        peak = torch.cuda.max_memory_allocated(run.device) / 2**30 if args.cuda else 0.0
        row = {
            "n": n,
            "call_s": seconds,
            "per_tile_s": per_tile,
            "tiles_per_s": tiles_per_s,
            "sessions": tiles_per_s * tile_s / HEADROOM,
            "peak_gib": peak,
        }
        rows.append(row)
        run.figures.setdefault("sweeps", {})[label] = rows
        run.save()
        print(
            f"  {label:8s} N={n:3d}  call {ms(seconds)}  per tile {ms(per_tile)}  "
            f"{tiles_per_s:6.2f} tiles/s  {row['sessions']:6.1f} sessions  peak {peak:5.1f} GiB",
            flush=True,
        )
    return rows


def environment(run: Run) -> dict[str, Any]:
    import diffusers
    import torchaudio
    import transformers

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchaudio": torchaudio.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "device": str(run.device),
        "cpu_threads": torch.get_num_threads(),
    }
    if run.device.type == "cuda":
        props = torch.cuda.get_device_properties(run.device)
        env |= {
            "gpu": props.name,
            "sms": props.multi_processor_count,
            "gpu_mem_gib": props.total_memory / 2**30,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
        try:
            env["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit",
                 "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20,
            ).stdout.strip()  # fmt: skip
        except (OSError, subprocess.SubprocessError) as e:
            env["driver"] = f"unknown ({e})"
    return env


def summary(run: Run) -> None:
    """The short table printed last (the part of the log that is sure to come back)."""
    f = run.figures
    print("\n================ summary ================")
    env = f.get("env", {})
    print(
        f"{env.get('gpu', env.get('device'))}  driver {env.get('driver', '-')}  "
        f"torch {env.get('torch')}  diffusers {env.get('diffusers')}  "
        f"transformers {env.get('transformers')}"
    )
    fl = f.get("floor", {})
    if fl:
        print(
            f"floor: {fl['tile_tflop']:.1f} TFLOP/tile -> {ms(fl['tile_floor_s'])} at "
            f"{fl['rate_tflops']:.3g} TFLOP/s; Griffin-Lim ~{ms(fl['gl_floor_s'])}"
        )
    for name, r in f.get("configs", {}).items():
        st = r["stages_s"]
        print(
            f"  {name:30s} tile {ms(r['render_s'])}  loop {ms(st['denoising loop'])}  "
            f"VAE {ms(st['VAE decode'])}  GL {ms(st['Griffin-Lim'])}  "
            f"x floor {r['render_s'] / fl.get('tile_floor_s', math.nan):5.1f}"
        )
    for c in f.get("changes", []):
        print(f"  {c['name']:28s} predicted {c['predicted']:5.2f}x  measured {c['measured']:5.2f}x")
    for label, rows in f.get("sweeps", {}).items():
        ok = [r for r in rows if not r.get("oom")]
        if ok:
            best = max(ok, key=lambda r: r["tiles_per_s"])
            print(
                f"  sweep {label:8s} best N={best['n']}: {best['tiles_per_s']:.2f} tiles/s, "
                f"{best['sessions']:.1f} sessions (target {TARGET_SESSIONS})"
            )
    if f["errors"]:
        print("errors:", *f["errors"], sep="\n  ")
    print(f"total run {time.perf_counter() - run.t0:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", help="model folder (default: build one with --arch)")
    ap.add_argument("--arch", default="sd15", choices=["tiny", "sd15"])
    ap.add_argument("--device")
    ap.add_argument("--steps", type=int, help="default 50 (Riffusion's); 10 with --quick")
    ap.add_argument("--strength", type=float, default=0.75)
    ap.add_argument("--warmup", type=int, default=1, help="tiles before timing (first compiles)")
    ap.add_argument("--repeats", type=int, default=5, help="timed tiles per stage median")
    ap.add_argument("--sweep-repeats", type=int, default=3, help="timed render calls per median")
    ap.add_argument("--batches", default="1,2,4,8,16,32")
    ap.add_argument("--no-ladder", action="store_true", help="measure only the flags' config")
    ap.add_argument("--dtype", default=None, choices=list(DTYPES))
    ap.add_argument("--classic-attention", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--cudnn-benchmark", action="store_true")
    ap.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--compile-mode", default="reduce-overhead")
    ap.add_argument("--compile-backend", default=None, help="default inductor (eager on --quick)")
    ap.add_argument("--fullgraph", action="store_true", help="fail on any UNet graph break")
    ap.add_argument("--compile-s", type=float, default=150, help="expected compile time (budget)")
    ap.add_argument("--budget-s", type=float, default=0, help="skip work that would run past it")
    ap.add_argument("--reserve-s", type=float, default=20, help="kept for the summary")
    ap.add_argument("--json", help="write all figures here (rewritten after every section)")
    ap.add_argument("--quick", action="store_true", help="CPU dry run: tiny params, N=1,2")
    args = ap.parse_args()

    run = Run(args)
    args.cuda = run.device.type == "cuda"
    if args.quick:
        args.warmup, args.repeats, args.sweep_repeats = 1, 1, 1
        args.batches = "1,2"
    args.steps = args.steps or (10 if args.quick else 50)
    args.batches = [int(b) for b in args.batches.split(",")]
    args.compile_backend = args.compile_backend or ("eager" if args.quick else "inductor")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    with tempfile.TemporaryDirectory() as tmp:
        with run.section("build and load"):
            model = args.model
            if model is None:
                t = time.perf_counter()
                params = SpectrogramParams()
                if args.quick and args.arch == "tiny":  # code-path check, not a measurement
                    params = dataclasses.replace(TINY_PARAMS, num_griffin_lim_iters=8)
                model = str(build_pipeline(tmp, args.arch, params, ModelDefaults(steps=args.steps)))
                print(f"  built random {args.arch} pipeline in {time.perf_counter() - t:.1f} s")
            t = time.perf_counter()
            engine = load_engine(model, str(run.device))
            print(f"  loaded in {time.perf_counter() - t:.1f} s: {engine.dtype} on {run.device}")
            run.figures["env"] = environment(run)
            print("  " + json.dumps(run.figures["env"]))
        if "env" not in run.figures:
            run.save()
            sys.exit(3)  # scripts/device_bench.sh retries with the pinned transformers stack
        bench(engine, run)
    summary(run)
    run.save()


def bench(engine: Engine, run: Run) -> None:
    args = run.args
    p = engine.params
    tile_s = engine.tile_samples / p.sample_rate
    run.figures["workload"] = {
        "steps": args.steps,
        "strength": args.strength,
        "tile_px": [p.num_frequencies, engine.defaults.tile_width],
        "latent": list(engine.latent_shape),
        "tile_audio_s": tile_s,
        "griffin_lim_iters": p.num_griffin_lim_iters,
        "n_fft": p.n_fft,
        "hop": p.hop_length,
        "sample_rate": p.sample_rate,
    }

    with run.section("floor and ceilings"):
        evals = guided_evals(engine, args.steps, args.strength)
        issue_tflop = ISSUE_UNET_TFLOP * evals + ISSUE_VAE_TFLOP
        print(
            f"  issue's estimate: {ISSUE_UNET_TFLOP} TFLOP x {evals} guided evals + "
            f"{ISSUE_VAE_TFLOP} TFLOP VAE = {issue_tflop:.1f} TFLOP/tile -> "
            f"{issue_tflop / PRACTICAL_BF16_TFLOPS * 1000:.0f} ms at "
            f"{PRACTICAL_BF16_TFLOPS:.0f} TFLOP/s (SD-1.5 sizes; counted on the model below)"
        )
        unet_flop, vae_flop = count_flops(engine)
        ceilings = measure_ceilings(run)
        rate = ceilings["matmul_tflops"]
        tile_flop = unet_flop * evals + vae_flop
        gl_bytes = griffin_lim_bytes(p, engine.defaults.tile_width)
        unet_bytes = sum(t.numel() * t.element_size() for t in engine.pipe.unet.parameters())
        run.figures["floor"] = fl = {
            "guided_evals": evals,
            "unet_tflop_per_eval": unet_flop / 1e12,
            "vae_tflop": vae_flop / 1e12,
            "tile_tflop": tile_flop / 1e12,
            "rate_tflops": rate,
            "tile_floor_s": tile_flop / 1e12 / rate,
            "loop_floor_s": unet_flop * evals / 1e12 / rate,
            "unet_weight_gb": unet_bytes / 1e9,
            "weights_floor_s": unet_bytes * evals / (ceilings["copy_gbps"] * 1e9),
            "gl_gb": gl_bytes / 1e9,
            "gl_floor_s": gl_bytes / (ceilings["copy_gbps"] * 1e9),
            **ceilings,
        }
        print(
            f"  counted: {fl['unet_tflop_per_eval']:.3f} TFLOP/guided eval x {evals} + VAE "
            f"{fl['vae_tflop']:.3f} = {fl['tile_tflop']:.2f} TFLOP/tile\n"
            f"  measured ceilings: matmul {rate:.3g} TFLOP/s ({ceilings['matmul_dtype']}), copy "
            f"{ceilings['copy_gbps']:.0f} GB/s\n"
            f"  floor: tile {ms(fl['tile_floor_s'])} (loop {ms(fl['loop_floor_s'])}); reading "
            f"UNet weights {evals}x = {ms(fl['weights_floor_s'])} (batch 1 stays compute-bound); "
            f"Griffin-Lim ~{fl['gl_gb']:.1f} GB -> {ms(fl['gl_floor_s'])}\n"
            f"  targets: tile <= {TARGET_TILE_S * 1000:.0f} ms "
            f"({fl['tile_floor_s'] / TARGET_TILE_S:.0%} of peak), GL <= "
            f"{TARGET_GL_S * 1000:.0f} ms, >= {TARGET_SESSIONS} sessions = "
            f"{TARGET_SESSIONS * HEADROOM / tile_s:.2f} tiles/s "
            f"(<= {tile_s / (TARGET_SESSIONS * HEADROOM) * 1000:.0f} ms/tile batched)",
            flush=True,
        )

    run.figures["configs"] = results = {}
    run.figures["changes"] = []
    ref: torch.Tensor | None = None
    if args.no_ladder:
        configs = [
            Config(
                "custom",
                args.dtype or ("float16" if args.cuda else "float32"),
                sdpa=not args.classic_attention,
                channels_last=args.channels_last,
                cudnn_benchmark=args.cudnn_benchmark,
            )
        ]
        changes: list[Change] = []
    else:
        configs, changes = ladder(args, args.cuda)
    with run.section("ladder: one change at a time"):
        for cfg in configs:
            for ch in changes:  # predict each change before its second configuration runs
                if cfg.name in (ch.before, ch.after) and {ch.before, ch.after} - {cfg.name} <= set(
                    results
                ):
                    predict(ch)
            results[cfg.name], latents = measure_config(engine, cfg, run, ref)
            ref = latents if ref is None else ref
            for ch in changes:
                if cfg.name in (ch.before, ch.after):
                    record_change(run, ch)

        if not args.no_ladder:
            base = fastest(results, [c.name for c in configs if c.dtype != "float32"])
            base_cfg = Config(**results[base]["config"])
            steps = [
                Change(
                    "channels_last",
                    base,
                    "+ channels_last",
                    1.1,
                    "cuDNN's NHWC convolution kernels skip the layout transposes around each conv",
                ),
                Change(
                    "cudnn.benchmark",
                    "+ channels_last",
                    "+ cudnn.benchmark",
                    1.03,
                    "fixed shapes: autotuned conv algorithms, a few % on the 64x64 convs",
                ),
            ]
            cfg = dataclasses.replace(base_cfg, name="+ channels_last", channels_last=True)
            predict(steps[0])
            results[cfg.name], _ = measure_config(engine, cfg, run, ref)
            record_change(run, steps[0])
            cfg = dataclasses.replace(cfg, name="+ cudnn.benchmark", cudnn_benchmark=True)
            predict(steps[1])
            results[cfg.name], _ = measure_config(engine, cfg, run, ref)
            record_change(run, steps[1])
    eager_names = [n for n, r in results.items() if r["config"]["dtype"] != "float32"]
    if not eager_names:
        return
    best_eager = Config(**results[fastest(results, eager_names)]["config"])
    run.figures["best_eager"] = best_eager.name
    print(f"\n  best eager configuration: {best_eager}")

    with run.section("text embeddings: cached vs encoded per tile"):
        configure(engine, best_eager, args)
        predict(
            Change(
                "cached text embeddings",
                "",
                "",
                1 + results[best_eager.name]["stages_s"]["text encoding"]
                / results[best_eager.name]["render_s"],
                "the cache skips the text stage measured above (CLIP-L: 12 layers, 2 prompts)",
            )
        )  # fmt: skip
        req = requests_for(engine, 1, args)[0]

        def uncached() -> float:
            engine._embeddings.clear()
            return render_seconds(engine, [req], run)

        uncached()
        cold = statistics.median(uncached() for _ in range(args.repeats))
        warm = statistics.median(render_seconds(engine, [req], run) for _ in range(args.repeats))
        run.figures["text_cache"] = {"uncached_s": cold, "cached_s": warm, "gain": cold / warm}
        print(f"  measured: uncached {ms(cold)}  cached {ms(warm)}  ({cold / warm:.3f}x)")

    with run.section("audio copy to host: pageable vs pinned"):
        n = max(args.batches)
        audio = torch.randn(n, p.channels, engine.tile_samples, device=run.device)
        pinned = torch.empty(audio.shape, pin_memory=args.cuda)
        mb = audio.numel() * 4 / 1e6
        print(f"  predict: {mb:.0f} MB at ~10 (pageable) vs ~25 GB/s (pinned): a few ms at most")

        def copy_pageable() -> None:
            audio.cpu()

        def copy_pinned() -> None:
            pinned.copy_(audio, non_blocking=True)
            run.sync()

        run.figures["audio_copy"] = {"mb": audio.numel() * 4 / 1e6}
        for name, fn in (("pageable", copy_pageable), ("pinned", copy_pinned)):
            fn()
            times = []
            for _ in range(5):
                run.sync()
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            run.figures["audio_copy"][name + "_s"] = statistics.median(times)
            print(f"  {name:9s} {n} tiles: {ms(statistics.median(times))}")

    # Compiled before the eager sweep: it decides the 0.25 s target, and a short budget should
    # cut the eager sweep (the fallback if compile fails) rather than the compile.
    use_compile = args.compile == "on" or (args.compile == "auto" and not args.no_ladder)
    compiled = dataclasses.replace(best_eager, name="+ torch.compile UNet", compile=True)
    if use_compile:
        how = args.compile_backend
        how += f", {args.compile_mode}" if how == "inductor" else " backend: tracing only"
        with run.section(f"torch.compile UNet ({how})"):
            if run.left() < args.compile_s + args.reserve_s:
                raise TimeoutError(
                    f"only {run.left():.0f} s left; compile needs ~{args.compile_s} s"
                )
            change = Change(
                "torch.compile (CUDA graphs)",
                best_eager.name,
                compiled.name,
                1.5,
                "CUDA graphs remove ~1000 kernel launches per eval (batch 2 is launch-bound) and "
                "Inductor fuses GroupNorm/SiLU/residual adds",
            )
            predict(change)
            results[compiled.name], _ = measure_config(engine, compiled, run, ref)
            from torch._dynamo.utils import counters as stats

            results[compiled.name]["dynamo"] = {
                "graphs": stats["stats"]["unique_graphs"],
                "graph_breaks": sum(stats["graph_break"].values()),
            }
            print(
                f"  first call (compile) {results[compiled.name]['first_call_s']:.1f} s; "
                f"dynamo {results[compiled.name]['dynamo']}"
            )
            record_change(run, change)
    if compiled.name in results:
        with run.section("batched sessions, compiled"):
            print(
                "  predict: compute-bound from N=4 on, ~1.3x the floor per tile; N=2 recompiles "
                "once with a dynamic batch dimension"
            )
            sweep(engine, run, "compiled", recompile_s=args.compile_s / 2)

    with run.section("batched sessions, eager"):
        configure(engine, best_eager, args)
        print(
            "  predict: batch 2 leaves the GPU launch-bound; by N=8-16 it is compute-bound near "
            "50% of the matmul rate -> per-tile time about 1.6x the floor"
        )
        sweep(engine, run, "eager")


if __name__ == "__main__":
    main()
