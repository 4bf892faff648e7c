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
    measures = tuple(float(m.offset) for m in parts[0].getElementsByClass("Measure"))
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
    )


def excerpt_events(
    score: Score, start: float, seconds: float, bpm: float, programs: Sequence[int]
) -> list[Note]:
    """Notes of a score from quarter `start` lasting `seconds` at `bpm`, looping short pieces."""
    span = seconds * bpm / 60.0
    q = 60.0 / bpm
    events: list[Note] = []
    period = max(score.length, 1.0)
    loops = 0
    while loops * period < start + span:
        base = loops * period
        for off, dur, part, pitch in score.notes:
            at = base + off - start
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


def piece_clip(family: str, rng: random.Random, seconds: float) -> tuple[list[Note], dict]:
    """A random excerpt of a random score of a family, with its caption parameters."""
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
