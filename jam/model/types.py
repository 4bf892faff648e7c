"""The types every layer shares: what to render (endpoint, tile request) and what comes back.

They live here, below the engine, the stream and the server alike, so that none of those has to
import another to speak about a tile.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Protocol

import torch
from PIL import Image

MAX_PROMPT_CHARS = 280  # the one prompt-length limit: the wire, the CLI and the engine share it


class RenderCancelled(Exception):
    """Raised between denoising steps when nobody wants the tiles any more."""


# Bidirectional overrides, embeddings, isolates and marks: they reorder what others see.
_BIDI = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def clean_text(text: str) -> str:
    """Text safe for a tokenizer and for every listener's screen: lone surrogates, control and
    bidi characters removed, whitespace collapsed to single spaces."""
    kept = []
    for ch in text:
        if ch.isspace():
            kept.append(" ")
        elif unicodedata.category(ch) not in ("Cs", "Cc") and ord(ch) not in _BIDI:
            kept.append(ch)
    return " ".join("".join(kept).split())


def validate_prompt(prompt: str) -> str:
    """The prompt, cleaned (:func:`clean_text`); ValueError when it is empty or longer than
    ``MAX_PROMPT_CHARS``."""
    if not isinstance(prompt, str) or not (prompt := clean_text(prompt)):
        raise ValueError("prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    return prompt


MAX_BLEND = 4  # prompts mixed at once


@dataclass(frozen=True)
class WeightedPrompt:
    text: str
    weight: float


# Prompts whose text embeddings are mixed by weight (weights sum to 1, heaviest first).
Blend = tuple[WeightedPrompt, ...]


def blend(*prompts: str | tuple[str, float]) -> Blend:
    """A validated blend: texts cleaned, duplicates merged, weights normalised to sum 1.

    ``blend("lofi")`` is one prompt at full weight; ``blend(("a", 0.7), ("b", 0.3))`` a mix.
    ValueError for no prompts, more than ``MAX_BLEND``, a bad text or weights that are
    negative, not finite or all zero.
    """
    weights: dict[str, float] = {}
    for p in prompts:
        text, weight = (p, 1.0) if isinstance(p, str) else p
        text = validate_prompt(text)
        if not isinstance(weight, int | float) or not 0.0 <= float(weight) < float("inf"):
            raise ValueError(f"weight of {text!r} must be a finite number >= 0, got {weight!r}")
        weights[text] = weights.get(text, 0.0) + float(weight)
    if not weights:
        raise ValueError("a blend needs at least one prompt")
    if len(weights) > MAX_BLEND:
        raise ValueError(f"a blend mixes at most {MAX_BLEND} prompts, got {len(weights)}")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("at least one prompt needs a weight above 0")
    kept = sorted(((t, w / total) for t, w in weights.items() if w > 0), key=lambda tw: -tw[1])
    return tuple(WeightedPrompt(t, round(w, 6)) for t, w in kept)


def blend_label(prompts: Blend) -> str:
    """How a blend reads on a screen: its heaviest prompt."""
    return prompts[0].text


@dataclass(frozen=True)
class Endpoint:
    """One end of an interpolation: what to make and with which noise."""

    prompts: Blend
    seed: int
    strength: float  # no defaults here: they come from the model (ModelDefaults)
    guidance: float
    negative_prompt: str = ""

    @property
    def prompt(self) -> str:
        return blend_label(self.prompts)


@dataclass(frozen=True, eq=False)
class Continuation:
    """The audio a new tile fades in under: its sample 0 falls at ``offset`` in ``audio``
    (``(channels, samples)``, the previous tile's unlevelled tail, from ``n_fft // 2`` before
    the new tile's start). Griffin-Lim starts the new tile from this audio's phase there, so
    the two are coherent over their crossfade instead of partly cancelling."""

    audio: torch.Tensor
    offset: int

    @classmethod
    def after(cls, audio: torch.Tensor, start: int, n_fft: int) -> Continuation:
        """What a tile starting at sample ``start`` of ``audio`` needs of it: the rest of it,
        from half a window before (the new tile's first frame is centred on its sample 0)."""
        a = min(max(0, start - n_fft // 2), audio.shape[-1])
        return cls(audio[..., a:].clone(), start - a)


@dataclass(frozen=True)
class TileRequest:
    """One tile to render: a point ``alpha`` of the way from ``start`` to ``end``."""

    start: Endpoint
    end: Endpoint
    alpha: float
    seed_image: str
    steps: int
    bpm: float | None = None  # the tempo to play at (None: the seed loop's own)
    # beats the tile's audio plays on past its bars (its last bar again), for the next tile to
    # fade in over from its bar line (see jam.sound.tempo.loop_tail); the image stays as it is
    tail_beats: int = 0
    # where the tile goes, if known before it renders (None: a cold start). Not part of what
    # the tile *is*: left out of equality and hashing, so neither it nor batching sees it.
    continuation: Continuation | None = field(default=None, compare=False, repr=False)

    @property
    def strength(self) -> float:
        """The strength at ``alpha`` (strength and guidance are lerped with the embeddings)."""
        return self.start.strength + (self.end.strength - self.start.strength) * self.alpha

    @property
    def guidance(self) -> float:
        return self.start.guidance + (self.end.guidance - self.start.guidance) * self.alpha


@dataclass(frozen=True)
class RenderedTile:
    request: TileRequest
    audio: torch.Tensor  # (channels, samples) float32 on the CPU
    image: Image.Image  # the tile's spectrogram, for display
    seconds: float = 0.0  # compute time spent on it
    warm: bool = False  # inverted from the request's continuation: coherent with the tile before
    tail_samples: int = 0  # the end of ``audio`` past the tile's bars (request.tail_beats)


class Renderer(Protocol):
    """Anything that turns a request into a tile: the device queue, or a test stand-in."""

    async def __call__(self, request: TileRequest) -> RenderedTile: ...
