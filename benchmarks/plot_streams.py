"""Pictures of what a listener hears, model against model: for each stream prompt, the
spectrogram of the seconds around a seam (notes as lines, or smears) and its strong onsets
against the stream's eighth-note grid (on the grid: green; off: red; seams: dashed).

    python benchmarks/bench_model.py --listen --audio-dir /tmp/v2 --out /tmp/v2.json ...
    python benchmarks/bench_model.py --listen --model M --audio-dir /tmp/v3 --out /tmp/v3.json
    python benchmarks/plot_streams.py --runs /tmp/v2.json:/tmp/v2 /tmp/v3.json:/tmp/v3 \
        --labels v2 v3 --out docs/model_streams.png

Each run is the listen JSON and the folder of WAVs ``bench_model.py --audio-dir`` wrote.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from jam.sound.files import read_audio
from jam.train import listening


def stream_files(listen: dict, folder: Path) -> list[tuple[str, Path]]:
    """(prompt, wav) of each stream, in the names ``bench_model.py --audio-dir`` gives them."""
    out = []
    for k, s in enumerate(listen["streams"]):
        name = f"{k:02d}_{s['style']}_{s['kind']}".replace(" ", "_")
        out.append((s["prompt"], folder / f"{name}.wav"))
    return out


def log_spectrogram(x: np.ndarray, sr: int, fmax: float = 8000.0) -> np.ndarray:
    """dB magnitude, 2048-point Hann STFT, hop 256, rows up to ``fmax``."""
    n, hop = 2048, 256
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * np.hanning(n)
    mag = np.abs(np.fft.rfft(frames, axis=-1)).T
    rows = int(fmax / (sr / n))
    return 20 * np.log10(mag[:rows] + 1e-6)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="LISTEN.json:WAV_FOLDER per model")
    p.add_argument("--labels", nargs="+", required=True)
    p.add_argument("--kind", default="style prompt", help="which streams (bench_model's kind)")
    p.add_argument("--seconds", type=float, default=8.0, help="shown around the first seam")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for spec in args.runs:
        js, folder = spec.split(":", 1)
        listen = json.loads(Path(js).read_text())
        runs.append((listen, stream_files(listen, Path(folder))))
    keep = [i for i, s in enumerate(runs[0][0]["streams"]) if s["kind"] == args.kind]
    fig, axes = plt.subplots(
        len(keep), len(runs), figsize=(6 * len(runs), 2.2 * len(keep)), squeeze=False
    )
    for col, ((listen, files), label) in enumerate(zip(runs, args.labels, strict=True)):
        for row, i in enumerate(keep):
            grid = listen["streams"][i].get("grid", listen["grid"])  # each at its own tempo
            beat, slot = grid["beat_samples"], grid["slot_samples"]
            prompt, wav = files[i]
            audio, sr = read_audio(wav)
            x = audio.numpy().mean(0)
            seam = slot + grid["fade_samples"] / 2  # the middle of the first crossfade
            a = int(max(0, seam - args.seconds / 2 * sr))
            b = int(min(len(x), a + args.seconds * sr))
            ax = axes[row][col]
            spec = log_spectrogram(x[a:b], sr)
            top = spec.max()
            ax.imshow(
                spec, origin="lower", aspect="auto", cmap="magma", vmin=top - 70, vmax=top,
                extent=(a / sr, b / sr, 0, 8),
            )  # fmt: skip
            onsets = listening.strong_onsets(audio, sr)
            eighth = beat / 2
            for t in np.arange(np.ceil(a / eighth), b / eighth) * eighth:
                ax.axvline(t / sr, color="white", lw=0.3, alpha=0.35)
            for s in np.arange(slot, b, slot):
                if s >= a:
                    ax.axvline((s + grid["fade_samples"] / 2) / sr, color="cyan", ls="--", lw=1)
            for o in onsets:
                if a <= o < b:
                    err = abs(o - round(o / eighth) * eighth) / sr
                    ax.plot(o / sr, 7.6, "v", ms=5, color="lime" if err <= 0.04 else "red")
            lock = listen["streams"][i]["beat_lock"]["on_grid"]
            tonal = listen["streams"][i]["tonal"]["tonal_share_bands"]
            ax.set_title(
                f"{label}: {prompt} (on grid {lock:.0%}, tonal/oct {tonal:.2f})"
                if lock is not None
                else f"{label}: {prompt}",
                fontsize=8,
            )
            ax.set_ylabel("kHz", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
