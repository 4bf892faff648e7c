"""A session's endless stream: tiles rendered ahead, joined on the beat grid, levelled.

(Work in progress: the types below are the contract; ``Producer.stream`` lands next.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class Endpoint:
    """One end of an interpolation: what to make and with which noise."""

    prompt: str
    seed: int
    strength: float = 0.75
    guidance: float = 7.0
    negative_prompt: str = ""


@dataclass(frozen=True)
class TileRequest:
    """One tile to render: a point ``alpha`` of the way from ``start`` to ``end``."""

    start: Endpoint
    end: Endpoint
    alpha: float
    seed_image: str
    steps: int


@dataclass
class RenderedTile:
    request: TileRequest
    audio: torch.Tensor  # (channels, samples) float32 on the CPU
    image: Image.Image  # the tile's spectrogram, for display
    seconds: float = 0.0  # compute time spent on it


class Renderer(Protocol):
    """Anything that turns a request into a tile: the device queue, or a test stand-in."""

    async def __call__(self, request: TileRequest) -> RenderedTile: ...


@dataclass(frozen=True)
class Chunk:
    seq: int
    offset: int  # stream sample index of audio[:, 0]
    sample_rate: int
    audio: np.ndarray  # (channels, n) float32 in [-1, 1]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TileImage:
    tile: int
    offset: int  # stream sample index where the tile's first frame plays
    png: bytes
    meta: dict[str, Any] = field(default_factory=dict)


class Producer:
    async def stream(self) -> AsyncIterator[Chunk | TileImage]:
        raise NotImplementedError
        yield
