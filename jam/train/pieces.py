"""Excerpts of music21's bundled scores as corpus clips: real melodies and harmony in styles
the composer does not write (chorales, ragtime, folk tunes, Renaissance polyphony, quartets).

A :class:`Family` groups scores rendered alike. music21 is imported only inside the functions:
a corpus without excerpts (``--music21-fraction 0``, as on the GPU machine) must not need it.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jam.train.composer import DRUM_CHANNEL, PROGRAMS, Note


@dataclass(frozen=True)
class Family:
    """A group of music21 corpus scores rendered alike: style label, ensembles, tempo range."""

    name: str
    style: str
    composers: tuple[str, ...]
    pattern: str
    ensembles: tuple[tuple[str, tuple[int, ...]], ...]
    bpm: tuple[int, int]
    phrases: tuple[str, ...]


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("bach", "chorale", ("bach",), r"bwv\d+\.\d+\.mxl$",
               (("church organ", (19,)), ("choir", (52,)), ("strings", (48,)),
                ("string quartet", (40, 40, 41, 42)), ("brass", (56, 60, 57, 57))),
               (60, 84), ("Bach chorale", "J. S. Bach chorale", "baroque chorale",
                          "four-part chorale", "Lutheran chorale")),
        Family("joplin", "ragtime", ("joplin",), r"\.mxl$",
               (("piano", (0,)), ("honky-tonk piano", (3,))), (80, 104),
               ("Joplin ragtime", "Scott Joplin rag", "ragtime", "old-time ragtime",
                "Maple Leaf Rag")),
        Family("folk", "celtic folk", ("ryansMammoth",), r"\.abc$",
               (("fiddle", (110,)), ("flute", (73,)), ("accordion", (21,)), ("pan flute", (75,)),
                ("bagpipes", (109,))),
               (100, 132), ("celtic folk tune", "traditional fiddle tune", "Irish folk tune",
                            "Scottish folk tune", "celtic folk")),
        Family("palestrina", "renaissance choral", ("palestrina",), r"\.krn$",
               (("choir", (52,)), ("recorders", (74,)), ("church organ", (19,)),
                ("strings", (48,))),
               (100, 130), ("Palestrina mass", "Renaissance polyphony", "Palestrina motet",
                            "sacred Renaissance choral music", "Renaissance choral")),
        Family("monteverdi", "renaissance choral", ("monteverdi",), r"\.\d+\.mxl$",
               (("choir", (52,)), ("recorders", (74,)), ("strings", (48,))),
               (90, 120), ("Monteverdi madrigal", "Italian madrigal", "Renaissance madrigal",
                           "Renaissance choral")),
        Family("quartet", "string quartet", ("mozart", "haydn", "beethoven"),
               r"(k80|k155|k156|k458|opus1no1|opus74no1|opus18no1|opus59no\d)/movement\d\.mxl$",
               (("string quartet", (40, 40, 41, 42)),), (80, 126),
               ("classical string quartet", "Mozart-era string quartet", "string quartet",
                "classical chamber music")),
    ]
}  # fmt: skip


@functools.cache
def family_paths(name: str) -> tuple[str, ...]:
    """Corpus-relative paths of a family's scores, sorted, so choices are reproducible."""
    from music21 import corpus

    fam = FAMILIES[name]
    paths: list[str] = []
    for composer in fam.composers:
        for p in corpus.getComposer(composer):
            rel = str(p).split("/corpus/")[-1]
            if re.search(fam.pattern, rel):
                paths.append(rel)
    return tuple(sorted(paths))


@dataclass(frozen=True)
class Score:
    """Flattened notes of a parsed score: (offset, duration) in quarters, part, MIDI pitch."""

    notes: tuple[tuple[float, float, int, int], ...]
    length: float
    measures: tuple[float, ...]
    parts: int
    key: str
    mode: str
    title: str
    composer: str
    meters: tuple[str, ...] = ()  # each measure's time signature ("6/8"), as `measures`


@functools.lru_cache(maxsize=8)
def load_score(path: str) -> Score:
    """Parse once per process; chord symbols and grace notes are dropped, ties merged."""
    import warnings

    from music21 import corpus, harmony

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = corpus.parse(path)
    parts = list(s.parts) or [s]
    notes: list[tuple[float, float, int, int]] = []
    for i, part in enumerate(parts):
        for n in part.stripTies().flatten().notes:
            dur = float(n.duration.quarterLength)
            if dur <= 0 or isinstance(n, harmony.ChordSymbol):
                continue
            for p in n.pitches:
                notes.append((float(n.offset), dur, i, round(p.ps)))
    notes.sort()
    bars = list(parts[0].getElementsByClass("Measure"))
    measures = tuple(float(m.offset) for m in bars)
    meters, ts = [], "4/4"  # music21's default when a score states none
    for m in bars:
        if m.timeSignature is not None:
            ts = m.timeSignature.ratioString
        meters.append(ts)
    try:
        k = s.analyze("key")
        key, mode = k.tonic.name.replace("-", "b"), k.mode
    except Exception:  # analysis fails on odd scores; captions then omit nothing essential
        key, mode = "C", "major"
    md = s.metadata
    return Score(
        notes=tuple(notes),
        length=max((o + d for o, d, _, _ in notes), default=0.0),
        measures=measures or (0.0,),
        parts=len(parts),
        key=key,
        mode=mode if mode in ("major", "minor") else "major",
        title=(md.title if md and md.title else Path(path).stem),
        composer=(md.composer if md and md.composer else ""),
        meters=tuple(meters),
    )


def excerpt_events(
    score: Score, start: float, seconds: float, bpm: float, programs: Sequence[int],
    restrike: bool = False,
) -> list[Note]:  # fmt: skip
    """Notes of a score from quarter `start` lasting `seconds` at `bpm` (quarters per minute),
    looping short pieces. With `restrike`, a note held across `start` sounds again from 0
    for what is left of it (at least a 16th), so a bar that opens on a held chord still has
    its downbeat."""
    span = seconds * bpm / 60.0
    q = 60.0 / bpm
    events: list[Note] = []
    period = max(score.length, 1.0)
    loops = 0
    while loops * period < start + span:
        base = loops * period
        for off, dur, part, pitch in score.notes:
            at = base + off - start
            if restrike and at < 0 < at + dur - 0.25:
                at, dur = 0.0, at + dur
            if at < 0 or at >= span:
                continue
            ch = part if part < DRUM_CHANNEL else part + 1
            vel = 92 if part == 0 else 78
            events.append(Note(at * q, dur * q * 0.95, ch, programs[part % len(programs)],
                               pitch, vel))  # fmt: skip
        loops += 1
        if score.length <= 0:
            break
    return sorted(events, key=lambda n: (n.start, n.channel, n.pitch))


def meter_beats(meter: str) -> tuple[float, float] | None:
    """(quarters per beat, quarters per bar) of a time signature: the beat is the quarter in
    simple time (2/4, 3/4, 4/4, 2/2, 4/2), the dotted quarter in compound time (3/8, 6/8,
    12/8). None for a signature that is not a whole number of such beats."""
    num, _, den = meter.partition("/")
    try:
        n, d = int(num), int(den)
    except ValueError:
        return None
    beat = 1.5 if d == 8 and n % 3 == 0 else 1.0
    bar = n * 4 / d
    return (beat, bar) if n > 0 and d > 0 and (bar / beat).is_integer() else None


def bar_starts(score: Score, beats: int) -> list[tuple[float, float, str]]:
    """(start quarter, quarters per beat, meter) of every excerpt of exactly `beats` beats made
    of whole, full bars of one meter, in score order. Pickup bars and bars of odd lengths never
    start or fall inside one; in triple time (3/4: 3 beats a bar) 8 beats are no whole number
    of bars, so such scores have none."""
    offs = list(score.measures)
    meters = list(score.meters) or ["4/4"] * len(offs)
    lines = [*offs, max(score.length, offs[-1] if offs else 0.0)]  # bar lines, the last at the end
    out: list[tuple[float, float, str]] = []
    for i, start in enumerate(offs):
        fit = meter_beats(meters[i])
        if fit is None:
            continue
        beat, bar = fit
        span = beats * beat
        end, j = start, i
        while j < len(offs) and end < start + span - 1e-6:
            if meters[j] != meters[i] or abs(lines[j + 1] - lines[j] - bar) > 1e-6:
                break
            end, j = lines[j + 1], j + 1
        if abs(end - (start + span)) < 1e-6:
            out.append((start, beat, meters[i]))
    return out


def piece_clip(
    family: str, rng: random.Random, seconds: float, image_bpm: float | None = None,
    beats: int | None = None,
) -> tuple[list[Note], dict]:  # fmt: skip
    """A random excerpt of a random score of a family, with its caption parameters.

    Without `image_bpm`: `seconds` from a random bar line at a tempo drawn from the family's
    range. With it (the corpus's image tempo): exactly `beats` beats of whole bars from a
    downbeat, played at `image_bpm` beats per minute (the beat is the dotted quarter in
    compound time); scores with no such excerpt (triple time) are passed over for another
    score of the family. The tempo drawn from the family's range is kept as ``natural_bpm``,
    in the excerpt's beats per minute, the tempo to play it back at.
    """
    if image_bpm is not None:
        return _bar_clip(family, rng, float(image_bpm), int(beats or 8))
    fam = FAMILIES[family]
    path = rng.choice(family_paths(family))
    score = load_score(path)
    label, programs = rng.choice(fam.ensembles)
    bpm = float(rng.randint(*fam.bpm))
    span = seconds * bpm / 60.0
    starts = [m for m in score.measures if m + span <= score.length] or [0.0]
    start = rng.choice(starts)
    events = excerpt_events(score, start, seconds, bpm, programs)
    names = [label]
    meta = {
        "style": fam.style,
        "bpm": bpm,
        "key": score.key,
        "mode": score.mode,
        "instruments": names,
        "families": sorted({PROGRAMS[p].family for p in programs}),
        "density": "medium",
        "bars": None,
        "source": f"music21:{path}",
        "family": family,
        "title": score.title,
        "start_quarter": start,
    }
    return events, meta


def _bar_clip(family: str, rng: random.Random, bpm: float, beats: int) -> tuple[list[Note], dict]:
    fam = FAMILIES[family]
    paths = family_paths(family)
    for _ in range(64):
        path = rng.choice(paths)
        score = load_score(path)
        starts = bar_starts(score, beats)
        if starts:
            break
    else:
        raise ValueError(f"no score of {family!r} gave {beats} beats of whole bars")
    label, programs = rng.choice(fam.ensembles)
    natural = float(rng.randint(*fam.bpm))
    onsets = {round(off, 6) for off, _, _, _ in score.notes}
    struck = [st for st in starts if round(st[0], 6) in onsets]  # not a bar opening on a rest
    start, beat, meter = rng.choice(struck or starts)
    seconds = beats * 60.0 / bpm
    events = excerpt_events(score, start, seconds, bpm * beat, programs, restrike=True)
    meta = {
        "style": fam.style,
        "bpm": bpm,
        "natural_bpm": natural,
        "key": score.key,
        "mode": score.mode,
        "instruments": [label],
        "families": sorted({PROGRAMS[p].family for p in programs}),
        "density": "medium",
        "bars": None,
        "meter": meter,
        "beat_quarters": beat,
        "source": f"music21:{path}",
        "family": family,
        "title": score.title,
        "start_quarter": start,
    }
    return events, meta
