"""Per-stage time of one tile through jam's engine, and the inversion against torchaudio's stock.

Stages: text encoding, denoising loop, VAE decode, mel -> linear (cached pseudo-inverse),
Griffin-Lim. Speed is jam's one real-time factor: tile duration / compute time (> 1 keeps up).
The stock comparison runs torchaudio's ``InverseMelScale`` (a least-squares solve per call),
then ``GriffinLim``, on the same spectrogram in the same run.

    python benchmarks/bench_engine.py                       # tiny random UNet, Riffusion params
    python benchmarks/bench_engine.py --model PATH_OR_ID    # any SD-1.x spectrogram checkpoint
    python benchmarks/bench_engine.py --arch sd15 --device cuda   # Riffusion-scale, random weights
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torchaudio

from jam.model.blank import build_pipeline
from jam.model.engine import load_engine
from jam.model.folder import ModelDefaults
from jam.sound.params import SpectrogramParams


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, object]:
    """Median wall time of ``fn`` (synchronising CUDA), after one warm-up call."""
    out = fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", help="model folder / file / hub id (default: build one with --arch)")
    ap.add_argument("--arch", default="tiny", choices=["tiny", "sd15"])
    ap.add_argument("--device")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--strength", type=float, default=0.75)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(
            build_pipeline(tmp, args.arch, SpectrogramParams(), ModelDefaults(steps=args.steps))
        )
        engine = load_engine(model, args.device)
    dev = engine.device
    p = engine.params
    req = engine.request(
        "church bells on a sunday", seed=1, steps=args.steps, strength=args.strength
    )
    tile_seconds = engine.tile_samples / p.sample_rate
    print(f"model {model}  device {dev}  dtype {engine.dtype}  torch {torch.__version__}")
    print(
        f"params: {p.sample_rate} Hz, n_fft {p.n_fft}, hop {p.hop_length}, "
        f"{p.num_frequencies} mels; "
        f"tile {engine.defaults.tile_width} frames = {tile_seconds:.2f} s; "
        f"{args.steps} steps at strength {args.strength}"
    )

    def encode() -> torch.Tensor:
        engine._embeddings.clear()  # measure the encoder, not the cache
        return engine.embed(req.end.prompt)

    stages: dict[str, float] = {}
    stages["text encoding"], _ = timed(encode, dev, args.repeats)
    stages["denoising loop"], latents = timed(
        lambda: engine.denoise([req], output_type="latent"), dev, args.repeats
    )
    evals = len(engine.pipe.scheduler.timesteps)
    stages["VAE decode"], images = timed(lambda: engine.decode(latents), dev, args.repeats)
    from jam.sound.spectrogram import DEFAULT_MAX_VALUE, spectrogram_from_pixels

    mel = spectrogram_from_pixels(
        images.float().movedim(1, -1) * 255, p.power_for_image, DEFAULT_MAX_VALUE
    )
    conv = engine.converter
    stages["mel -> linear (pinv)"], linear = timed(
        lambda: conv.linear_from_mel(mel), dev, args.repeats
    )
    stages["Griffin-Lim"], _ = timed(lambda: conv.griffin_lim(linear), dev, args.repeats)
    total = sum(stages.values())
    print(f"\nper-stage median of {args.repeats} ({evals} guided UNet evaluations):")
    for name, seconds in stages.items():
        print(f"  {name:22s} {seconds * 1000:9.1f} ms")
    print(
        f"  {'total':22s} {total * 1000:9.1f} ms   speed {tile_seconds / total:.2f}x real time "
        f"(audio seconds per compute second; > 1 keeps up)"
    )

    ours = stages["mel -> linear (pinv)"] + stages["Griffin-Lim"]
    inverse_mel = torchaudio.transforms.InverseMelScale(
        n_stft=p.n_fft // 2 + 1,
        n_mels=p.num_frequencies,
        sample_rate=p.sample_rate,
        f_min=p.min_frequency,
        f_max=p.max_frequency,
        norm=p.mel_scale_norm,
        mel_scale=p.mel_scale_type,
        driver="gels",
    ).to(dev)
    stock_gl = torchaudio.transforms.GriffinLim(
        n_fft=p.n_fft,
        n_iter=p.num_griffin_lim_iters,
        win_length=p.win_length,
        hop_length=p.hop_length,
        power=1.0,
        momentum=p.griffin_lim_momentum,
    ).to(dev)
    stock, _ = timed(lambda: stock_gl(inverse_mel(mel.float())), dev, args.repeats)
    print(
        f"\ninversion alone: jam {ours * 1000:.1f} ms  vs  torchaudio InverseMelScale+GriffinLim "
        f"{stock * 1000:.1f} ms  ({stock / ours:.2f}x)"
    )


if __name__ == "__main__":
    main()
