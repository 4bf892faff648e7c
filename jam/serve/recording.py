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
    """The last ``seconds`` of a stream as 16-bit PCM chunks (3 min of 22 kHz mono: 8 MB),
    by stream offset, so a splice can take back what it replaces."""

    def __init__(self, sample_rate: int, channels: int, seconds: float) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.limit = round(seconds * sample_rate)
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (offset, (n, channels) int16)
        self._held = 0

    @property
    def seconds(self) -> float:
        return self._held / self.sample_rate

    @property
    def start(self) -> int:
        """The stream offset of the oldest sample held."""
        return self._chunks[0][0] if self._chunks else 0

    def add(self, offset: int, audio: np.ndarray) -> None:
        """Audio ``(channels, n)`` that plays from stream sample ``offset`` (contiguous)."""
        chunk = pcm16(audio)
        self._chunks.append((offset, chunk))
        self._held += chunk.shape[0]
        while self._held - self._chunks[0][1].shape[0] >= self.limit:
            self._held -= self._chunks.popleft()[1].shape[0]

    def truncate(self, offset: int) -> None:
        """Forget everything from stream sample ``offset`` on (a splice re-sends it)."""
        while self._chunks and self._chunks[-1][0] >= offset:
            self._held -= self._chunks.pop()[1].shape[0]
        if self._chunks:
            start, last = self._chunks[-1]
            if start + last.shape[0] > offset:
                kept = last[: offset - start]
                self._held -= last.shape[0] - kept.shape[0]
                self._chunks[-1] = (start, kept)

    def span(self, a: int, b: int) -> np.ndarray:
        """Float audio ``(channels, n)`` of stream samples [a, b) held (zeros where none)."""
        out = np.zeros((self.channels, max(0, b - a)), np.float32)
        for start, chunk in self._chunks:
            lo, hi = max(a, start), min(b, start + chunk.shape[0])
            if hi > lo:
                out[:, lo - a : hi - a] = chunk[lo - start : hi - start].T / 32768.0
        return out

    def last(self, seconds: float) -> np.ndarray:
        """The last ``seconds`` (or all there is) as interleaved int16 ``(n, channels)``."""
        if not self._chunks:
            return np.zeros((0, self.channels), np.int16)
        audio = np.concatenate([c for _, c in self._chunks])
        return audio[-min(len(audio), round(seconds * self.sample_rate)) :]


def encode_file(pcm: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """``pcm`` (n, channels) int16 as a file in ``fmt`` (a key of ``FORMATS``). Blocking."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return encode_audio(pcm, sample_rate, fmt)
