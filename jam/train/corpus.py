"""The training corpus for jam's own model, made here from nothing fetched (`jam corpus`).

Composed loops (`jam.train.composer`) and excerpts of music21's bundled scores
(`jam.train.pieces`) are rendered through a General MIDI SoundFont (`jam.train.soundfont`), and
each clip gets several captions in varied wording (`jam.train.captions`), some held out for
evaluation. This module plans the clips, fans them out to worker processes and writes the
result: `audio/*.wav` (mono 16-bit) and `captions.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jam.sound.files import write_wav
from jam.train.captions import captions, is_heldout_combo
from jam.train.composer import STYLES, Clip, compose
from jam.train.pieces import FAMILIES, piece_clip
from jam.train.soundfont import DEFAULT_SOUNDFONT, check_soundfont, render_events


@dataclass(frozen=True)
class Job:
    """One clip to make: its index, composed style or music21 family, and settings."""

    index: int
    kind: str  # "composer" or "music21"
    name: str
    seed: int
    seconds: float
    sample_rate: int
    soundfont: str
    out_dir: str


def plan(n_clips: int, seed: int, music21_fraction: float) -> list[tuple[str, str]]:
    """Balanced (kind, name) list: styles cycled evenly, music21 families likewise, shuffled."""
    n_m21 = round(n_clips * music21_fraction)
    styles = list(STYLES)
    fams = list(FAMILIES)
    items = [("composer", styles[i % len(styles)]) for i in range(n_clips - n_m21)]
    items += [("music21", fams[i % len(fams)]) for i in range(n_m21)]
    random.Random(f"plan:{seed}").shuffle(items)
    return items


def clip_meta(clip: Clip) -> dict[str, Any]:
    """A composed clip's parameters as its captions.jsonl record (captions are built from it)."""
    return {
        "style": clip.style,
        "bpm": clip.bpm,
        "key": clip.key,
        "mode": clip.mode,
        "instruments": clip.instruments,
        "families": clip.families,
        "roles": clip.roles,
        "density": clip.density,
        "bars": clip.bars,
        "swing": clip.swing,
        "swing_unit": clip.swing_unit,
        "source": "composer",
    }


def make_clip(job: Job) -> dict:
    """Compose or excerpt, render, write the WAV; return its captions.jsonl record."""
    rng = random.Random(f"clip:{job.seed}:{job.index}")
    if job.kind == "composer":
        clip = compose(job.name, rng, min_seconds=job.seconds)
        events = clip.events
        meta = clip_meta(clip)
    else:
        events, meta = piece_clip(job.name, rng, job.seconds)
    audio = render_events(events, job.seconds, job.sample_rate, job.soundfont)
    slug = re.sub(r"[^a-z0-9]+", "-", meta["style"].lower()).strip("-")
    rel = f"audio/{job.index:06d}_{slug}.wav"
    write_wav(Path(job.out_dir) / rel, audio, job.sample_rate)
    combo = is_heldout_combo(meta["style"], meta.get("families", ()))
    record = {"file": rel, **meta, "seconds": job.seconds, "sample_rate": job.sample_rate}
    record["split"] = "heldout_combo" if combo else "train"
    record["captions"] = captions(meta, rng)
    return record


def build_corpus(
    out_dir: str | Path,
    n_clips: int = 1000,
    seconds: float = 8.0,
    sample_rate: int = 22050,
    seed: int = 0,
    workers: int = 1,
    soundfont: str | Path = DEFAULT_SOUNDFONT,
    music21_fraction: float = 0.15,
    progress: bool = True,
) -> Path:
    """Write `n_clips` WAVs under `out_dir/audio` and `out_dir/captions.jsonl`; same seed, same
    bytes (each clip's randomness comes from (seed, index) alone, whatever the worker count)."""
    check_soundfont(soundfont)
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    jobs = [
        Job(i, kind, name, seed, float(seconds), int(sample_rate), str(soundfont), str(out))
        for i, (kind, name) in enumerate(plan(n_clips, seed, music21_fraction))
    ]
    records = _run(jobs, workers, progress)
    records.sort(key=lambda r: r["file"])
    path = out / "captions.jsonl"
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    return path


def _run(jobs: list[Job], workers: int, progress: bool) -> list[dict]:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="clip", disable=not progress, desc="corpus")
    records: list[dict] = []
    if workers <= 1:
        for job in jobs:
            records.append(make_clip(job))
            bar.update()
    else:
        ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        with ctx.Pool(workers) as pool:
            for r in pool.imap_unordered(make_clip, jobs, chunksize=4):
                records.append(r)
                bar.update()
    bar.close()
    return records


def read_captions(path: str | Path) -> list[dict]:
    """The records of a captions.jsonl file."""
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]


def corpus_main(argv: list[str] | None = None) -> int:
    """`jam corpus OUT`: render the training corpus."""
    p = argparse.ArgumentParser(prog="jam corpus", description=__doc__.splitlines()[0])
    p.add_argument("out", help="output folder (audio/*.wav and captions.jsonl)")
    p.add_argument("--clips", type=int, default=1000, help="number of clips (default 1000)")
    p.add_argument("--seconds", type=float, default=8.0, help="clip length (default 8)")
    p.add_argument("--sample-rate", type=int, default=22050, help="Hz (default 22050)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same corpus (default 0)")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument(
        "--music21-fraction", type=float, default=0.15, help="share from music21 (default 0.15)"
    )
    p.add_argument("--soundfont", default=DEFAULT_SOUNDFONT, help="GM .sf2 file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        check_soundfont(args.soundfont)
    except FileNotFoundError as e:
        print(f"jam corpus: {e}", file=sys.stderr)
        return 2
    path = build_corpus(
        args.out, args.clips, args.seconds, args.sample_rate, args.seed, args.workers,
        args.soundfont, args.music21_fraction, progress=not args.quiet,
    )  # fmt: skip
    records = read_captions(path)
    held = sum(r["split"] == "heldout_combo" for r in records)
    print(f"wrote {len(records)} clips ({held} held-out combos) and {path}")
    return 0
