"""The seed library: the loops a session's tiles are img2img'd from.

A seed fixes tempo and downbeat for a whole session (every tile starts from the same seed
image, so every tile starts on the same beat grid). Seeds are either synthesised loops from
:mod:`jam.seeds.synth` or user audio fitted to exactly one tile; user seeds are kept as 16-bit
WAV (plus a small JSON sidecar with their beat count) in ``user_dir`` so they survive restarts.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from jam.seeds import synth as seedsynth
from jam.sound.files import AudioDecodeError, read_audio, write_wav
from jam.sound.params import SpectrogramParams
from jam.sound.pcm import conform, to_channels
from jam.sound.spectrogram import converter, image_from_spectrogram

log = logging.getLogger(__name__)

SEAM_FADE_S = 0.005  # fade on a trimmed file's cut end, so the seed does not click on repeat
_NAME_OK = re.compile(r"[^A-Za-z0-9_.-]+")


class SeedError(ValueError):
    """A seed that cannot be made (audio that does not decode, a bad name or beat count)."""


class UnknownSeedError(SeedError, KeyError):
    """No seed by that name; the message lists the names there are."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class SeedLoop:
    """One seed: exactly one tile of audio holding ``beats`` whole beats at ``bpm``.

    ``audio`` is shared by everyone who asks for this seed: treat it as read-only.
    """

    name: str
    beats: int
    bpm: float
    description: str
    audio: torch.Tensor = field(repr=False, compare=False)  # (channels, samples) float32
    params: SpectrogramParams = field(default_factory=SpectrogramParams, repr=False)

    @functools.cached_property
    def spectrogram(self) -> torch.Tensor:
        """Mel magnitude spectrogram ``(channels, mels, frames)``, computed once."""
        return converter(self.params).spectrogram_from_audio(self.audio)

    @property
    def image(self) -> Image.Image:
        """The seed spectrogram image (a fresh image each call; EXIF carries the params)."""
        return image_from_spectrogram(self.spectrogram, self.params)


# --- pure helpers -------------------------------------------------------------------------


def fit_length(audio: torch.Tensor, num_samples: int, sample_rate: int) -> torch.Tensor:
    """Exactly ``num_samples``: trim a longer clip (fading the cut), repeat a shorter one.

    Repetition keeps a clip that is already a loop seamless; trimming cuts mid-sound, so the
    cut end fades over a few ms instead of clicking each time the seed repeats.
    """
    length = audio.shape[-1]
    if length >= num_samples:
        out = audio[..., :num_samples].clone()
        if length > num_samples:
            fade = min(max(int(SEAM_FADE_S * sample_rate), 1), num_samples)
            out[..., num_samples - fade :] *= torch.linspace(1.0, 0.0, fade)
        return out
    reps = -(-num_samples // length)
    return audio.repeat(1, reps)[..., :num_samples].contiguous()


def clean_name(name: str) -> str:
    """A seed name that is also a safe file stem (no paths, no odd characters)."""
    cleaned = _NAME_OK.sub("-", name.strip()).strip(".-")
    if not cleaned:
        raise SeedError(f"seed name {name!r} has no usable characters (use letters, digits, _-.)")
    return cleaned


def default_seed_dir() -> Path:
    """Where user seeds persist: $JAM_SEED_DIR, else ~/.local/share/jam/seeds."""
    env = os.environ.get("JAM_SEED_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "jam" / "seeds"


# --- the library --------------------------------------------------------------------------


class SeedLibrary:
    """Built-in synthesised loops plus user seeds, all exactly one tile of ``width`` frames."""

    def __init__(
        self, params: SpectrogramParams, width: int = 512, user_dir: Path | None = None
    ) -> None:
        self.params = params
        self.width = width
        self.num_samples = params.num_samples(width)
        if self.num_samples <= 0:
            raise ValueError(f"width {width} gives no audio; need at least 2 frames")
        self.user_dir = Path(user_dir) if user_dir is not None else None
        self._lock = threading.Lock()
        self._cache: dict[str, SeedLoop] = {}
        self._user: dict[str, SeedLoop] = {}
        if self.user_dir is not None:
            self.user_dir.mkdir(parents=True, exist_ok=True)
            self._load_user_dir(self.user_dir)

    def names(self) -> list[str]:
        """Built-in loops first (in registry order), then user seeds alphabetically."""
        with self._lock:
            return [*seedsynth.LOOPS, *sorted(self._user)]

    def get(self, name: str) -> SeedLoop:
        with self._lock:
            if name in self._user:
                return self._user[name]
            if name in self._cache:
                return self._cache[name]
        if name not in seedsynth.LOOPS:
            raise UnknownSeedError(f"unknown seed {name!r}; known seeds: {', '.join(self.names())}")
        seed = self._build(name)
        with self._lock:
            return self._cache.setdefault(name, seed)

    def add_file(self, path: str | Path, name: str | None = None, beats: int = 8) -> SeedLoop:
        """Register audio from ``path`` as a seed of ``beats`` beats, fitted to one tile.

        Raises SeedError for audio that does not decode, a bad name, or a built-in's name.
        """
        path = Path(path)
        seed_name = clean_name(name if name is not None else path.stem)
        if seed_name in seedsynth.LOOPS:
            raise SeedError(f"{seed_name!r} is a built-in seed; choose another name")
        if not isinstance(beats, int) or beats <= 0:
            raise SeedError(f"beats must be a positive whole number, got {beats!r}")
        try:
            audio, rate = read_audio(path)
        except AudioDecodeError as exc:
            raise SeedError(f"cannot use {path.name!r} as a seed: {exc}") from exc
        seed = self._user_seed(seed_name, self._fit(audio, rate), beats)
        if self.user_dir is not None:
            self._save(seed)
        with self._lock:
            self._user[seed_name] = seed
        return seed

    # --- internals ----------------------------------------------------------------------

    def _fit(self, audio: torch.Tensor, rate: int) -> torch.Tensor:
        """Decoded audio -> the params' channels and rate, exactly one tile long."""
        p = self.params
        return fit_length(
            conform(audio, rate, p.channels, p.sample_rate), self.num_samples, p.sample_rate
        )

    def _build(self, name: str) -> SeedLoop:
        spec = seedsynth.LOOPS[name]
        mono = seedsynth.render_loop(name, self.params.sample_rate, self.num_samples)
        audio = to_channels(torch.from_numpy(mono)[None, :], self.params.channels)
        return SeedLoop(
            name=name,
            beats=spec.beats,
            bpm=seedsynth.bpm_for(spec.beats, self.params.sample_rate, self.num_samples),
            description=spec.description,
            audio=audio,
            params=self.params,
        )

    def _user_seed(self, name: str, audio: torch.Tensor, beats: int) -> SeedLoop:
        return SeedLoop(
            name=name,
            beats=beats,
            bpm=seedsynth.bpm_for(beats, self.params.sample_rate, self.num_samples),
            description=f"user seed ({beats} beats)",
            audio=audio,
            params=self.params,
        )

    def _save(self, seed: SeedLoop) -> None:
        assert self.user_dir is not None
        write_wav(self.user_dir / f"{seed.name}.wav", seed.audio, self.params.sample_rate)
        meta = {"beats": seed.beats}
        (self.user_dir / f"{seed.name}.json").write_text(json.dumps(meta) + "\n")

    def _load_user_dir(self, folder: Path) -> None:
        """Load saved user seeds; a damaged file is skipped with a warning, not fatal."""
        for wav in sorted(folder.glob("*.wav")):
            name = wav.stem
            if name in seedsynth.LOOPS:
                continue
            try:
                meta_path = wav.with_suffix(".json")
                meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
                beats = int(meta.get("beats", 8))
                audio, rate = read_audio(wav)
            except (OSError, ValueError, TypeError) as exc:  # AudioDecodeError is a ValueError
                log.warning("skipping user seed %s: %s", wav, exc)
                continue
            conformed = self._fit(audio, rate)
            self._user[name] = self._user_seed(name, conformed, beats)
