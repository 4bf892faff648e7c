"""Spectrogram parameters: the one description of how audio maps to a spectrogram image.

Kept field-for-field compatible with Riffusion's ``SpectrogramParams`` (same names, same
defaults, same EXIF tag numbers) so images made by either tool read back identically.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

PARAMS_FILENAME = "spectrogram_params.json"


class ExifTag(IntEnum):
    """Riffusion's EXIF tag numbers for spectrogram PNGs."""

    SAMPLE_RATE = 11000
    STEREO = 11005
    STEP_SIZE_MS = 11010
    WINDOW_DURATION_MS = 11020
    PADDED_DURATION_MS = 11030
    NUM_FREQUENCIES = 11040
    MIN_FREQUENCY = 11050
    MAX_FREQUENCY = 11060
    POWER_FOR_IMAGE = 11070
    MAX_VALUE = 11080


# Riffusion's assumed peak magnitude when an image carries none (int16-scaled audio).
DEFAULT_MAX_VALUE = 30e6


@dataclass(frozen=True)
class SpectrogramParams:
    """How audio becomes a mel magnitude spectrogram and that spectrogram an 8-bit image.

    Defaults are Riffusion v1: 44.1 kHz mono, 10 ms hop, 100 ms Hann window zero-padded to a
    400 ms FFT, 512 HTK mel bins over 0-10 kHz, image power 0.25.
    """

    stereo: bool = False
    sample_rate: int = 44100
    step_size_ms: int = 10
    window_duration_ms: int = 100
    padded_duration_ms: int = 400
    num_frequencies: int = 512
    min_frequency: int = 0
    max_frequency: int = 10000
    mel_scale_norm: str | None = None
    mel_scale_type: str = "htk"
    num_griffin_lim_iters: int = 32
    griffin_lim_momentum: float = 0.99
    power_for_image: float = 0.25

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.num_frequencies <= 0:
            raise ValueError("sample_rate and num_frequencies must be positive")
        if not 0 <= self.min_frequency < self.max_frequency <= self.sample_rate / 2:
            raise ValueError(
                f"need 0 <= min_frequency < max_frequency <= Nyquist, got "
                f"{self.min_frequency}..{self.max_frequency} Hz at {self.sample_rate} Hz"
            )
        if not 0 < self.win_length <= self.n_fft or self.hop_length <= 0:
            raise ValueError("need 0 < window <= padded window and a positive step")

    # Same arithmetic as Riffusion, so odd values truncate the same way.
    @property
    def n_fft(self) -> int:
        return int(self.padded_duration_ms / 1000.0 * self.sample_rate)

    @property
    def win_length(self) -> int:
        return int(self.window_duration_ms / 1000.0 * self.sample_rate)

    @property
    def hop_length(self) -> int:
        return int(self.step_size_ms / 1000.0 * self.sample_rate)

    @property
    def channels(self) -> int:
        return 2 if self.stereo else 1

    def num_samples(self, width: int) -> int:
        """Samples of audio that a spectrogram ``width`` frames wide spans (center=True STFT)."""
        return (width - 1) * self.hop_length

    def width_for(self, num_samples: int) -> int:
        """Frames the STFT yields for ``num_samples`` of audio."""
        return num_samples // self.hop_length + 1

    def to_exif(self) -> dict[int, Any]:
        return {
            ExifTag.SAMPLE_RATE: self.sample_rate,
            ExifTag.STEREO: self.stereo,
            ExifTag.STEP_SIZE_MS: self.step_size_ms,
            ExifTag.WINDOW_DURATION_MS: self.window_duration_ms,
            ExifTag.PADDED_DURATION_MS: self.padded_duration_ms,
            ExifTag.NUM_FREQUENCIES: self.num_frequencies,
            ExifTag.MIN_FREQUENCY: self.min_frequency,
            ExifTag.MAX_FREQUENCY: self.max_frequency,
            ExifTag.POWER_FOR_IMAGE: float(self.power_for_image),
        }

    @classmethod
    def from_exif(
        cls, exif: dict[int, Any], default: SpectrogramParams | None = None
    ) -> SpectrogramParams:
        """Params from an image's EXIF; fields it lacks come from ``default``."""
        base = default or cls()
        read = {
            "sample_rate": (ExifTag.SAMPLE_RATE, int),
            "stereo": (ExifTag.STEREO, bool),
            "step_size_ms": (ExifTag.STEP_SIZE_MS, int),
            "window_duration_ms": (ExifTag.WINDOW_DURATION_MS, int),
            "padded_duration_ms": (ExifTag.PADDED_DURATION_MS, int),
            "num_frequencies": (ExifTag.NUM_FREQUENCIES, int),
            "min_frequency": (ExifTag.MIN_FREQUENCY, int),
            "max_frequency": (ExifTag.MAX_FREQUENCY, int),
            "power_for_image": (ExifTag.POWER_FOR_IMAGE, float),
        }
        changes = {name: kind(exif[tag]) for name, (tag, kind) in read.items() if tag in exif}
        return dataclasses.replace(base, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpectrogramParams:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown spectrogram params: {sorted(unknown)}")
        return cls(**data)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / PARAMS_FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> SpectrogramParams:
        """The params stored in a model folder, or Riffusion's when it stores none."""
        path = Path(folder) / PARAMS_FILENAME
        if not path.is_file():
            return cls()
        return cls.from_dict(json.loads(path.read_text()))


RIFFUSION_V1 = SpectrogramParams()
