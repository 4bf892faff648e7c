"""Note events -> mono audio through a General MIDI SoundFont (tinysoundfont).

The one renderer of the training corpus, for composed loops and music21 excerpts alike. A clip's
audio depends only on its events: the synth is reused per process (loading a SoundFont is slow)
but every channel is reset before each clip, so one corpus seed gives the same bytes whatever
the worker count.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jam.train.composer import DRUM_CHANNEL, Clip, Note

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
PEAK = 0.5
FADE_SECONDS = 0.01


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
