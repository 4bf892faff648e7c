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
