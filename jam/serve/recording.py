"""A session's recent audio, for "download the last minutes": a bounded ring of chunks, and
the files made from it (MP3 via pydub + ffmpeg as Riffusion did, Ogg Opus, WAV)."""

from __future__ import annotations

from collections import deque

import numpy as np

from jam.sound.files import encode_audio
from jam.sound.pcm import pcm16

RECORDING_SECONDS = 180.0
FORMATS = {"mp3": "audio/mpeg", "opus": "audio/ogg", "wav": "audio/wav"}


class Recording:
    """The last ``seconds`` of a stream as 16-bit PCM chunks (3 min of 22 kHz mono: 8 MB)."""

    def __init__(self, sample_rate: int, channels: int, seconds: float) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.limit = round(seconds * sample_rate)
        self._chunks: deque[np.ndarray] = deque()  # (n, channels) int16
        self._held = 0

    @property
    def seconds(self) -> float:
        return self._held / self.sample_rate

    def add(self, audio: np.ndarray) -> None:
        chunk = pcm16(audio)
        self._chunks.append(chunk)
        self._held += chunk.shape[0]
        while self._held - self._chunks[0].shape[0] >= self.limit:
            self._held -= self._chunks.popleft().shape[0]

    def last(self, seconds: float) -> np.ndarray:
        """The last ``seconds`` (or all there is) as interleaved int16 ``(n, channels)``."""
        if not self._chunks:
            return np.zeros((0, self.channels), np.int16)
        audio = np.concatenate(list(self._chunks))
        return audio[-min(len(audio), round(seconds * self.sample_rate)) :]


def encode_file(pcm: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """``pcm`` (n, channels) int16 as a file in ``fmt`` (a key of ``FORMATS``). Blocking."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return encode_audio(pcm, sample_rate, fmt)
