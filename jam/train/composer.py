"""Procedural composer: seeded loops in many styles as General MIDI note events.

The training corpus for jam's own model is made here from nothing fetched: every clip is a whole
number of bars written by idioms (drum grids, bass lines, chord voicings, motif melodies) typical
of its style, with its parameters kept so captions can describe exactly what was played. Pure
Python, no I/O: the same `random.Random` state always gives the same clip.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

DRUM_CHANNEL = 9
DENSITIES = ("sparse", "medium", "busy")
KEYS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}


@dataclass(frozen=True, slots=True)
class Note:
    """One note event; `program` is the GM program (drum kit preset on channel 9)."""

    start: float
    duration: float
    channel: int
    program: int
    pitch: int
    velocity: int


@dataclass(frozen=True, slots=True)
class Instrument:
    """A GM program with the words captions may use for it (first synonym is its name)."""

    program: int
    family: str
    synonyms: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.synonyms[0]


def _instruments(rows: Sequence[tuple[int, str, str]]) -> dict[int, Instrument]:
    return {p: Instrument(p, fam, tuple(s.split("|"))) for p, fam, s in rows}


PROGRAMS: dict[int, Instrument] = _instruments(
    [
        (0, "piano", "grand piano|piano|acoustic piano"),
        (1, "piano", "bright piano|piano|bright grand piano"),
        (3, "piano", "honky-tonk piano|saloon piano|old upright piano"),
        (4, "electric piano", "electric piano|rhodes|mellow electric piano|e-piano"),
        (5, "electric piano", "fm electric piano|dx7 electric piano|electric piano"),
        (6, "harpsichord", "harpsichord|baroque harpsichord"),
        (7, "clavinet", "clavinet|clav|funky clavinet"),
        (8, "bells", "celesta|celeste"),
        (9, "bells", "glockenspiel|glock|bell tones"),
        (10, "bells", "music box|tinkling music box"),
        (11, "vibraphone", "vibraphone|vibes"),
        (12, "mallets", "marimba|wooden marimba"),
        (13, "mallets", "xylophone|bright xylophone"),
        (14, "bells", "tubular bells|chimes|church bells"),
        (16, "organ", "hammond organ|drawbar organ|organ"),
        (17, "organ", "percussive organ|organ|combo organ"),
        (18, "organ", "rock organ|organ|overdriven organ"),
        (19, "organ", "church organ|pipe organ|organ"),
        (21, "accordion", "accordion|squeezebox"),
        (22, "harmonica", "harmonica|blues harp|mouth organ"),
        (24, "guitar", "nylon guitar|classical guitar|nylon-string guitar"),
        (25, "guitar", "acoustic guitar|steel-string guitar|strummed acoustic guitar"),
        (26, "guitar", "jazz guitar|hollow-body guitar|clean jazz guitar"),
        (27, "guitar", "clean electric guitar|clean guitar|electric guitar"),
        (28, "guitar", "muted guitar|palm-muted guitar|funky muted guitar"),
        (29, "guitar", "overdriven guitar|crunchy guitar|overdrive guitar"),
        (30, "guitar", "distorted guitar|heavy guitar|distortion guitar"),
        (32, "bass", "upright bass|double bass|acoustic bass"),
        (33, "bass", "electric bass|bass guitar|finger bass"),
        (34, "bass", "picked bass|bass guitar|pick bass"),
        (35, "bass", "fretless bass|smooth fretless bass"),
        (36, "bass", "slap bass|slapped bass|funky slap bass"),
        (37, "bass", "slap bass|popping bass|funky slap bass"),
        (38, "synth bass", "synth bass|analog bass|analog synth bass"),
        (39, "synth bass", "synth bass|resonant synth bass|squelchy synth bass"),
        (40, "strings", "violin|solo violin"),
        (41, "strings", "viola|solo viola"),
        (42, "strings", "cello|solo cello"),
        (43, "strings", "contrabass|double bass"),
        (45, "strings", "pizzicato strings|plucked strings|pizzicato"),
        (46, "harp", "harp|concert harp"),
        (47, "timpani", "timpani|kettle drums"),
        (48, "strings", "strings|string section|string ensemble"),
        (49, "strings", "slow strings|lush strings|string pads"),
        (50, "strings", "synth strings|string synth|analog strings"),
        (52, "choir", "choir|voices|choir aahs"),
        (56, "brass", "trumpet|bright trumpet"),
        (57, "brass", "trombone|slide trombone"),
        (59, "brass", "muted trumpet|harmon-muted trumpet|mellow muted trumpet"),
        (60, "brass", "french horn|horn|warm french horn"),
        (61, "brass", "brass section|brass|horn section"),
        (62, "synth", "synth brass|brassy synth|analog synth brass"),
        (64, "sax", "soprano sax|soprano saxophone"),
        (65, "sax", "alto sax|alto saxophone|sax"),
        (66, "sax", "tenor sax|tenor saxophone|sax"),
        (68, "woodwind", "oboe|reedy oboe"),
        (70, "woodwind", "bassoon|woody bassoon"),
        (71, "woodwind", "clarinet|warm clarinet"),
        (73, "flute", "flute|airy flute|breathy flute"),
        (74, "flute", "recorder|wooden recorder"),
        (75, "flute", "pan flute|pan pipes|breathy pan flute"),
        (80, "synth", "square lead|chiptune square|8-bit square wave"),
        (81, "synth", "saw lead|sawtooth synth|synth lead"),
        (87, "synth", "bass and lead synth|fat synth lead|mono synth"),
        (88, "pad", "fantasia pad|new age pad|shimmering pad"),
        (89, "pad", "warm pad|soft synth pad|analog pad"),
        (90, "pad", "polysynth|poly synth|synth chords"),
        (91, "pad", "space voice pad|vocal pad|airy choir pad"),
        (92, "pad", "bowed glass pad|glassy pad"),
        (94, "pad", "halo pad|ethereal pad"),
        (95, "pad", "sweep pad|sweeping pad|filter-swept pad"),
        (105, "banjo", "banjo|plucky banjo"),
        (109, "bagpipe", "bagpipes|highland bagpipes"),
        (110, "fiddle", "fiddle|folk fiddle"),
    ]
)

KITS: dict[int, Instrument] = _instruments(
    [
        (0, "drums", "drums|drum kit|acoustic drums"),
        (8, "drums", "room drums|live drums|drums"),
        (16, "drums", "rock drums|power drums|big drums"),
        (24, "drum machine", "electronic drums|drum machine|electronic beat"),
        (25, "drum machine", "808 drums|tr-808|808 drum machine"),
        (32, "drums", "jazz drums|jazz kit|ride cymbal and drums"),
        (40, "drums", "brushed drums|brushes|brush kit"),
    ]
)

# GM drum keys used below.
KICK, RIM, SNARE, CLAP, CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 36, 37, 38, 39, 42, 44, 46
LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE, TAMBOURINE, SHAKER = 45, 47, 50, 49, 51, 54, 70
CLAVES, COWBELL = 75, 56

# A drum line: (key, 16-step pattern, minimum density level). Pattern letters: x accent,
# o normal, g ghost, r 32nd-note roll, . rest. Levels: 0 always, 1 medium and busy, 2 busy only.
DrumLine = tuple[int, str, int]
VELOCITY = {"x": 112, "o": 88, "g": 48, "r": 70}
FOUR_FLOOR = "x...x...x...x..."
BACKBEAT = "....x.......x..."
EIGHTHS = "o.o.o.o.o.o.o.o."
SIXTEENTHS = "xgogxgogxgogxgog"
OFFBEAT = "..o...o...o...o."

DRUM_PATTERNS: dict[str, tuple[tuple[DrumLine, ...], ...]] = {
    "house": (
        ((KICK, FOUR_FLOOR, 0), (CLAP, BACKBEAT, 0), (OPEN_HAT, OFFBEAT, 0)),
        ((KICK, FOUR_FLOOR, 0), (CLAP, BACKBEAT, 1), (OPEN_HAT, OFFBEAT, 0)),
    ),
    "techno": (
        ((KICK, FOUR_FLOOR, 0), (OPEN_HAT, OFFBEAT, 0), (RIM, "...o..o....o..o.", 1)),
        ((KICK, FOUR_FLOOR, 0), (CLAP, BACKBEAT, 1), (OPEN_HAT, OFFBEAT, 0)),
    ),
    "drum and bass": (
        ((KICK, "x.........x.....", 0), (SNARE, BACKBEAT, 0), (CLOSED_HAT, EIGHTHS, 1)),
        ((KICK, "x.........xo....", 0), (SNARE, "....x..g.g..x...", 0), (RIDE, EIGHTHS, 1)),
    ),
    "hip-hop": (
        ((KICK, "x......o..x.....", 0), (SNARE, BACKBEAT, 0), (CLOSED_HAT, EIGHTHS, 0)),
        ((KICK, "x.....x...x..o..", 0), (SNARE, BACKBEAT, 0), (CLOSED_HAT, EIGHTHS, 0)),
    ),
    "lo-fi": (
        ((KICK, "x......o..x.....", 0), (SNARE, BACKBEAT, 0), (CLOSED_HAT, EIGHTHS, 1)),
        ((KICK, "x.......o.x.....", 0), (RIM, BACKBEAT, 0), (CLOSED_HAT, EIGHTHS, 0)),
    ),
    "trap": (
        ((KICK, "x......x..x.....", 0), (CLAP, "........x.......", 0), (CLOSED_HAT, EIGHTHS, 0)),
        ((KICK, "x.......x.....x.", 0), (SNARE, "........x.......", 0), (CLOSED_HAT, EIGHTHS, 0)),
    ),
    "rock": (
        ((KICK, "x.......x.x.....", 0), (SNARE, BACKBEAT, 0), (CLOSED_HAT, EIGHTHS, 0)),
        ((KICK, "x.x.....x.......", 0), (SNARE, BACKBEAT, 0), (RIDE, EIGHTHS, 0)),
    ),
    "metal": (
        ((KICK, "xoxoxoxoxoxoxoxo", 0), (SNARE, BACKBEAT, 0), (CRASH, "x...x...x...x...", 1)),
        ((KICK, "x.x.x.x.x.x.x.x.", 0), (SNARE, BACKBEAT, 0), (RIDE, "x.o.x.o.x.o.x.o.", 1)),
    ),
    "funk": (
        ((KICK, "x..x..x...x..o..", 0), (SNARE, "....x..g.g..x..g", 0), (CLOSED_HAT, EIGHTHS, 0)),
        ((KICK, "x.x....x..x.....", 0), (SNARE, "....x.g.....x.g.", 0), (CLOSED_HAT, EIGHTHS, 0)),
    ),
    "disco": (
        ((KICK, FOUR_FLOOR, 0), (SNARE, BACKBEAT, 0), (OPEN_HAT, OFFBEAT, 0)),
        ((KICK, FOUR_FLOOR, 0), (CLAP, BACKBEAT, 0), (OPEN_HAT, OFFBEAT, 0)),
    ),
    "jazz": (
        ((RIDE, "x...x.o.x...x.o.", 0), (PEDAL_HAT, BACKBEAT, 0), (KICK, "g.......g.......", 1)),
        ((RIDE, "x...x.o.x...x.o.", 0), (PEDAL_HAT, BACKBEAT, 0), (SNARE, "......g.......g.", 1)),
    ),
    "bossa nova": (
        ((KICK, "x..xx..xx..xx..x", 0), (RIM, "x..x..x...x..x..", 0), (CLOSED_HAT, EIGHTHS, 1)),
        ((KICK, "x..ox..ox..ox..o", 0), (RIM, "..x..x...x..x...", 0), (SHAKER, EIGHTHS, 1)),
    ),
    "reggae": (
        ((KICK, "........x.......", 0), (RIM, "........x.......", 0), (CLOSED_HAT, EIGHTHS, 0)),
        ((KICK, "x.......x.......", 0), (SNARE, "........x.......", 0), (CLOSED_HAT, EIGHTHS, 0)),
    ),
    "chiptune": (
        ((KICK, "x.......x.x.....", 0), (SNARE, BACKBEAT, 0), (CLOSED_HAT, EIGHTHS, 1)),
        ((KICK, "x...x...x...x...", 0), (SNARE, BACKBEAT, 0), (CLOSED_HAT, OFFBEAT, 1)),
    ),
    "folk": (
        ((KICK, "x.......x.......", 0), (TAMBOURINE, OFFBEAT, 0)),
        ((KICK, "x.......x.......", 0), (RIM, BACKBEAT, 0), (SHAKER, EIGHTHS, 1)),
    ),
    "synthwave": (
        ((KICK, FOUR_FLOOR, 0), (SNARE, BACKBEAT, 0), (CLOSED_HAT, EIGHTHS, 0)),
        ((KICK, "x.......x.x.....", 0), (SNARE, BACKBEAT, 0), (CLOSED_HAT, SIXTEENTHS, 1)),
    ),
    "blues": (
        ((KICK, "x.......x.......", 0), (SNARE, BACKBEAT, 0), (RIDE, EIGHTHS, 0)),
        ((KICK, "x.....o.x.......", 0), (SNARE, BACKBEAT, 0), (CLOSED_HAT, EIGHTHS, 0)),
    ),
}
BUSY_HATS = (CLOSED_HAT, "gggggggggggggggg", 2)

# Chord progressions as 0-based scale degrees, one per chord slot.
MAJOR_PROGS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 0, 4), (0, 5, 1, 4), (3, 0, 4, 5), (0, 3, 4, 3))
MINOR_PROGS = ((0, 5, 6, 0), (0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4))
JAZZ_MAJOR = ((1, 4, 0, 5), (0, 5, 1, 4), (2, 5, 1, 4), (3, 2, 1, 4))
JAZZ_MINOR = ((0, 3, 1, 4), (0, 5, 1, 4), (3, 6, 2, 5))
VAMP_MINOR = ((0, 0, 0, 0), (0, 0, 5, 5), (0, 6, 0, 6), (0, 3, 0, 3))
VAMP_MAJOR = ((0, 0, 3, 3), (0, 3, 0, 3), (0, 4, 0, 4))
BLUES = ((0, 3, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4),)

Part = Callable[["Ctx", random.Random], list[Note]]
# Mix balance by velocity: keep the bass and pads from masking the lead and drums.
ROLE_GAIN = {"bass": 0.85, "pad": 0.8, "chords": 0.9, "viola": 0.9, "timpani": 0.8}


@dataclass(frozen=True)
class Style:
    """What makes a style recognisable: tempo, grooves, idioms and instrument palettes."""

    name: str
    bpm: tuple[int, int]
    major_weight: float
    bass: tuple[int, ...]
    bass_idioms: tuple[str, ...]
    chords: tuple[int, ...]
    chord_idioms: tuple[str, ...]
    lead: tuple[int, ...] = ()
    lead_idioms: tuple[str, ...] = ("melody",)
    pad: tuple[int, ...] = ()
    kits: tuple[int, ...] = ()
    swing: tuple[float, float] = (0.0, 0.0)
    swing_unit: int = 16
    progressions: tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]] = (
        MAJOR_PROGS,
        MINOR_PROGS,
    )
    sevenths: float = 0.0
    chords_per_bar: float = 1.0
    lead_chance: float = 0.8
    pad_chance: float = 0.4
    lead_octave: int = 5
    ensemble: str = ""


STYLES: dict[str, Style] = {
    s.name: s
    for s in [
        Style("house", (118, 128), 0.5, (38, 39, 33), ("offbeat", "octave"), (0, 16, 90, 4),
              ("stab", "block"), (81, 80, 0, 11), ("riff", "melody"), (89, 95, 49), (24, 25)),
        Style("techno", (125, 140), 0.15, (38, 39), ("rolling", "offbeat"), (62, 90, 81),
              ("stab", "arp"), (81, 87, 14), ("riff", "arp"), (95, 92, 50), (24, 25),
              progressions=(VAMP_MAJOR, VAMP_MINOR), lead_chance=0.5),
        Style("drum and bass", (165, 176), 0.25, (38, 39, 33), ("sub",), (89, 4, 49, 91),
              ("pad", "stab"), (81, 0, 73, 14), ("melody", "riff"), (95, 94), (0, 24, 8),
              chords_per_bar=0.5),
        Style("hip-hop", (84, 98), 0.3, (33, 34, 38), ("root", "syncopated"), (4, 0, 48, 11),
              ("stab", "block"), (73, 56, 65, 45), ("riff", "melody"), (49,), (0, 8, 25),
              swing=(0.1, 0.25), sevenths=0.6),
        Style("lo-fi", (70, 90), 0.55, (32, 33, 35), ("root", "syncopated"), (4, 5, 26, 0, 11),
              ("block", "comp", "arp"), (73, 59, 9, 11, 4), ("melody", "sparse"), (89, 88),
              (0, 40, 8), swing=(0.2, 0.35), sevenths=1.0, lead_chance=0.6),
        Style("trap", (130, 150), 0.15, (38, 87), ("sub",), (89, 52, 10, 14, 0),
              ("pad", "arp", "block"), (80, 73, 45, 81), ("riff", "melody"), (91, 49), (25,),
              chords_per_bar=0.5),
        Style("rock", (100, 140), 0.6, (33, 34), ("eighths", "root"), (29, 30, 27, 18),
              ("power", "strum"), (29, 30, 18, 0), ("melody", "riff"), (), (16, 0, 8),
              lead_chance=0.6, pad_chance=0.0),
        Style("metal", (140, 190), 0.05, (34, 33), ("gallop", "eighths"), (30,), ("power",),
              (30, 29, 81), ("riff", "melody"), (), (16, 0), lead_chance=0.6, pad_chance=0.0),
        Style("funk", (95, 115), 0.45, (36, 37, 33), ("syncopated",), (7, 28, 16, 4),
              ("stab", "comp"), (61, 65, 66, 56), ("riff", "melody"), (), (0, 8), sevenths=0.7,
              swing=(0.0, 0.12), pad_chance=0.0),
        Style("disco", (110, 124), 0.6, (33, 38), ("octave",), (48, 0, 27, 90),
              ("stab", "strum", "block"), (49, 61, 81, 65), ("melody", "riff"), (49,), (0, 24),
              sevenths=0.4),
        Style("jazz", (110, 180), 0.6, (32,), ("walking",), (0, 26), ("comp",),
              (65, 66, 56, 11, 71, 59), ("melody",), (), (32, 40), swing=(0.28, 0.34),
              swing_unit=8, progressions=(JAZZ_MAJOR, JAZZ_MINOR), sevenths=1.0,
              chords_per_bar=1.0, pad_chance=0.0),
        Style("bossa nova", (120, 145), 0.55, (32, 33), ("root_fifth",), (24, 4),
              ("bossa", "comp"), (73, 66, 11, 4, 24), ("melody",), (49,), (0, 40),
              progressions=(JAZZ_MAJOR, JAZZ_MINOR), sevenths=1.0, pad_chance=0.2),
        Style("reggae", (68, 90), 0.6, (33, 32), ("reggae",), (28, 27, 16, 17),
              ("skank",), (56, 22, 16, 66), ("melody", "riff"), (), (0, 8),
              swing=(0.1, 0.25), swing_unit=8, progressions=(VAMP_MAJOR + MAJOR_PROGS[:2],
              VAMP_MINOR), pad_chance=0.0, lead_chance=0.5),
        Style("ambient", (60, 90), 0.55, (38, 42, 89), ("drone",), (88, 89, 91, 92, 94, 49),
              ("pad",), (14, 9, 11, 46, 8, 10, 73), ("sparse",), (52, 49, 94), (),
              chords_per_bar=0.5, sevenths=0.5, lead_chance=0.7, pad_chance=0.6),
        Style("chiptune", (120, 160), 0.7, (80, 38), ("octave", "eighths"), (80, 81),
              ("arp",), (80, 81), ("melody", "arp"), (), (24,), lead_chance=1.0,
              pad_chance=0.0, lead_octave=6),
        Style("classical piano", (60, 120), 0.6, (0,), ("piano_left",), (0,),
              ("alberti", "broken"), (0,), ("melody",), (), (), lead_chance=1.0,
              pad_chance=0.0, ensemble="piano"),
        Style("string quartet", (60, 120), 0.5, (42,), ("cello",), (40, 41),
              ("inner",), (40,), ("melody",), (), (), lead_chance=1.0, pad_chance=0.0,
              ensemble="quartet"),
        Style("folk", (90, 130), 0.8, (32, 33), ("root_fifth",), (25, 24, 105, 21),
              ("strum",), (110, 73, 22, 21, 105, 75), ("melody",), (), (0, 8),
              lead_chance=0.9, pad_chance=0.0),
        Style("orchestral", (70, 120), 0.5, (43, 42), ("root",), (48, 49, 61, 60),
              ("pad", "tremolo"), (73, 68, 71, 56, 60, 40), ("melody",), (52, 46, 61),
              (), lead_chance=0.9, pad_chance=0.6, ensemble="orchestra"),
        Style("synthwave", (95, 118), 0.35, (38, 39), ("eighths", "octave"), (90, 50, 5),
              ("block", "arp"), (81, 87, 62), ("melody", "riff"), (89, 95), (24,),
              pad_chance=0.6),
        Style("blues", (70, 120), 0.8, (33, 32), ("walking", "root_fifth"), (0, 16, 27, 3),
              ("comp", "shuffle"), (22, 65, 27, 66), ("melody",), (), (0, 8, 32),
              swing=(0.28, 0.34), swing_unit=8, progressions=(BLUES, BLUES), sevenths=1.0,
              pad_chance=0.0),
    ]
}  # fmt: skip


@dataclass
class Clip:
    """A loop: its musical parameters (for captions) and its note events."""

    style: str
    bpm: float
    key: str
    mode: str
    instruments: list[str]
    density: str
    bars: int
    events: list[Note] = field(repr=False)
    beats_per_bar: int = 4
    swing: float = 0.0
    swing_unit: int = 16
    families: list[str] = field(default_factory=list)
    roles: dict[str, str] = field(default_factory=dict)
    natural_bpm: float | None = None  # the style's own tempo when `bpm` is the image tempo

    @property
    def bar_seconds(self) -> float:
        return self.beats_per_bar * 60.0 / self.bpm

    @property
    def seconds(self) -> float:
        return self.bars * self.bar_seconds


@dataclass(frozen=True)
class Ctx:
    """Everything a part writer needs: the grid, the harmony and the density."""

    style: Style
    bpm: float
    swing: float
    key_pc: int
    mode: str
    bars: int
    density: int  # 0 sparse, 1 medium, 2 busy
    progression: tuple[int, ...]
    sevenths: bool

    @property
    def step_seconds(self) -> float:
        return 60.0 / self.bpm / 4

    def time(self, step: float) -> float:
        return grid_time(self.snap(step), self.bpm, self.swing, self.style.swing_unit)

    def snap(self, step: float) -> float:
        """In swung-8th styles a 16th off-beat has no place: push it to the next 8th."""
        if self.style.swing_unit == 8 and step == int(step) and int(step) % 2 == 1:
            return step + 1
        return step

    def chord_degree(self, step: float) -> int:
        """Scale degree of the chord sounding at a step."""
        slot_steps = 16 / self.style.chords_per_bar
        return self.progression[int(step // slot_steps) % len(self.progression)]

    def chord_slots(self) -> list[tuple[int, int, int]]:
        """(start step, length in steps, degree) of each chord in the clip."""
        slot = int(16 / self.style.chords_per_bar)
        total = self.bars * 16
        return [(s, min(slot, total - s), self.chord_degree(s)) for s in range(0, total, slot)]


def grid_time(step: float, bpm: float, swing: float = 0.0, swing_unit: int = 16) -> float:
    """Seconds at a 16th-note step; swing delays the off-beat 16ths (or 8ths) by a fraction of
    a 16th (or 8th). Fractional steps (32nd rolls) are not swung."""
    step_seconds = 60.0 / bpm / 4
    t = step * step_seconds
    whole = math.floor(step + 1e-9)
    if swing and abs(step - whole) < 1e-9:
        if swing_unit == 16 and whole % 2 == 1:
            t += swing * step_seconds
        elif swing_unit == 8 and whole % 4 == 2:
            t += swing * 2 * step_seconds
    return t


def scale_pitch(key_pc: int, mode: str, degree: int, octave: int) -> int:
    """MIDI pitch of a (possibly negative or >7) scale degree in an octave."""
    scale = SCALES[mode]
    return 12 * (octave + 1) + key_pc + scale[degree % 7] + 12 * (degree // 7)


def chord_tones(ctx: Ctx, degree: int) -> list[int]:
    """Pitch classes above the tonic (not wrapped) of the diatonic triad or seventh on a degree."""
    n = 4 if ctx.sevenths else 3
    tones = [scale_pitch(ctx.key_pc, ctx.mode, degree + 2 * k, -1) for k in range(n)]
    if ctx.mode == "minor" and degree % 7 == 4 and ctx.style.ensemble:
        tones[1] += 1  # harmonic-minor dominant for classical styles
    return tones


def voicing(tones: Sequence[int], low: int, high: int, prev: Sequence[int] | None) -> list[int]:
    """Close voicing of the tones inside [low, high] moving least from the previous voicing."""
    candidates: list[list[int]] = []
    for octave in range(0, 11):
        for inv in range(len(tones)):
            rotated = list(tones[inv:]) + [t + 12 for t in tones[:inv]]
            base = 12 * octave + rotated[0] % 12
            shift = base - rotated[0]
            v = [t + shift for t in rotated]
            if v[0] >= low and v[-1] <= high:
                candidates.append(v)
    if not candidates:
        return [low + (t - low) % 12 for t in tones]
    if prev is None:
        mid = (low + high) / 2
        return min(candidates, key=lambda v: abs(sum(v) / len(v) - mid))
    centre = sum(prev) / len(prev)
    return min(candidates, key=lambda v: abs(sum(v) / len(v) - centre))


def _note(ctx: Ctx, step: float, steps: float, pitch: int, vel: int, rng: random.Random) -> Note:
    """A note on the swung grid (channel/program filled in later), velocity humanised."""
    start = ctx.time(step)
    end = ctx.time(step + steps)
    vel = max(1, min(127, vel + rng.randint(-6, 6)))
    return Note(start, max(0.03, end - start - 0.01), 0, 0, pitch, vel)


# ----------------------------------------------------------------------------- drums


def drum_part(ctx: Ctx, rng: random.Random) -> list[Note]:
    """The style's groove, thinned or thickened by density, mutated per bar, with a fill."""
    lines = list(rng.choice(DRUM_PATTERNS[ctx.style.name]))
    if ctx.density == 2 and ctx.style.name in ("house", "techno", "disco", "funk", "hip-hop"):
        lines.append(BUSY_HATS)
    lines = [ln for ln in lines if ln[2] <= ctx.density]
    notes: list[Note] = []
    fill = ctx.bars >= 2 and ctx.density > 0 and rng.random() < 0.5
    for bar in range(ctx.bars):
        last = bar == ctx.bars - 1
        for key, pattern, _ in lines:
            pat = _mutate(pattern, key, rng) if ctx.density > 0 else pattern
            if ctx.style.name == "trap" and key == CLOSED_HAT:
                pat = _trap_hats(ctx.density, rng)
            for step, ch in enumerate(pat):
                if ch == "." or (fill and last and step >= 12 and key != KICK):
                    continue
                s = bar * 16 + step
                notes.append(_drum(ctx, s, key, VELOCITY[ch], rng))
                if ch == "r":
                    notes.append(_drum(ctx, s + 0.5, key, VELOCITY[ch], rng))
        if bar == 0 and ctx.density > 0 and rng.random() < 0.5:
            notes.append(_drum(ctx, 0, CRASH, 100, rng))
        if fill and last:
            toms = rng.choice(((SNARE,) * 4, (HIGH_TOM, HIGH_TOM, MID_TOM, LOW_TOM)))
            for i, key in enumerate(toms):
                notes.append(_drum(ctx, bar * 16 + 12 + i, key, 80 + 8 * i, rng))
    return notes


def _drum(ctx: Ctx, step: float, key: int, vel: int, rng: random.Random) -> Note:
    """Drums sit exactly on the (swung) grid; only velocity varies."""
    return Note(ctx.time(step), 0.12, 0, 0, key, max(1, min(127, vel + rng.randint(-8, 8))))


def _mutate(pattern: str, key: int, rng: random.Random) -> str:
    """Small per-bar variations: an extra ghost or kick, a dropped off-beat hit."""
    chars = list(pattern)
    if rng.random() < 0.3:
        i = rng.randrange(16)
        if chars[i] == "." and key in (SNARE, CLOSED_HAT, KICK, RIM):
            chars[i] = "g" if key != KICK else "o"
        elif chars[i] in "og" and i % 4 != 0:
            chars[i] = "."
    return "".join(chars)


def _trap_hats(density: int, rng: random.Random) -> str:
    """Trap hi-hats: 8ths or 16ths with 32nd-note rolls."""
    chars = list(EIGHTHS if density == 0 else "oooooooooooooooo")
    for _ in range(density + 1):
        if rng.random() < 0.6:
            i = rng.randrange(16)
            chars[i] = "r"
    return "".join(chars)


# ----------------------------------------------------------------------------- bass

BASS_RHYTHMS = {
    "syncopated": ((0, 3, 6, 10, 13), (0, 2, 7, 10, 11, 14), (0, 3, 8, 11, 14)),
    "gallop": ((0, 2, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15),),
}


def bass_part(idiom: str) -> Part:
    """A bass-line writer for an idiom name."""

    def write(ctx: Ctx, rng: random.Random) -> list[Note]:
        notes: list[Note] = []
        octave = 1 if idiom not in ("drone", "piano_left", "cello") else 2
        rhythm = rng.choice(BASS_RHYTHMS.get(idiom, ((0,),)))
        for bar in range(ctx.bars):
            for beat_steps in _bass_bar(idiom, ctx, bar, rhythm, rng):
                step, length, degree_offset, vel = beat_steps
                s = bar * 16 + step
                root = ctx.chord_degree(s)
                pitch = scale_pitch(ctx.key_pc, ctx.mode, root, octave)
                pitch += degree_offset
                while pitch < 28:
                    pitch += 12
                notes.append(_note(ctx, s, length, pitch, vel, rng))
        return notes

    return write


def _bass_bar(
    idiom: str, ctx: Ctx, bar: int, rhythm: Sequence[int], rng: random.Random
) -> list[tuple[float, float, int, int]]:
    """(step, length, semitone offset from chord root, velocity) for one bar of an idiom."""
    d = ctx.density
    fifth = 7
    if idiom == "offbeat":
        return [(s, 2, 0, 100) for s in (2, 6, 10, 14)]
    if idiom == "octave":
        return [(s, 2, 12 * ((s // 2) % 2), 100) for s in range(0, 16, 2)]
    if idiom == "rolling":
        return [(s, 1, 0, 95 if s % 2 else 105) for s in range(16) if s % 4]
    if idiom == "sub":
        return [(0, 10, 0, 110)] + ([(10, 6, 0, 100)] if d else [])
    if idiom == "root":
        if d == 0:
            return [(0, 16, 0, 100)]
        return [(0, 6, 0, 105), (6, 2, 0, 90), (8, 8, 0 if d == 1 else fifth, 95)]
    if idiom == "eighths":
        return [(s, 2, 0, 100 if s % 4 == 0 else 88) for s in range(0, 16, 2)]
    if idiom == "gallop":
        return [(s, 1, 0, 100) for s in rhythm]
    if idiom == "syncopated":
        out = []
        for i, s in enumerate(rhythm):
            off = rng.choice((0, 0, 12, fifth, 10 if ctx.mode == "minor" else 9))
            out.append((s, 2 if i < len(rhythm) - 1 else 1, off if i else 0, 100 if i else 112))
        if d == 2:
            out.append((15, 1, 12, 50))
        return out
    if idiom == "walking":
        return [(s, 4, w, 95) for s, w in zip((0, 4, 8, 12), _walk(ctx, rng), strict=True)]
    if idiom == "root_fifth":
        return [(0, 6, 0, 100), (6, 2, fifth, 80), (8, 6, -5, 95), (14, 2, 0, 80)]
    if idiom == "reggae":
        return [(0, 3, 0, 105), (4, 2, 0, 90), (7, 1, fifth, 85), (10, 4, 12, 95)]
    if idiom == "drone":
        return [(0, 16, 0, 70)]
    if idiom == "piano_left":
        return [(0, 8 if d else 16, -12, 75)] + ([(8, 8, -5, 70)] if d else [])
    if idiom == "cello":
        if d == 0:
            return [(0, 16, 0, 80)]
        return [(0, 8, 0, 85), (8, 8, fifth - 12 if bar % 2 else 0, 80)]
    raise ValueError(f"unknown bass idiom {idiom!r}")


def _walk(ctx: Ctx, rng: random.Random) -> list[int]:
    """Four walking-bass offsets: root, chord/scale tones, then a chromatic approach."""
    third = 3 if ctx.mode == "minor" else 4
    second, last = rng.choice(((third, 7), (2, third), (7, 9), (12, 10)))
    return [0, second, last, rng.choice((-1, 1, 5))]


# ----------------------------------------------------------------------------- chords

CHORD_RHYTHMS = {
    "stab": ((2, 6, 10, 14), (0, 3, 6, 10), (3, 6, 11, 14), (2, 7, 10)),
    "comp": ((3, 6, 11), (2, 7, 14), (0, 6, 10, 13), (4, 10)),
    "strum": ((0, 4, 6, 10, 12, 14), (0, 6, 8, 12, 14), (0, 4, 8, 12)),
    "bossa": ((0, 3, 6, 10, 13), (0, 3, 7, 10, 12)),
    "skank": ((4, 12), (4, 6, 12, 14)),
    "power": ((0, 2, 4, 6, 8, 10, 12, 14), (0, 3, 6, 8, 11, 14), (0, 6, 8, 10, 12)),
    "shuffle": ((0, 2, 4, 6, 8, 10, 12, 14),),
}


def chord_part(idiom: str, low: int = 52, high: int = 76) -> Part:
    """A harmony writer: the progression voiced with voice leading, in an idiom's rhythm."""

    def write(ctx: Ctx, rng: random.Random) -> list[Note]:
        notes: list[Note] = []
        prev: list[int] | None = None
        rhythm = rng.choice(CHORD_RHYTHMS.get(idiom, ((0,),)))
        for start, length, degree in ctx.chord_slots():
            tones = chord_tones(ctx, degree)
            v = voicing(tones, low, high, prev)
            prev = v
            notes += _chord_slot(idiom, ctx, start, length, v, rhythm, rng)
        return notes

    return write


def _chord_slot(
    idiom: str,
    ctx: Ctx,
    start: int,
    length: int,
    v: list[int],
    rhythm: Sequence[int],
    rng: random.Random,
) -> list[Note]:
    d = ctx.density
    out: list[Note] = []
    if idiom in ("block", "pad"):
        hits = [(0, length)] if idiom == "pad" or d < 2 else [(0, length // 2), (length // 2, 4)]
        for s, n in hits:
            out += [_note(ctx, start + s, n, p, 72 if idiom == "pad" else 80, rng) for p in v]
        return out
    if idiom == "power":
        root = v[0] - 12 if v[0] >= 52 else v[0]
        for bar_off in range(0, length, 16):
            for s in rhythm:
                if s < length - bar_off:
                    for p in (root, root + 7, root + 12):
                        out.append(_note(ctx, start + bar_off + s, 1.6, p, 100, rng))
        return out
    if idiom in CHORD_RHYTHMS:
        dur = {"stab": 1, "comp": 1.5, "skank": 1, "shuffle": 1.8}.get(idiom, 2)
        for bar_off in range(0, length, 16):
            for i, s in enumerate(rhythm):
                if s >= length - bar_off or (d == 0 and i % 2):
                    continue
                vel = 92 if s % 4 == 0 else 80
                voices = v if idiom != "shuffle" else [v[0], v[0] + (9 if (s // 2) % 2 else 7)]
                for k, p in enumerate(voices):
                    strum = 0.04 * k if idiom in ("strum", "bossa") else 0.0
                    out.append(_note(ctx, start + bar_off + s + strum, dur, p, vel, rng))
        return out
    if idiom in ("arp", "alberti", "broken", "tremolo", "inner"):
        return _figuration(idiom, ctx, start, length, v, rng)
    raise ValueError(f"unknown chord idiom {idiom!r}")


def _figuration(
    idiom: str, ctx: Ctx, start: int, length: int, v: list[int], rng: random.Random
) -> list[Note]:
    """Broken-chord figures: arpeggios, Alberti bass, tremolo strings, quartet inner voices."""
    d = ctx.density
    out: list[Note] = []
    if idiom == "inner":
        upper = v[-2:]
        unit = (8, 4, 2)[d]
        for s in range(0, length, unit):
            out += [_note(ctx, start + s, unit, p, 70, rng) for p in upper]
        return out
    if idiom == "tremolo":
        unit = 16 if d == 0 else (2 if d == 1 else 1)
        for s in range(0, length, unit):
            out += [_note(ctx, start + s, unit, p, 68 if s % 4 else 78, rng) for p in v]
        return out
    if idiom == "alberti":
        lo = [p - 12 for p in v[:3]]
        order = [lo[0], lo[2], lo[1], lo[2]]
    elif idiom == "broken":
        lo = [p - 12 for p in v[:3]]
        order = [lo[0], lo[1], lo[2], lo[1] + 12]
    else:
        order = rng.choice((v, v[::-1], v + v[-2:0:-1]))
    unit = 2 if d < 2 or idiom != "arp" else 1
    if idiom == "arp" and ctx.style.name == "chiptune":
        unit = 1
    for i, s in enumerate(range(0, length, unit)):
        out.append(_note(ctx, start + s, unit, order[i % len(order)], 78, rng))
    return out


# ----------------------------------------------------------------------------- lead


def lead_part(idiom: str) -> Part:
    """A melody writer: motifs repeated over the chords, riffs, arpeggios or sparse tones."""

    def write(ctx: Ctx, rng: random.Random) -> list[Note]:
        if idiom == "arp":
            return _figuration("arp", ctx, 0, ctx.bars * 16, _lead_chord(ctx, 0), rng)
        motif = _motif(ctx, idiom, rng)
        notes: list[Note] = []
        octave = ctx.style.lead_octave
        for bar in range(ctx.bars):
            variant = motif if bar % 2 == 0 or idiom == "riff" else _vary(motif, rng)
            for step, length, offset in variant:
                s = bar * 16 + step
                degree = (ctx.chord_degree(s) if idiom != "riff" else 0) + offset
                pitch = scale_pitch(ctx.key_pc, ctx.mode, degree, octave)
                while pitch > 88:
                    pitch -= 12
                notes.append(_note(ctx, s, length, pitch, 96 if step % 4 == 0 else 86, rng))
        return notes

    return write


def _lead_chord(ctx: Ctx, step: int) -> list[int]:
    base = 12 * (ctx.style.lead_octave + 1)
    return [base + (t - base) % 12 for t in chord_tones(ctx, ctx.chord_degree(step))]


def _motif(ctx: Ctx, idiom: str, rng: random.Random) -> list[tuple[int, int, int]]:
    """One bar of (step, length, scale-degree offset from the chord root)."""
    count = {"sparse": (1, 3), "riff": (3, 6), "melody": (3, 7)}[idiom]
    n = min(16, rng.randint(*count) + (0 if idiom == "sparse" else 2 * ctx.density))
    slots = [s for s in range(16) if s % 2 == 0] if n <= 8 else list(range(16))
    steps = sorted(rng.sample(slots, min(n, len(slots))))
    if 0 not in steps and idiom != "riff":
        steps[0] = 0
    offsets = [rng.choice((0, 2, 4))]
    for _ in steps[1:]:
        move = (
            rng.choice((-2, -1, -1, 1, 1, 2, 3, -3))
            if idiom != "sparse"
            else rng.choice((-3, -2, 2, 4))
        )
        offsets.append(max(-3, min(9, offsets[-1] + move)))
    ends = [*steps[1:], 16]
    return [(s, max(1, e - s), o) for s, e, o in zip(steps, ends, offsets, strict=True)]


def _vary(motif: list[tuple[int, int, int]], rng: random.Random) -> list[tuple[int, int, int]]:
    """An answering phrase: same rhythm, its tail moved toward a chord tone."""
    out = list(motif)
    if len(out) > 1:
        s, n, _ = out[-1]
        out[-1] = (s, n, rng.choice((0, 2, 4, -3)))
    return out


# ----------------------------------------------------------------------------- assembly


def compose(style: str, rng: random.Random | int, bars: int | None = None,
            min_seconds: float | None = None, play_bpm: float | None = None) -> Clip:  # fmt: skip
    """Compose a loop of a style; `bars` or enough whole bars to last `min_seconds`.

    The style's tempo is drawn from its range either way (the same draws, so captions and
    parameters come from the same random stream). With `play_bpm` the notes are written at
    that tempo instead (the corpus's one image tempo, :mod:`jam.train.corpus`): the clip's
    ``bpm`` is then `play_bpm` and the drawn tempo is kept as ``natural_bpm``, the tempo to
    play it back at. Without it, the clip plays at the drawn tempo (``natural_bpm`` is None).
    """
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    spec = STYLES[style]
    natural = float(rng.randint(*spec.bpm))
    bpm = natural if play_bpm is None else float(play_bpm)
    mode = "major" if rng.random() < spec.major_weight else "minor"
    key_pc = rng.randrange(12)
    density = rng.choices((0, 1, 2), weights=(1, 2, 1.5))[0]
    if bars is None:
        need = (min_seconds or 4 * 4 * 60.0 / bpm) / (4 * 60.0 / bpm)
        bars = max(1, math.ceil(need - 1e-9))
    progs = spec.progressions[0 if mode == "major" else 1]
    ctx = Ctx(
        style=spec,
        bpm=bpm,
        swing=round(rng.uniform(*spec.swing), 3),
        key_pc=key_pc,
        mode=mode,
        bars=bars,
        density=density,
        progression=rng.choice(progs),
        sevenths=rng.random() < spec.sevenths,
    )
    parts = _arrange(spec, ctx, rng)
    events: list[Note] = []
    instruments: list[str] = []
    roles: dict[str, str] = {}
    channel = 0
    for role, program, writer in parts:
        gain = ROLE_GAIN.get(role, 1.0)
        is_drums = role == "drums"
        ch = DRUM_CHANNEL if is_drums else channel
        if not is_drums:
            channel += 1 + (channel + 1 == DRUM_CHANNEL)
        inst = (KITS if is_drums else PROGRAMS)[program]
        if inst.name not in instruments:
            instruments.append(inst.name)
        roles[role] = inst.name
        for n in writer(ctx, rng):
            vel = max(1, min(127, round(n.velocity * gain)))
            events.append(Note(n.start, n.duration, ch, program, n.pitch, vel))
    events = _untangle(events)
    families = sorted({i.family for _, i in _role_instruments(parts)})
    return Clip(
        style=style,
        bpm=bpm,
        key=KEYS[key_pc],
        mode=mode,
        instruments=instruments,
        density=DENSITIES[density],
        bars=bars,
        events=events,
        swing=ctx.swing,
        swing_unit=spec.swing_unit,
        families=families,
        roles=roles,
        natural_bpm=None if play_bpm is None else natural,
    )


def _role_instruments(parts: list[tuple[str, int, Part]]) -> list[tuple[str, Instrument]]:
    return [(r, KITS[p] if r == "drums" else PROGRAMS[p]) for r, p, _ in parts]


def _arrange(spec: Style, ctx: Ctx, rng: random.Random) -> list[tuple[str, int, Part]]:
    """Choose roles and instruments; sparse clips drop optional layers."""
    parts: list[tuple[str, int, Part]] = []
    if spec.ensemble == "piano":
        parts.append(("chords", 0, chord_part(rng.choice(spec.chord_idioms), 55, 72)))
        parts.append(("bass", 0, bass_part("piano_left")))
        parts.append(("lead", 0, lead_part("melody")))
        return parts
    if spec.ensemble == "quartet":
        parts.append(("lead", 40, lead_part("melody")))
        parts.append(("chords", 40, chord_part("inner", 55, 76)))
        parts.append(("viola", 41, chord_part("inner", 48, 67)))
        parts.append(("bass", 42, bass_part("cello")))
        return parts
    chords = rng.choice(spec.chords)
    chord_idiom = rng.choice(spec.chord_idioms)
    parts.append(("chords", chords, chord_part(chord_idiom, *_chord_range(chords, chord_idiom))))
    if spec.bass:
        bass = rng.choice(spec.bass)
        if spec.name != "ambient" or ctx.density > 0:
            parts.append(("bass", bass, bass_part(rng.choice(spec.bass_idioms))))
    if spec.kits:
        parts.append(("drums", rng.choice(spec.kits), drum_part))
    if spec.lead and rng.random() < spec.lead_chance + 0.15 * ctx.density:
        lead = rng.choice([p for p in spec.lead if p != chords] or spec.lead)
        parts.append(("lead", lead, lead_part(rng.choice(spec.lead_idioms))))
    if spec.pad and ctx.density > 0 and rng.random() < spec.pad_chance:
        pad = rng.choice([p for p in spec.pad if p != chords] or spec.pad)
        parts.append(("pad", pad, chord_part("pad", 55, 79)))
    if spec.ensemble == "orchestra" and ctx.density > 0:
        parts.append(("timpani", 47, bass_part("sub")))
    return parts


def _chord_range(program: int, idiom: str) -> tuple[int, int]:
    if idiom == "power":
        return 40, 64
    if PROGRAMS[program].family in ("bass", "synth bass"):
        return 40, 60
    return 52, 76


def _untangle(events: list[Note]) -> list[Note]:
    """Sort events and shorten any note overlapping the next one of the same pitch and channel,
    since a synth's note-off cannot tell two overlapping same-pitch notes apart."""
    events = sorted(events, key=lambda n: (n.start, n.channel, n.pitch, -n.velocity))
    out: list[Note] = []
    last: dict[tuple[int, int], int] = {}
    for n in events:
        k = (n.channel, n.pitch)
        if k in last:
            i = last[k]
            prev = out[i]
            if prev.start + prev.duration > n.start - 0.005:
                if n.start - prev.start < 0.004:
                    continue  # duplicate hit
                out[i] = Note(prev.start, max(0.01, n.start - prev.start - 0.005), prev.channel,
                              prev.program, prev.pitch, prev.velocity)  # fmt: skip
        last[k] = len(out)
        out.append(n)
    return out
