"""The training corpus for jam's own model, made here from nothing fetched (`jam corpus`).

Composed loops (`jam.composer`) and excerpts of music21's bundled scores are rendered through a
General MIDI SoundFont with tinysoundfont, and each clip gets several captions in varied wording
built from its parameters. Some wording templates and some style/instrument combinations are held
out for evaluation, deterministically: every caption records its split, and clips of a held-out
combination never carry a train caption. Output: `audio/*.wav` (mono 16-bit) and `captions.jsonl`.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import random
import re
import sys
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jam.composer import DRUM_CHANNEL, KEYS, KITS, PROGRAMS, STYLES, Clip, Note, compose

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
PEAK = 0.5
FADE_SECONDS = 0.01
SPLITS = ("train", "heldout_wording", "heldout_combo")

# ----------------------------------------------------------------------------- rendering


@functools.lru_cache(maxsize=2)
def _synth(soundfont: str, sample_rate: int) -> tuple[Any, int]:
    """One loaded synth per process: loading the 148 MB SoundFont costs ~0.35 s."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    return synth, synth.sfload(soundfont, max_voices=256)


def check_soundfont(path: str | Path) -> Path:
    """The SoundFont path, or a clear error saying how to get one."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"SoundFont not found: {p}. Install Debian's fluid-soundfont-gm "
            "(apt-get install fluid-soundfont-gm) or pass --soundfont PATH to any GM .sf2 file."
        )
    return p


def render_events(
    events: Sequence[Note],
    seconds: float,
    sample_rate: int = 22050,
    soundfont: str | Path = DEFAULT_SOUNDFONT,
) -> np.ndarray:
    """Mono float32 audio of note events, exactly `seconds` long, peak-normalised with fades.

    The synth is reused across calls, so every channel's state is reset first: a clip's audio
    depends only on its events, whatever was rendered before it in the same process.
    """
    synth, sfid = _synth(str(soundfont), sample_rate)
    _silence(synth, sample_rate)
    programs: dict[int, int] = {}
    for n in events:
        programs.setdefault(n.channel, n.program)
    for ch in range(16):
        synth.pitchbend(ch, 8192)
        synth.control_change(ch, 7, 100)
        synth.control_change(ch, 10, 64)
        synth.control_change(ch, 64, 0)
    for ch, program in programs.items():
        drums = ch == DRUM_CHANNEL
        synth.program_select(ch, sfid, 128 if drums else 0, program, is_drums=drums)
    total = round(seconds * sample_rate)
    out = np.zeros(2 * total, dtype=np.float32)
    pos = 0
    for at, on, ch, pitch, vel in _schedule(events, sample_rate, total):
        if at > pos:
            out[2 * pos : 2 * at] = np.frombuffer(synth.generate_simple(at - pos), np.float32)
            pos = at
        if on:
            synth.noteon(ch, pitch, vel)
        else:
            synth.noteoff(ch, pitch)
    if total > pos:
        out[2 * pos :] = np.frombuffer(synth.generate_simple(total - pos), np.float32)
    _silence(synth, sample_rate)
    return finish(out.reshape(-1, 2).mean(axis=1), sample_rate)


def _silence(synth: Any, sample_rate: int) -> None:
    """Stop every voice; tinysoundfont's sounds_off only starts a quick release, so render
    that release away too, leaving nothing of one clip in the next."""
    synth.sounds_off()
    synth.generate_simple(sample_rate // 10)


def _schedule(
    events: Iterable[Note], sample_rate: int, total: int
) -> list[tuple[int, bool, int, int, int]]:
    """Note on/off messages in sample order; offs before ons at the same sample."""
    msgs: list[tuple[int, bool, int, int, int]] = []
    for n in events:
        start = round(n.start * sample_rate)
        if start >= total:
            continue
        end = min(total, max(start + 1, round((n.start + n.duration) * sample_rate)))
        msgs.append((start, True, n.channel, n.pitch, n.velocity))
        msgs.append((end, False, n.channel, n.pitch, 0))
    msgs.sort(key=lambda m: (m[0], m[1], m[2], m[3]))
    return msgs


def finish(audio: np.ndarray, sample_rate: int, peak: float = PEAK) -> np.ndarray:
    """Fade both ends (no clicks at clip edges), then peak-normalise what remains."""
    audio = audio.astype(np.float32)
    n = min(len(audio) // 2, round(FADE_SECONDS * sample_rate))
    if n:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        audio[:n] *= ramp
        audio[-n:] *= ramp[::-1]
    top = float(np.max(np.abs(audio))) if audio.size else 0.0
    if top > 1e-6:
        audio *= peak / top
    return audio


def render_clip(
    clip: Clip, seconds: float | None = None, sample_rate: int = 22050,
    soundfont: str | Path = DEFAULT_SOUNDFONT,
) -> np.ndarray:  # fmt: skip
    """A composed clip's audio; `seconds` defaults to its whole bars."""
    return render_events(clip.events, seconds or clip.seconds, sample_rate, soundfont)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Mono 16-bit PCM WAV, readable by anything."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


# ----------------------------------------------------------------------------- music21 pieces


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


# ----------------------------------------------------------------------------- captions

STYLE_WORDS: dict[str, tuple[str, ...]] = {
    "house": ("house", "deep house", "house music", "four-on-the-floor house"),
    "techno": ("techno", "minimal techno", "warehouse techno", "driving techno"),
    "drum and bass": ("drum and bass", "dnb", "drum & bass", "liquid drum and bass"),
    "hip-hop": ("hip hop", "hip-hop", "boom bap", "boom-bap hip hop"),
    "lo-fi": ("lo-fi hip hop", "lofi", "lo-fi", "chillhop", "lo-fi beats"),
    "trap": ("trap", "trap music", "hard trap", "808 trap"),
    "rock": ("rock", "rock and roll", "guitar rock", "indie rock"),
    "metal": ("metal", "heavy metal", "thrash metal", "metal riffing"),
    "funk": ("funk", "funky", "70s funk", "groovy funk"),
    "disco": ("disco", "70s disco", "nu-disco", "dance-floor disco"),
    "jazz": ("jazz", "swing jazz", "bebop", "small-combo jazz"),
    "bossa nova": ("bossa nova", "bossa", "brazilian bossa nova", "samba-jazz"),
    "reggae": ("reggae", "roots reggae", "one-drop reggae", "jamaican reggae"),
    "ambient": ("ambient", "ambient drone", "atmospheric ambient", "dreamy ambient"),
    "chiptune": ("chiptune", "8-bit", "video game music", "retro chiptune"),
    "classical piano": ("classical piano", "piano sonatina", "classical solo piano"),
    "string quartet": ("string quartet", "chamber strings", "classical string quartet"),
    "folk": ("folk", "acoustic folk", "country folk", "americana"),
    "orchestral": ("orchestral", "cinematic orchestral", "symphonic", "film score"),
    "synthwave": ("synthwave", "retrowave", "80s synth pop", "outrun"),
    "blues": ("blues", "12-bar blues", "shuffle blues", "chicago blues"),
}
STYLE_MOODS: dict[str, tuple[str, ...]] = {
    "lo-fi": ("chill", "relaxed", "mellow", "dreamy", "cozy"),
    "ambient": ("calm", "floating", "serene", "spacious"),
    "metal": ("aggressive", "heavy", "furious"),
    "techno": ("hypnotic", "pounding", "relentless"),
    "house": ("groovy", "soulful", "danceable"),
    "jazz": ("smoky", "swinging", "late-night"),
    "funk": ("groovy", "tight", "funky"),
    "trap": ("hard-hitting", "menacing"),
    "orchestral": ("epic", "majestic", "cinematic"),
}
MODE_MOODS = {
    "major": ("bright", "happy", "uplifting", "sunny", "cheerful", "warm", "joyful"),
    "minor": ("dark", "moody", "melancholic", "brooding", "wistful", "somber", "tense"),
}
TEMPO_WORDS = (("slow", "laid-back", "unhurried"), ("mid-tempo", "steady", "easy"),
               ("fast", "uptempo", "energetic", "driving"))  # fmt: skip
DENSITY_WORDS = {
    "sparse": ("minimal", "sparse", "stripped-back"),
    "medium": ("simple", "balanced", ""),
    "busy": ("busy", "dense", "layered", "full"),
}
NOUNS = ("beat", "groove", "track", "loop", "jam", "tune")
CLASSICAL_NOUNS = ("piece", "passage", "excerpt", "phrase")
CLASSICAL = {"classical piano", "string quartet", "orchestral", "chorale", "ragtime",
             "renaissance choral", "celtic folk", "ambient"}  # fmt: skip

TRAIN_TEMPLATES = (
    "{mood} {style} {noun} with {inst}, {bpm} bpm",
    "{style} {noun}, {inst} and {inst2}",
    "{tempo} {style} {noun} featuring {inst}",
    "{density} {mood} {style} with {inst}",
    "{style}, {inst}, {key} {mode}",
    "a {mood} {style} {noun} in {key} {mode} at {bpm} bpm",
    "{inst} over a {tempo} {style} {noun}",
    "{style} {noun} in {key} {mode}, {density}, {inst}",
    "{mood} {tempo} {style}",
    "{bpm} bpm {style} {noun}",
    "{mood} {style}, {inst}",
)
HELDOUT_TEMPLATES = (
    "imagine a {mood} {style} {noun} where {inst} leads, around {bpm} beats per minute",
    "{inst} playing {style}, feeling {mood}",
    "something {mood} and {tempo} in the style of {style}, with {inst}",
)
# Style / instrument-family pairs never trained on: each style and each family still appears
# in train with other partners, so these test composition rather than unseen words.
HELDOUT_COMBOS = frozenset(
    {
        ("jazz", "vibraphone"),
        ("house", "organ"),
        ("bossa nova", "flute"),
        ("rock", "organ"),
        ("disco", "brass"),
        ("ambient", "harp"),
        ("hip-hop", "flute"),
        ("orchestral", "choir"),
        ("synthwave", "electric piano"),
        ("trap", "bells"),
        ("chorale", "strings"),
    }
)


def caption_vocabulary() -> list[str]:
    """Every word or phrase a caption can contain (to pack the text encoder with)."""
    words = [*TRAIN_TEMPLATES, *HELDOUT_TEMPLATES, *NOUNS, *CLASSICAL_NOUNS, *KEYS]
    words.append("major minor an")  # modes, and the article tidy() writes
    words += [
        w for table in (STYLE_WORDS, STYLE_MOODS, MODE_MOODS) for ws in table.values() for w in ws
    ]
    words += [w for ws in (*TEMPO_WORDS, *DENSITY_WORDS.values()) for w in ws]
    words += [p for fam in FAMILIES.values() for p in fam.phrases]
    words += [s for i in (*PROGRAMS.values(), *KITS.values()) for s in i.synonyms]
    return words + [str(n) for n in range(20, 300)]


def is_heldout_combo(style: str, families: Iterable[str]) -> bool:
    """Whether a clip's style plays with an instrument family reserved for evaluation."""
    return any((style, f) in HELDOUT_COMBOS for f in families)


def _style_words(meta: dict) -> tuple[str, ...]:
    if meta.get("family") in FAMILIES:
        return FAMILIES[meta["family"]].phrases
    return STYLE_WORDS[meta["style"]]


def style_words(style: str) -> tuple[str, ...]:
    """Every phrase a caption may use to name a style (composed or music21)."""
    words = list(STYLE_WORDS.get(style, ()))
    for fam in FAMILIES.values():
        if fam.style == style:
            words += fam.phrases
    return tuple(words)


def _instrument_words(meta: dict) -> list[tuple[str, ...]]:
    """Synonym lists of a clip's pitched instruments, most salient first, then the drums."""
    names = meta["instruments"]
    by_name = {i.name: i.synonyms for i in list(PROGRAMS.values()) + list(KITS.values())}
    roles = meta.get("roles") or {}
    order = [roles[r] for r in ("lead", "chords", "pad", "bass", "drums") if r in roles]
    order += names
    unique = list(dict.fromkeys(order))
    return [by_name.get(n, (n,)) for n in unique]


def captions(meta: dict, rng: random.Random, n_train: int = 4, n_heldout: int = 1) -> list[dict]:
    """Varied free-form captions: `n_train` from train templates, `n_heldout` from held-out
    ones; all are marked heldout_combo when the clip's style/instrument pair is held out."""
    combo = is_heldout_combo(meta["style"], meta.get("families", ()))
    insts = _instrument_words(meta)
    train = rng.sample(TRAIN_TEMPLATES, min(n_train, len(TRAIN_TEMPLATES)))
    if len(insts) < 2:
        train = [t for t in train if "{inst2}" not in t] or [TRAIN_TEMPLATES[0]]
    held = rng.sample(HELDOUT_TEMPLATES, min(n_heldout, len(HELDOUT_TEMPLATES)))
    out: list[dict] = []
    seen: set[str] = set()
    for templates, split in ((train, "train"), (held, "heldout_wording")):
        for t in templates:
            text = _fill(t, meta, insts, rng)
            if text in seen:
                continue
            seen.add(text)
            out.append({"text": text, "split": "heldout_combo" if combo else split})
    return out


def _fill(template: str, meta: dict, insts: list[tuple[str, ...]], rng: random.Random) -> str:
    style = meta["style"]
    lo, hi = STYLES[style].bpm if style in STYLES else FAMILIES[meta["family"]].bpm
    frac = (meta["bpm"] - lo) / max(1, hi - lo)
    tempo = TEMPO_WORDS[min(2, int(frac * 3))]
    moods = MODE_MOODS[meta["mode"]] + STYLE_MOODS.get(style, ())
    nouns = CLASSICAL_NOUNS if style in CLASSICAL else NOUNS
    style_phrase = rng.choice(_style_words(meta))
    mood = rng.choice([m for m in moods if m not in style_phrase.lower()] or list(moods))
    first = rng.choice(insts[0]) if insts else "instruments"
    second = rng.choice(insts[1]) if len(insts) > 1 else first
    text = template.format(
        mood=mood,
        style=style_phrase,
        noun=rng.choice(nouns),
        inst=first,
        inst2=second,
        bpm=round(meta["bpm"]),
        key=meta["key"],
        mode=meta["mode"],
        tempo=rng.choice(tempo),
        density=rng.choice(DENSITY_WORDS[meta["density"]]),
    )
    return tidy(text)


def tidy(text: str) -> str:
    """Collapse gaps left by empty words and fix 'a' before vowels."""
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+,", ",", text)
    text = re.sub(r",\s*,", ",", text)
    text = re.sub(r"\ba ([aeiou])", r"an \1", text)
    return text.strip(" ,")


# ----------------------------------------------------------------------------- the corpus


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


__all__ = [
    "DEFAULT_SOUNDFONT",
    "FAMILIES",
    "HELDOUT_COMBOS",
    "HELDOUT_TEMPLATES",
    "KEYS",
    "SPLITS",
    "TRAIN_TEMPLATES",
    "build_corpus",
    "captions",
    "corpus_main",
    "make_clip",
    "piece_clip",
    "read_captions",
    "render_clip",
    "render_events",
    "style_words",
]
