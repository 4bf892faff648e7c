"""Where in the beat each style's strong onsets fall, generated against real: one panel per
style prompt, the share of onsets in each 24th of a beat (``bench_model.py --listen``'s
``style_grid.phases``) for the stream and for real clips of the style, with the style's own
swung 16th grid marked. A groove on its style's grid stacks where the real one does, 16ths and
swing included, which a straight eighth-note grid counts as off the beat.

    python benchmarks/bench_model.py --listen --out /tmp/listen.json ...
    python benchmarks/plot_phases.py /tmp/listen.json --out docs/model_phases.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from jam.train import listening


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("listen", type=Path, help="a bench_model.py --listen JSON")
    p.add_argument("--label", default="generated")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    listen = json.loads(args.listen.read_text())
    streams = [s for s in listen["streams"] if s["kind"] == "style prompt" and "style_grid" in s]
    cols = 4
    rows = -(-len(streams) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat[len(streams) :]:
        ax.axis("off")
    for ax, s in zip(axes.flat, streams, strict=False):
        own = s["style_grid"]
        gen = np.asarray(own["phases"])
        real = np.asarray(listen["real_clips"][s["style"]]["beat_lock"]["style_grid"]["phases"])
        x = np.arange(len(gen)) / len(gen)
        w = 0.4 / len(gen)
        ax.bar(x - w / 2, gen, w, color="tab:orange", label=args.label)
        ax.bar(x + w / 2, real, w, color="tab:blue", label="real clips")
        for g in listening.swung_grid(own["swing"], own["swing_unit"]):
            ax.axvline(g, color="k", lw=0.6, ls=":")
        ax.set_xlim(-0.5 / len(gen), 1 - 0.5 / len(gen))
        ax.set_xticks([0, 0.25, 0.5, 0.75])
        ax.set_xticklabels(["beat", "e", "&", "a"], fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_title(
            f"{s['prompt'][:30]} ({s['grid']['bpm']:.0f} bpm, swing {own['swing']:.2f})\n"
            f"on its 16th grid {own['on_grid']:.0%}, eighths {s['beat_lock']['on_grid']:.0%}, "
            f"like real {own.get('phases_like_real', float('nan')):.2f}",
            fontsize=7,
        )
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
