"""Captions of corpus clips, in varied wording built from each clip's parameters, and the splits
that keep evaluation honest.

Some wording templates and some style/instrument-family combinations are held out,
deterministically: every caption records its split (:data:`SPLITS`), and a clip of a held-out
combination never carries a train caption, so prompt adherence can be measured on wordings and
pairings the model never saw.
"""

from __future__ import annotations

import random
import re
import statistics
from collections.abc import Iterable

from jam.train.composer import KEYS, KITS, PROGRAMS, STYLES
from jam.train.pieces import FAMILIES

SPLITS = ("train", "heldout_wording", "heldout_combo")

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


def without_tempo(template: str) -> str:
    """A template with its tempo words ({bpm} and {tempo}) taken out."""
    t = re.sub(r",?\s*(?:at |around )?\{bpm\} (?:bpm|beats per minute)", "", template)
    t = re.sub(r" and \{tempo\}|\{tempo\}\s*", "", t)
    return t.strip(" ,")


# Clips rendered at the corpus's one image tempo (their records carry "natural_bpm") get these:
# every tile then plays at the same tempo and a stream's tempo is set at playback, so a tempo
# in a caption would describe nothing in the image and only teach words to mean nothing.
TRAIN_TEMPLATES_NO_TEMPO = tuple(dict.fromkeys(without_tempo(t) for t in TRAIN_TEMPLATES))
HELDOUT_TEMPLATES_NO_TEMPO = tuple(without_tempo(t) for t in HELDOUT_TEMPLATES)
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


def style_tempos(records: Iterable[dict]) -> dict[str, float]:
    """Each style phrase a caption may use, with the median ``natural_bpm`` of the style's
    clips: the tempo a model trained on them plays the style at (its tiles are drawn at one
    image tempo; see :attr:`jam.model.folder.ModelDefaults.tempos`). Each phrase names one
    style only (``tests/train/test_corpus.py`` checks it)."""
    from jam.sound.tempo import BPM_RANGE

    bpms: dict[str, list[float]] = {}
    for r in records:
        if r.get("natural_bpm"):
            bpms.setdefault(r["style"], []).append(float(r["natural_bpm"]))
    out: dict[str, float] = {}
    for style, values in sorted(bpms.items()):
        bpm = min(max(round(2 * statistics.median(values)) / 2, BPM_RANGE[0]), BPM_RANGE[1])
        out |= {phrase: bpm for phrase in (style, *style_words(style))}
    return dict(sorted(out.items()))


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
    ones; all are marked heldout_combo when the clip's style/instrument pair is held out.

    A clip at the image tempo (its meta has ``natural_bpm``) is captioned without tempo words:
    its style, instruments, key, mood and density, as ever."""
    combo = is_heldout_combo(meta["style"], meta.get("families", ()))
    insts = _instrument_words(meta)
    image = "natural_bpm" in meta
    train_t = TRAIN_TEMPLATES_NO_TEMPO if image else TRAIN_TEMPLATES
    held_t = HELDOUT_TEMPLATES_NO_TEMPO if image else HELDOUT_TEMPLATES
    train = rng.sample(train_t, min(n_train, len(train_t)))
    if len(insts) < 2:
        train = [t for t in train if "{inst2}" not in t] or [train_t[0]]
    held = rng.sample(held_t, min(n_heldout, len(held_t)))
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
    bpm = meta.get("natural_bpm", meta["bpm"])
    frac = (bpm - lo) / max(1, hi - lo)
    tempo = TEMPO_WORDS[max(0, min(2, int(frac * 3)))]
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
