"""Thin audio file I/O: decode anything ffmpeg reads, write WAV without extra dependencies.

Audio is a float32 tensor ``(channels, samples)`` in [-1, 1]. Decoding goes through pydub
(ffmpeg for anything but WAV); WAV is written with the standard ``wave`` module because
``torchaudio.save`` needs torchcodec, which this project does not install.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import torch
from pydub import AudioSegment

from jam.sound.pcm import pcm16

WAV_SUFFIXES = (".wav", ".wave")
PYDUB_FORMATS = {".mp3": "mp3", ".ogg": "ogg", ".flac": "flac", ".opus": "opus"}
FORMAT_NAMES = ", ".join(PYDUB_FORMATS.values())


class AudioDecodeError(ValueError):
    """A file that could not be read as audio."""


def read_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Decode ``path`` (WAV/MP3/FLAC/OGG/...) to ``(float32 (channels, samples), sample_rate)``.

    Any decoder failure becomes :class:`AudioDecodeError`: pydub surfaces bad input as a
    zoo of exceptions (CouldntDecodeError, IndexError, KeyError from probing, ...), and
    callers only need to know that this file is not usable audio.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(f"no such audio file: {path}")
    try:
        segment = AudioSegment.from_file(path)
        samples = np.array(segment.get_array_of_samples())
        channels, width, rate = segment.channels, segment.sample_width, segment.frame_rate
    except Exception as exc:
        raise AudioDecodeError(f"could not decode {path.name} as audio: {exc}") from exc
    if samples.size == 0 or rate <= 0:
        raise AudioDecodeError(f"{path.name} decoded to no audio")
    scale = float(2 ** (8 * width - 1))
    audio = samples.reshape(-1, channels).T.astype(np.float32) / scale
    return torch.from_numpy(np.ascontiguousarray(audio)), int(rate)


def encode_audio(frames: np.ndarray, sample_rate: int, kind: str) -> bytes:
    """Interleaved int16 ``frames`` (n, channels) as a file's bytes: ``wav`` with the standard
    ``wave`` module, ``mp3``/``ogg``/``flac``/``opus`` (Ogg Opus, at 48 kHz) via ffmpeg."""
    buf = io.BytesIO()
    if kind == "wav":
        with wave.open(buf, "wb") as out:
            out.setnchannels(frames.shape[1])
            out.setsampwidth(2)
            out.setframerate(int(sample_rate))
            out.writeframes(frames.tobytes())
        return buf.getvalue()
    if kind not in PYDUB_FORMATS.values():
        raise ValueError(f"unknown audio format {kind!r}; use wav or one of {FORMAT_NAMES}")
    segment = AudioSegment(
        data=frames.tobytes(), sample_width=2, frame_rate=int(sample_rate), channels=frames.shape[1]
    )
    if kind == "opus":
        segment = segment.set_frame_rate(48000)  # Opus's own rate
    bitrate = {"mp3": "128k", "opus": "64k"}.get(kind)
    segment.export(buf, format=kind, bitrate=bitrate)
    return buf.getvalue()


def write_wav(path: str | Path, audio: torch.Tensor | np.ndarray, sample_rate: int) -> Path:
    """Write ``audio`` (channels, samples) or (samples,) as 16-bit PCM WAV."""
    path = Path(path)
    path.write_bytes(encode_audio(pcm16(audio), sample_rate, "wav"))
    return path


def audio_format(path: str | Path) -> str:
    """The format a file's suffix names ("wav", "mp3", ...); ValueError for an unknown one."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in WAV_SUFFIXES:
        return "wav"
    if suffix not in PYDUB_FORMATS:
        known = ", ".join((*WAV_SUFFIXES, *PYDUB_FORMATS))
        raise ValueError(f"cannot write {path.name!r}: unknown audio suffix; use one of {known}")
    return PYDUB_FORMATS[suffix]


def write_audio(path: str | Path, audio: torch.Tensor | np.ndarray, sample_rate: int) -> Path:
    """Write ``audio`` in the format its suffix names: WAV directly, MP3/OGG/FLAC/Opus via
    ffmpeg."""
    path = Path(path)
    path.write_bytes(encode_audio(pcm16(audio), sample_rate, audio_format(path)))
    return path
