"""The training corpus for jam's own model, made here from nothing fetched (`jam corpus`).

Composed loops (`jam.train.composer`) and excerpts of music21's bundled scores
(`jam.train.pieces`) are rendered through a General MIDI SoundFont (`jam.train.soundfont`), and
each clip gets several captions in varied wording (`jam.train.captions`), some held out for
evaluation. This module plans the clips, fans them out to worker processes and writes the
result: `audio/*.wav` (mono 16-bit) and `captions.jsonl`.

Beat-locked by construction (the default, ``--tempo image``): every clip is a whole number of
training tiles, and every tile holds exactly ``--tile-beats`` beats (8: two bars of 4/4, or four
of 6/8) from a downbeat at its first sample, at one *image tempo* for every style
(:func:`jam.train.config.image_bpm`: 94.147 bpm for the model's spectrogram and 512-frame
tiles, the seed loops' tempo). A clip's own tempo is kept as ``natural_bpm``, to be applied at
playback by stretching the spectrogram's time axis (:mod:`jam.sound.tempo`); captions then
name no tempo. ``--tempo natural`` renders the previous corpus, each clip at its style's tempo,
byte for byte as before.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jam.sound.files import write_wav
from jam.sound.params import SpectrogramParams
from jam.train.captions import captions, is_heldout_combo
from jam.train.composer import STYLES, Clip, compose
from jam.train.config import JAM_PARAMS, TILE_BEATS, TILE_WIDTH, image_bpm, parse_params
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
    image_bpm: float | None = None  # None: each clip at its natural tempo (the old corpus)
    tile_beats: int = TILE_BEATS
    tiles: int = 1
    tile_samples: int = 0  # one tile's length at `sample_rate` (rounded up)


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
    } | ({} if clip.natural_bpm is None else {"natural_bpm": clip.natural_bpm})


def make_clip(job: Job) -> dict:
    """Compose or excerpt, render, write the WAV; return its captions.jsonl record."""
    rng = random.Random(f"clip:{job.seed}:{job.index}")
    seconds = job.seconds
    if job.image_bpm is None:  # natural tempo: `seconds` of music at the clip's own tempo
        if job.kind == "composer":
            clip = compose(job.name, rng, min_seconds=job.seconds)
            events = clip.events
            meta = clip_meta(clip)
        else:
            events, meta = piece_clip(job.name, rng, job.seconds)
    else:  # whole tiles of `tile_beats` beats at the image tempo, from a downbeat at sample 0
        beats = job.tile_beats * job.tiles
        seconds = job.tiles * job.tile_samples / job.sample_rate
        if job.kind == "composer":
            # One bar more than is rendered: a drum fill, written into a clip's last bar, then
            # falls after the clip as it did before, not into the end of every tile.
            clip = compose(job.name, rng, bars=beats // 4 + 1, play_bpm=job.image_bpm)
            events = clip.events
            meta = clip_meta(clip) | {"bars": beats // 4}
        else:
            events, meta = piece_clip(job.name, rng, seconds, job.image_bpm, beats)
        meta |= {"tile_beats": job.tile_beats, "tiles": job.tiles}
    audio = render_events(events, seconds, job.sample_rate, job.soundfont)
    slug = re.sub(r"[^a-z0-9]+", "-", meta["style"].lower()).strip("-")
    rel = f"audio/{job.index:06d}_{slug}.wav"
    write_wav(Path(job.out_dir) / rel, audio, job.sample_rate)
    combo = is_heldout_combo(meta["style"], meta.get("families", ()))
    record = {"file": rel, **meta, "seconds": seconds, "sample_rate": job.sample_rate}
    record["split"] = "heldout_combo" if combo else "train"
    record["captions"] = captions(meta, rng)
    return record


def tile_plan(
    seconds: float, sample_rate: int, params: SpectrogramParams = JAM_PARAMS,
    width: int = TILE_WIDTH,
) -> tuple[int, int]:  # fmt: skip
    """(tiles per clip, samples per tile at `sample_rate`): as many whole tiles as fit in
    `seconds` (at least one). A tile is rounded up to whole samples, so a corpus at another
    rate than the model's still yields whole tiles when resampled (`jam.train.dataset`)."""
    n = params.num_samples(width)
    tile_samples = -(-n * sample_rate // params.sample_rate)
    tile_seconds = n / params.sample_rate
    return max(1, math.floor(seconds / tile_seconds + 1e-9)), tile_samples


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
    tempo: str = "image",
    tile_beats: int = TILE_BEATS,
    params: SpectrogramParams = JAM_PARAMS,
) -> Path:
    """Write `n_clips` WAVs under `out_dir/audio` and `out_dir/captions.jsonl`; same seed, same
    bytes (each clip's randomness comes from (seed, index) alone, whatever the worker count).

    `tempo` "image" (the default): each clip is as many whole tiles of `params`' 512-frame
    tiles as fit in `seconds` (at least one), each holding `tile_beats` beats at the image
    tempo. "natural": `seconds` of each clip at its own tempo, as the corpus was before.
    """
    check_soundfont(soundfont)
    if tempo not in ("image", "natural"):
        raise ValueError(f"tempo must be 'image' or 'natural', got {tempo!r}")
    if tile_beats <= 0 or tile_beats % 4:
        raise ValueError(f"tile_beats must be a positive multiple of 4 (whole bars of 4/4), "
                         f"got {tile_beats}")  # fmt: skip
    extra: dict[str, Any] = {}
    if tempo == "image":
        tiles, tile_samples = tile_plan(seconds, sample_rate, params)
        bpm = image_bpm(params, TILE_WIDTH, tile_beats)
        extra = dict(image_bpm=bpm, tile_beats=tile_beats, tiles=tiles, tile_samples=tile_samples)
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    common = (float(seconds), int(sample_rate), str(soundfont), str(out))
    jobs = [
        Job(i, kind, name, seed, *common, **extra)
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
    p.add_argument(
        "--seconds", type=float, default=8.0,
        help="clip length (default 8); with --tempo image, as many whole tiles as fit (>= 1)",
    )  # fmt: skip
    p.add_argument(
        "--tempo", choices=("image", "natural"), default="image",
        help="image (default): every tile holds --tile-beats beats from a downbeat at sample 0, "
        "at one tempo for all styles (94.1 bpm for the model's spectrogram); natural: each clip "
        "at its style's own tempo (the corpus before)",
    )  # fmt: skip
    p.add_argument(
        "--tile-beats", type=int, default=TILE_BEATS,
        help=f"beats per 512-frame tile with --tempo image (default {TILE_BEATS})",
    )  # fmt: skip
    p.add_argument(
        "--params", help="spectrogram params the tiles are for, as `jam train --params` "
        "(default: the embedded model's)",
    )  # fmt: skip
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
    try:
        params = parse_params(args.params)
    except (OSError, ValueError) as e:
        print(f"jam corpus: --params: {e}", file=sys.stderr)
        return 2
    if args.tile_beats <= 0 or args.tile_beats % 4:
        print(f"jam corpus: --tile-beats must be a positive multiple of 4, got {args.tile_beats}",
              file=sys.stderr)  # fmt: skip
        return 2
    path = build_corpus(
        args.out, args.clips, args.seconds, args.sample_rate, args.seed, args.workers,
        args.soundfont, args.music21_fraction, progress=not args.quiet, tempo=args.tempo,
        tile_beats=args.tile_beats, params=params,
    )  # fmt: skip
    records = read_captions(path)
    held = sum(r["split"] == "heldout_combo" for r in records)
    print(f"wrote {len(records)} clips ({held} held-out combos) and {path}")
    if args.tempo == "image":
        r = records[0] if records else {}
        print(
            f"every tile: {args.tile_beats} beats at {r.get('bpm', 0):.3f} bpm from its downbeat "
            f"({r.get('tiles', 0)} tile(s), {r.get('seconds', 0):.3f} s a clip)"
        )
    return 0
