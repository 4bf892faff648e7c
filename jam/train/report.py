"""What a run leaves to look at: sample renders along the way and the loss chart at the end.

Samples go through the real engine (``jam.model.engine``), never the server, so what they show
is what the exported folder will sound like when served.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

SAMPLE_PROMPTS = ("funky bass groove with brass", "dark techno with acid bass", "solo piano")


def plot_losses(
    curves: dict[str, list[float]], path: Path, size: tuple[int, int] = (900, 300)
) -> None:
    """A small log-scale loss chart (one panel per curve), drawn with Pillow."""
    from PIL import Image, ImageDraw

    curves = {k: v for k, v in curves.items() if v}
    w, h = size
    img = Image.new("RGB", (w, h * max(len(curves), 1)), "white")
    draw = ImageDraw.Draw(img)
    for row, (name, values) in enumerate(curves.items()):
        window = max(1, len(values) // 200)
        smooth = [
            sum(values[i : i + window]) / len(values[i : i + window])
            for i in range(0, len(values), window)
        ]
        logs = [math.log10(max(v, 1e-8)) for v in smooth]
        lo, hi = min(logs), max(logs)
        top, pad = row * h, 30
        points = [
            (
                pad + (w - 2 * pad) * i / max(len(logs) - 1, 1),
                top + pad + (h - 2 * pad) * (hi - v) / max(hi - lo, 1e-9),
            )
            for i, v in enumerate(logs)
        ]
        draw.rectangle([pad, top + pad, w - pad, top + h - pad], outline="grey")
        draw.line(points, fill="navy", width=2)
        draw.text(
            (pad, top + 8),
            f"{name}: {smooth[0]:.4f} -> {smooth[-1]:.4f} over {len(values)} steps (log scale)",
            fill="black",
        )
    img.save(path)


def render_samples(
    model_dir: Path,
    out_dir: Path,
    tag: str,
    prompts: Sequence[str] = SAMPLE_PROMPTS,
    device: str = "cpu",
) -> None:
    """Spectrogram PNGs and WAVs of a few prompts, through the real engine."""
    from jam.model.engine import load_engine
    from jam.sound.files import write_wav

    engine = load_engine(model_dir, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    tiles = engine.render([engine.request(p, seed=i) for i, p in enumerate(prompts)])
    for p, tile in zip(prompts, tiles, strict=True):
        name = f"{tag}_{'_'.join(p.split()[:3])}"
        tile.image.save(out_dir / f"{name}.png")
        write_wav(out_dir / f"{name}.wav", tile.audio, engine.params.sample_rate)
