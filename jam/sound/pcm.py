"""Audio arrays between formats: 16-bit PCM, and one ``conform`` for channels and sample rate.

Audio is ``(channels, samples)`` float in [-1, 1] everywhere in jam; these are the only places
it changes layout (interleaved int16 for the wire and WAV) or shape (channels, rate).
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio


def pcm16(audio: torch.Tensor | np.ndarray) -> np.ndarray:
    """Interleaved little-endian int16 frames ``(samples, channels)`` of float audio.

    Clipped (a hot mix must not wrap around) and NaN-safe (a broken tile plays as silence).
    """
    data = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2:
        raise ValueError(f"expected audio (channels, samples), got shape {data.shape}")
    scaled = np.clip(np.nan_to_num(data, nan=0.0), -1.0, 1.0) * 32767.0
    return np.ascontiguousarray(np.round(scaled).astype("<i2").T)


def to_channels(audio: torch.Tensor, channels: int) -> torch.Tensor:
    """Mix or copy ``audio`` (c, n) to ``channels`` (1: average all; 2: keep/duplicate)."""
    if audio.shape[0] == channels:
        return audio
    if channels == 1:
        return audio.mean(dim=0, keepdim=True)
    if audio.shape[0] == 1:
        return audio.expand(channels, -1).clone()
    return audio[:channels]


def conform(audio: torch.Tensor, rate: int, channels: int, sample_rate: int) -> torch.Tensor:
    """Decoded audio at ``rate`` -> float32 with ``channels`` channels at ``sample_rate``."""
    audio = to_channels(audio.to(torch.float32), channels)
    if rate != sample_rate:
        audio = torchaudio.functional.resample(audio, rate, sample_rate)
    return audio
