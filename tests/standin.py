"""A deterministic engine stand-in: renders a tile as the seed loop plus a prompt-keyed tone.

For tests of the server, hub and page, where the diffusion model is not what is tested: it is
fast, needs no weights, and its audio depends only on the request, so identical requests give
identical bytes. ``delay`` simulates render time without using the CPU.
"""

from __future__ import annotations

import asyncio
import zlib

import torch

from jam.app import App
from jam.model.folder import ModelDefaults
from jam.model.types import Blend, RenderedTile, Renderer, TileRequest
from jam.seeds.library import SeedLibrary
from jam.sound.tempo import loop_audio, loop_frames, stretched_width
from jam.stream.producer import StreamSettings


def prompt_pitch(prompt: str) -> float:
    """A stable pitch (Hz) per prompt, so tests can tell prompts apart by ear or by FFT."""
    return 220.0 + (zlib.crc32(prompt.encode()) % 24) * 20.0


class StandinRenderer:
    def __init__(self, seeds: SeedLibrary, delay: float = 0.0) -> None:
        self.seeds = seeds
        self.delay = delay
        self.calls = 0

    async def __call__(self, request: TileRequest) -> RenderedTile:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        # Off the event loop, like the real device queue (the first seed image builds a codec).
        return await asyncio.to_thread(self._render, request)

    def _render(self, request: TileRequest) -> RenderedTile:
        seed = self.seeds.get(request.seed_image)
        rate = self.seeds.params.sample_rate
        loop = loop_audio(seed.audio, seed.beats, request.tail_beats)  # as the engine plays on
        t = torch.arange(loop.shape[-1]) / rate
        a = request.alpha

        def tone_of(prompts: Blend) -> torch.Tensor:  # one tone per prompt, mixed by weight
            return sum(
                p.weight * torch.sin(2 * torch.pi * prompt_pitch(p.text) * t) for p in prompts
            )

        tone = (1 - a) * tone_of(request.start.prompts) + a * tone_of(request.end.prompts)
        audio = 0.5 * loop + 0.2 * tone.to(loop.dtype)
        body = seed.audio.shape[-1]  # the samples the tile's own beats span
        if request.bpm is not None:  # the engine stretches the spectrogram; this, the audio
            width = stretched_width(self.seeds.width, seed.bpm, request.bpm)
            body = self.seeds.params.num_samples(width)
            n = self.seeds.params.num_samples(loop_frames(width, seed.beats, request.tail_beats))
            audio = torch.nn.functional.interpolate(audio[None], size=n, mode="linear")[0]
        tail = audio.shape[-1] - body
        return RenderedTile(
            request, audio.contiguous(), seed.image, seconds=self.delay, tail_samples=tail
        )


def standin_app(
    seeds: SeedLibrary,
    renderer: Renderer | None = None,
    stream: StreamSettings | None = None,
) -> App:
    """The composition root around the stand-in renderer, with the seed library's format."""
    defaults = ModelDefaults(tile_width=seeds.width)
    return App(renderer or StandinRenderer(seeds), seeds, defaults, stream or StreamSettings())


class PoisonedRenderer(StandinRenderer):
    """The stand-in, but a request whose prompt contains ``poison`` raises, as a render that
    breaks inside the engine would."""

    async def __call__(self, request: TileRequest) -> RenderedTile:
        if "poison" in request.end.prompt or "poison" in request.start.prompt:
            self.calls += 1
            raise RuntimeError(f"cannot render {request.end.prompt!r}")
        return await super().__call__(request)
