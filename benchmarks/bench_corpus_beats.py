"""Is every corpus tile beat-locked? Onsets of each clip's first tile against the image-tempo grid.

For each clip of a corpus (`jam corpus` output), the first training tile (512 frames of the
model's spectrogram, 5.098 s) is measured on its audio with :mod:`jam.train.listening`:

- ``on_grid_8th`` / ``on_grid_16th``: the share of strong onsets within ±40 ms of the eighth-
  (sixteenth-) note grid at the image tempo (94.147 bpm: 8 beats per tile) from sample 0,
  pooled over a style's clips (chance: 25% / 50%);
- ``on_own_grid_8th``: the same against the clip's own tempo (its record's ``bpm``);
- ``on_written_grid``: the share within ±40 ms of the grid the notes were written on: 16ths at
  the clip's own tempo, swung as its record says (swung styles' off-beats are meant to miss
  a straight grid), sixths of a beat in compound time (6/8 at the image tempo), a check that
  onsets are found where the notes are;
- ``downbeat_at_0``: the share of clips whose first strong onset is within ±40 ms of sample 0;
- ``whole_beats``: the share of clips whose tile holds a whole number of beats at the clip's own
  tempo (±1%).

Half a second of silence is put before each tile, so an attack at sample 0 is a rise the onset
detector can see (it compares each frame with one half a window earlier). The seed loops are
measured the same way (a row of their own). Usage::

    python3 benchmarks/bench_corpus_beats.py /tmp/corpus [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from jam.sound.files import read_audio
from jam.train import listening
from jam.train.composer import grid_time
from jam.train.config import JAM_PARAMS, TILE_BEATS, TILE_WIDTH, image_bpm
from jam.train.corpus import read_captions

TOLERANCE_S = 0.040
LEAD_IN_S = 0.5


def tile_onsets(audio: np.ndarray, sr: int, tile_samples: int) -> np.ndarray:
    """Strong onsets (samples from the tile's start) of the first tile of a clip."""
    tile = np.asarray(audio, dtype=np.float64)[:tile_samples]
    lead = round(LEAD_IN_S * sr)
    padded = np.concatenate([np.zeros(lead), tile])
    onsets = listening.strong_onsets(padded, sr) - lead
    return onsets[onsets < tile.size]


def on_written_grid(
    onsets: np.ndarray, sr: int, bpm: float, swing: float = 0.0, swing_unit: int = 16,
    compound: bool = False,
) -> int:  # fmt: skip
    """How many onsets lie within the tolerance of the (swung) 16th-note grid at ``bpm``; in
    compound time (6/8: a dotted-quarter beat) the 16ths are sixths of a beat."""
    if not onsets.size:
        return 0
    if compound:
        grid = np.arange(int(onsets.max() / sr / (10.0 / bpm)) + 2) * (10.0 / bpm) * sr
    else:
        steps = int(onsets.max() / sr / (15.0 / bpm)) + 2
        grid = np.array([grid_time(k, bpm, swing, swing_unit) for k in range(steps + 1)]) * sr
    distance = np.abs(onsets[:, None] - grid[None, :]).min(1)
    return int((distance <= TOLERANCE_S * sr).sum())


def clip_figures(
    onsets: np.ndarray, sr: int, grid_bpm: float, own_bpm: float, swing: float = 0.0,
    swing_unit: int = 16, compound: bool = False,
) -> dict:  # fmt: skip
    lock8 = listening.beat_lock(onsets, sr, grid_bpm, 0.0, 2, TOLERANCE_S)
    lock16 = listening.beat_lock(onsets, sr, grid_bpm, 0.0, 4, TOLERANCE_S)
    own = listening.beat_lock(onsets, sr, own_bpm, 0.0, 2, TOLERANCE_S)
    n = int(onsets.size)
    return {
        "onsets": n,
        "on_8th": round((lock8["on_grid"] or 0.0) * n),
        "on_16th": round((lock16["on_grid"] or 0.0) * n),
        "on_own_8th": round((own["on_grid"] or 0.0) * n),
        "on_written": on_written_grid(onsets, sr, own_bpm, swing, swing_unit, compound),
        "downbeat_at_0": bool(n and abs(onsets[0]) <= TOLERANCE_S * sr),
        "first_onset_ms": float(onsets[0] / sr * 1000) if n else None,
    }


def summarise(rows: list[dict]) -> dict:
    n = sum(r["onsets"] for r in rows)

    def share(key: str) -> float | None:
        return round(sum(r[key] for r in rows) / n, 3) if n else None

    return {
        "clips": len(rows),
        "onsets": n,
        "on_grid_8th": share("on_8th"),
        "on_grid_16th": share("on_16th"),
        "on_own_grid_8th": share("on_own_8th"),
        "on_written_grid": share("on_written"),
        "downbeat_at_0": round(sum(r["downbeat_at_0"] for r in rows) / len(rows), 3),
        "whole_beats": round(sum(r["whole_beats"] for r in rows) / len(rows), 3),
    }


def measure_corpus(folder: Path, grid_bpm: float, tile_seconds: float) -> dict[str, dict]:
    by_style: dict[str, list[dict]] = defaultdict(list)
    for rec in read_captions(folder / "captions.jsonl"):
        audio, sr = read_audio(folder / rec["file"])
        x = audio.numpy().mean(0)
        onsets = tile_onsets(x, sr, round(tile_seconds * sr))
        swing = (float(rec.get("swing") or 0.0), int(rec.get("swing_unit") or 16))
        # A corpus at the natural tempo plays 6/8 in quarters; image-tempo clips record the beat.
        compound = rec.get("beat_quarters") == 1.5
        row = clip_figures(onsets, sr, grid_bpm, float(rec["bpm"]), *swing, compound)
        beats = tile_seconds * float(rec["bpm"]) / 60.0
        row["whole_beats"] = abs(beats - round(beats)) < 0.01 * beats
        by_style[rec["style"]].append(row)
    out = {s: summarise(rows) for s, rows in sorted(by_style.items())}
    out["ALL"] = summarise([r for rows in by_style.values() for r in rows])
    return out


def measure_seeds(grid_bpm: float) -> dict:
    from jam.seeds.library import SeedLibrary

    lib = SeedLibrary(JAM_PARAMS, TILE_WIDTH)
    rows = []
    for name in lib.names():
        seed = lib.get(name)
        sr = JAM_PARAMS.sample_rate
        onsets = tile_onsets(seed.audio.numpy().mean(0), sr, lib.num_samples)
        row = clip_figures(onsets, sr, grid_bpm, seed.bpm)
        row["whole_beats"] = True  # by construction: `beats` beats fill the tile
        rows.append(row)
    return summarise(rows) | {"bpm": lib.get(lib.names()[0]).bpm}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", type=Path, nargs="+", help="corpus folder(s) from `jam corpus`")
    p.add_argument("--json", type=Path, help="write the figures here too")
    args = p.parse_args(argv)
    bpm = image_bpm()
    tile_seconds = JAM_PARAMS.num_samples(TILE_WIDTH) / JAM_PARAMS.sample_rate
    print(f"image tempo {bpm:.3f} bpm: {TILE_BEATS} beats in {tile_seconds:.4f} s")
    result: dict = {"image_bpm": bpm, "tile_seconds": tile_seconds}
    seeds = measure_seeds(bpm)
    result["seeds"] = seeds
    print(f"seed loops: {seeds}")
    head = f"{'style':20s} {'clips':>5s} {'onsets':>6s} {'8th':>6s} {'16th':>6s} {'own8th':>6s}"
    head += f" {'writ.':>6s}"
    for folder in args.corpus:
        t = time.perf_counter()
        figures = measure_corpus(folder, bpm, tile_seconds)
        result[str(folder)] = figures
        print(f"\n{folder} ({time.perf_counter() - t:.0f} s to measure)")
        print(f"{head} {'db@0':>6s} {'whole':>6s}")
        for style, f in figures.items():
            cells = [f["on_grid_8th"], f["on_grid_16th"], f["on_own_grid_8th"]]
            cells += [f["on_written_grid"]]
            cells += [f["downbeat_at_0"], f["whole_beats"]]
            text = " ".join(f"{c:6.2f}" if c is not None else "     -" for c in cells)
            print(f"{style:20s} {f['clips']:5d} {f['onsets']:6d} {text}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
