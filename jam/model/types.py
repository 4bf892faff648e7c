"""The types every layer shares: what to render (endpoint, tile request) and what comes back.

They live here, below the engine, the stream and the server alike, so that none of those has to
import another to speak about a tile.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Endpoint:
    """One end of an interpolation: what to make and with which noise."""

    prompt: str
    seed: int
    strength: float  # no defaults here: they come from the model (ModelDefaults)
    guidance: float
    negative_prompt: str = ""


@dataclass(frozen=True)
class TileRequest:
    """One tile to render: a point ``alpha`` of the way from ``start`` to ``end``."""

    start: Endpoint
    end: Endpoint
    alpha: float
    seed_image: str
    steps: int

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


class Renderer(Protocol):
    """Anything that turns a request into a tile: the device queue, or a test stand-in."""

    async def __call__(self, request: TileRequest) -> RenderedTile: ...
