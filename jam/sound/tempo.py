"""Tempo without retraining: a tile's spectrogram stretched along time before inversion.

A tile holds a whole number of beats at its seed loop's tempo. Stretching its magnitude
spectrogram's time axis by ``native_bpm / bpm`` and inverting it (Griffin-Lim finds a
consistent phase) plays the same beats at ``bpm``: the frequencies, and so the pitch, stay.
"""

from __future__ import annotations

import torch

BPM_RANGE = (60.0, 180.0)
BAR_BEATS = 4  # tempo and seed changes land on bar lines of 4/4


def stretched_width(width: int, native_bpm: float, bpm: float) -> int:
    """Frames for a ``width``-frame tile played at ``bpm`` instead of ``native_bpm``.

    The audio spans ``(width - 1)`` hops (a centred STFT), so that span is what scales.
    """
    if not (native_bpm > 0 and bpm > 0):
        raise ValueError(f"tempi must be positive, got {native_bpm} and {bpm}")
    return max(2, round((width - 1) * native_bpm / bpm) + 1)


def stretch_time(spectrogram: torch.Tensor, width: int) -> torch.Tensor:
    """``(..., freq, time)`` resampled to ``width`` frames by linear interpolation in time.

    The first and last frames stay where they are (``align_corners``), so a tile's downbeat
    stays at its first column and the stretched tile still ends on its last beat.
    """
    frames = spectrogram.shape[-1]
    if width == frames:
        return spectrogram
    lead = spectrogram.shape[:-1]
    flat = spectrogram.reshape(1, -1, frames)
    out = torch.nn.functional.interpolate(flat, size=width, mode="linear", align_corners=True)
    return out.reshape(*lead, width)


def loop_frames(width: int, beats: int, tail_beats: int) -> int:
    """Frames of a ``width``-frame tile of ``beats`` beats once :func:`loop_tail` has added
    ``tail_beats`` beats: its ``width - 1`` hops span the beats, so a beat is
    ``(width - 1) / beats`` hops and the tail the nearest whole number of them."""
    if tail_beats < 0 or beats <= 0:
        raise ValueError(f"need beats > 0 and tail_beats >= 0, got {beats} and {tail_beats}")
    return width + round((width - 1) * tail_beats / beats)


def loop_tail(
    spectrogram: torch.Tensor, beats: int, tail_beats: int, lead: int = 4
) -> torch.Tensor:
    """``(..., freq, time)`` played on past its end for ``tail_beats`` beats: its last bar again.

    A tile is whole bars from its downbeat (column 0); its last column falls on the next
    downbeat. Played on from there, its bars keep their length, so the next tile can fade in
    over the tail and still land its downbeat on a bar line (a fade over the tile's own last
    beats would cut every tile's last bar short by the fade). The tail repeats the last bar
    from ``lead`` frames before its downbeat, in place of the tile's last ``lead`` frames: the
    model draws a tile's edges as its training clips had them (faded, with nothing before the
    first attack), but a bar line inside the tile as music plays through one, and Griffin-Lim
    inverts the whole as one signal, continuous where it wraps.
    """
    frames = spectrogram.shape[-1]
    total = loop_frames(frames, beats, tail_beats)
    if total == frames:
        return spectrogram
    last_bar = round((frames - 1) * (beats - BAR_BEATS) / beats) if beats > BAR_BEATS else 0
    lead = min(lead, last_bar)
    body = spectrogram[..., : frames - 1 - lead]
    again = spectrogram[..., last_bar - lead : last_bar + total - frames + 1]
    if body.shape[-1] + again.shape[-1] != total:
        raise ValueError(f"a tail of {tail_beats} beats is longer than the last bar")
    return torch.cat([body, again], dim=-1)


def loop_audio(audio: torch.Tensor, beats: int, tail_beats: int) -> torch.Tensor:
    """``(..., samples)`` of a seamless loop of ``beats`` beats, played on from its start for
    ``tail_beats`` more: what :func:`loop_tail` does, for audio that loops already (a seed)."""
    n = audio.shape[-1]
    return torch.cat([audio, audio[..., : round(n * tail_beats / beats)]], dim=-1)
