"""The diffusion engine: the only module that imports diffusers.

Loads any Stable-Diffusion-1.x-format checkpoint (Riffusion's, or jam's own small model) and
renders batches of tiles. Each tile is Riffusion's img2img interpolation: text embeddings lerped
and the two seeds' noise slerped between two endpoints, the seed spectrogram's latents noised
to the strength's start step, then denoised with classifier-free guidance. It drives the stock
``StableDiffusionPipeline.__call__`` through its public arguments (``prompt_embeds``,
``latents``, ``callback_on_step_end``); the only adaptation is a scheduler subclass that starts
its schedule part-way, exactly as diffusers' own img2img pipeline slices it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import torch
from PIL import Image

from jam.model.folder import Model, ModelError, open_model
from jam.model.interpolate import lerp, seeded_noise, slerp
from jam.model.types import (
    Blend,
    Continuation,
    Endpoint,
    RenderCancelled,
    RenderedTile,
    TileRequest,
    blend,
    validate_prompt,
)
from jam.seeds.library import SeedLibrary
from jam.sound.phase import carried_phase
from jam.sound.spectrogram import DEFAULT_MAX_VALUE, converter, spectrogram_from_pixels
from jam.sound.tempo import loop_tail, stretch_time, stretched_width

log = logging.getLogger(__name__)


@cache
def _start_at(scheduler_cls: type) -> type:
    """``scheduler_cls`` whose schedule begins ``start_index`` steps in (img2img strength).

    The text-to-image pipeline runs whatever ``scheduler.timesteps`` holds, so the schedule is
    cut there, and so are the sigmas that go with it: the scheduler then sees a consistent,
    shorter schedule, and solvers that look at its length (DPM-Solver's lower-order final step)
    finish on the right step. The cut is diffusers' img2img cut: ``start * order`` steps.
    """
    if "start_index" in vars(scheduler_cls):  # already wrapped (a second Engine on one pipe)
        return scheduler_cls

    def set_timesteps(self, *args, **kwargs) -> None:
        scheduler_cls.set_timesteps(self, *args, **kwargs)
        k = self.start_index * self.order
        if k:
            self.timesteps = self.timesteps[k:]
            sigmas = getattr(self, "sigmas", None)
            if isinstance(sigmas, torch.Tensor) and sigmas.dim() == 1 and len(sigmas) > k:
                self.sigmas = sigmas[k:]

    return type(
        scheduler_cls.__name__, (scheduler_cls,), {"start_index": 0, "set_timesteps": set_timesteps}
    )


def stop_if(cancelled: Callable[[], bool] | None) -> None:
    """Raise :class:`RenderCancelled` once nobody wants the tiles (checked between stages)."""
    if cancelled is not None and cancelled():
        raise RenderCancelled


@dataclass(frozen=True)
class _Group:
    """Requests that can share one pipeline call (same steps, strength and guidance)."""

    steps: int
    strength: float
    guidance: float


class Engine:
    """A loaded pipeline plus what it needs to turn tile requests into audio."""

    def __init__(self, model: Model, seeds: SeedLibrary) -> None:
        pipe = model.pipe
        params, defaults = model.params, model.defaults
        if (seeds.params, seeds.width) != (params, defaults.tile_width):
            raise ModelError(
                f"the seed library makes {seeds.width}-frame tiles at {seeds.params}; "
                f"the model {model.name} needs {defaults.tile_width} frames at {params}"
            )
        self.pipe = pipe
        self.params = params
        self.defaults = defaults
        self.seeds = seeds
        self.device = pipe.device
        self.dtype = pipe.unet.dtype
        pipe.set_progress_bar_config(disable=True)
        pipe.scheduler = _start_at(type(pipe.scheduler)).from_config(pipe.scheduler.config)
        self.converter = converter(params, self.device)
        self._embeddings: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._init_latents: dict[str, torch.Tensor] = {}
        h, w = params.num_frequencies, defaults.tile_width
        factor = pipe.vae_scale_factor
        if h % factor or w % factor:
            raise ModelError(f"tile {h}x{w} px is not a multiple of the VAE's factor {factor}")
        self.latent_shape = (pipe.unet.config.in_channels, h // factor, w // factor)

    @property
    def tile_samples(self) -> int:
        return self.params.num_samples(self.defaults.tile_width)

    # --- conditioning ------------------------------------------------------------------

    @torch.inference_mode()
    def embed(self, prompt: str) -> torch.Tensor:
        """Text embedding of one prompt, cached (a session re-uses a handful of prompts)."""
        if prompt in self._embeddings:
            self._embeddings.move_to_end(prompt)
            return self._embeddings[prompt]
        emb, _ = self.pipe.encode_prompt(prompt, self.device, 1, False)
        self._embeddings[prompt] = emb
        while len(self._embeddings) > 256:
            self._embeddings.popitem(last=False)
        return emb

    def embed_blend(self, prompts: Blend) -> torch.Tensor:
        """A blend's embedding: its prompts' embeddings mixed by weight."""
        emb = self.embed(prompts[0].text) * prompts[0].weight
        for p in prompts[1:]:
            emb = emb + self.embed(p.text) * p.weight
        return emb

    @torch.inference_mode()
    def init_latents(self, seed_image: str | Image.Image) -> torch.Tensor:
        """The seed spectrogram's VAE latents (the mean: deterministic), cached by name."""
        key = seed_image if isinstance(seed_image, str) else None
        if key is not None and key in self._init_latents:
            return self._init_latents[key]
        image = self.seeds.get(seed_image).image if isinstance(seed_image, str) else seed_image
        expected = (self.defaults.tile_width, self.params.num_frequencies)
        if image.size != expected:
            raise ValueError(
                f"seed image is {image.size[0]}x{image.size[1]} px; "
                f"this model needs {expected[0]}x{expected[1]}"
            )
        x = self.pipe.image_processor.preprocess(image.convert("RGB")).to(self.device, self.dtype)
        latents = self.pipe.vae.encode(x).latent_dist.mean * self.pipe.vae.config.scaling_factor
        if key is not None:
            self._init_latents[key] = latents
        return latents

    def point(self, request: TileRequest) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(text embedding, negative embedding, noise) at the request's alpha."""
        a, b, alpha = request.start, request.end, request.alpha
        cond = lerp(self.embed_blend(a.prompts), self.embed_blend(b.prompts), alpha)
        uncond = lerp(self.embed(a.negative_prompt), self.embed(b.negative_prompt), alpha)
        shape = (1, *self.latent_shape)
        noise = slerp(
            seeded_noise(a.seed, shape, self.device, self.dtype),
            seeded_noise(b.seed, shape, self.device, self.dtype),
            alpha,
        )
        return cond, uncond, noise

    # --- rendering ---------------------------------------------------------------------

    @torch.inference_mode()
    def denoise(
        self,
        requests: Sequence[TileRequest],
        mask: torch.Tensor | None = None,
        seed_image: Image.Image | None = None,
        output_type: str = "pt",
        cancelled: Callable[[], bool] | None = None,
    ) -> torch.Tensor:
        """Spectrogram images ``(B, 3, H, W)`` in [0, 1] for requests sharing one group
        (or the final latents, with ``output_type="latent"``).

        ``mask`` (latent-sized, 1 = regenerate, 0 = keep) re-noises kept regions from the seed
        after every step, Riffusion's way of continuing a clip while keeping part of it.
        """
        first = requests[0]
        group = self._group(first)
        if any(self._group(r) != group for r in requests):
            raise ValueError("requests in one denoise call must share steps, strength and guidance")
        points = [self.point(r) for r in requests]
        cond = torch.cat([p[0] for p in points])
        uncond = torch.cat([p[1] for p in points])
        noise = torch.cat([p[2] for p in points])
        init = torch.cat([self.init_latents(seed_image or r.seed_image) for r in requests])

        scheduler = self.pipe.scheduler
        # at least one step: a low strength (0.05 x 15 steps) must still render, not raise
        init_steps = max(1, min(int(group.steps * group.strength), group.steps))
        scheduler.start_index = max(group.steps - init_steps, 0)
        scheduler.set_timesteps(group.steps, device=self.device)
        timesteps = scheduler.timesteps
        if len(timesteps) == 0:
            raise ValueError(
                f"strength {group.strength} with {group.steps} steps leaves no step to run"
            )
        latents = scheduler.add_noise(init, noise, timesteps[:1].repeat(len(requests)))

        def each_step(pipe, i, t, kwargs):
            stop_if(cancelled)  # a prompt changed: free the device for the new tile
            if mask is not None:
                nxt = timesteps[i + 1 : i + 2]
                kept = (
                    init
                    if len(nxt) == 0
                    else scheduler.add_noise(init, noise, nxt.repeat(len(requests)))
                )
                kwargs["latents"] = kept * (1 - mask) + kwargs["latents"] * mask
            return kwargs

        h, w = self.params.num_frequencies, self.defaults.tile_width
        return self.pipe(
            height=h,
            width=w,
            num_inference_steps=group.steps,
            guidance_scale=group.guidance,
            prompt_embeds=cond,
            negative_prompt_embeds=uncond,
            latents=latents / scheduler.init_noise_sigma,
            output_type=output_type,
            callback_on_step_end=each_step if mask is not None or cancelled else None,
        ).images

    def _group(self, r: TileRequest) -> _Group:
        return _Group(r.steps, round(r.strength, 4), round(r.guidance, 4))

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE-decode latents to spectrogram images ``(B, 3, H, W)`` in [0, 1]."""
        vae = self.pipe.vae
        images = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
        return self.pipe.image_processor.postprocess(images, output_type="pt")

    @torch.inference_mode()
    def audio_from_images(
        self,
        images: torch.Tensor,
        widths: Sequence[int] | None = None,
        continuations: Sequence[Continuation | None] | None = None,
        tails: Sequence[tuple[int, int]] | None = None,
    ) -> list[torch.Tensor]:
        """Float audio ``(channels, samples)`` per diffusion output image in [0, 1]; with
        ``widths``, each spectrogram is first stretched to that many frames (its tempo); with
        ``tails`` (``(beats, tail_beats)`` per image), it then plays on from its start for
        ``tail_beats`` of its ``beats`` (:func:`loop_tail`); with ``continuations``, each tile
        given one starts its Griffin-Lim from that audio's phase (the rest from random phase,
        exactly as without)."""
        pixels = images.to(torch.float32).movedim(1, -1) * 255
        mel = spectrogram_from_pixels(
            pixels, self.params.power_for_image, DEFAULT_MAX_VALUE, self.params.stereo
        )
        native = mel.shape[-1]
        widths = [native] * len(mel) if widths is None else list(widths)
        tails = [(1, 0)] * len(mel) if tails is None else list(tails)
        spectra = [
            loop_tail(stretch_time(m, w), beats, tail)
            for m, w, (beats, tail) in zip(mel, widths, tails, strict=True)
        ]
        carried = [None] * len(mel) if continuations is None else list(continuations)
        phases = [
            None if c is None else self.starting_phase(c, s.shape[-1])
            for c, s in zip(carried, spectra, strict=True)
        ]
        audio_from = self.converter.audio_from_spectrogram
        frames = {s.shape[-1] for s in spectra}
        if len(frames) == 1:  # one batched inversion
            batch = torch.stack(spectra)
            if all(p is None for p in phases):
                return list(audio_from(batch))
            shape = (*mel.shape[1:-2], self.params.n_fft // 2 + 1, frames.pop())
            zero = torch.zeros(shape, dtype=torch.complex64, device=self.converter.device)
            return list(audio_from(batch, torch.stack([zero if p is None else p for p in phases])))
        return [audio_from(s, p) for s, p in zip(spectra, phases, strict=True)]

    def starting_phase(self, continuation: Continuation, frames: int) -> torch.Tensor:
        """The phase ``(channels, n_fft // 2 + 1, frames)`` a ``frames``-frame tile starts from:
        the continuation's audio at the tile's frames, over as many as it covers (the overlap);
        zero (random) elsewhere."""
        p = self.params
        return carried_phase(
            continuation.audio.to(self.converter.device, torch.float32), continuation.offset,
            frames, self.converter.griffin_lim.window, p.n_fft, p.hop_length,
        )  # fmt: skip

    def width_for(self, request: TileRequest) -> int:
        """Spectrogram frames of the request's tile at its tempo."""
        width = self.defaults.tile_width
        if request.bpm is None:
            return width
        return stretched_width(width, self.seeds.get(request.seed_image).bpm, request.bpm)

    def render(
        self, requests: Sequence[TileRequest], cancelled: Callable[[], bool] | None = None
    ) -> list[RenderedTile]:
        """Render tiles, batching requests that can share a pipeline call. Blocking.

        ``cancelled`` is polled between denoising steps; when it returns True the render stops
        with :class:`RenderCancelled` instead of finishing tiles nobody will play.
        """
        for r in requests:
            for p in r.start.prompts + r.end.prompts:
                validate_prompt(p.text)
        groups: dict[_Group, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(self._group(r), []).append(i)
        out: list[RenderedTile | None] = [None] * len(requests)
        for indices in groups.values():
            t0 = time.perf_counter()
            batch = [requests[i] for i in indices]
            latents = self.denoise(batch, output_type="latent", cancelled=cancelled)
            stop_if(cancelled)  # decoding and inversion are a quarter of a tile's time
            images = self.decode(latents)
            stop_if(cancelled)
            widths = [self.width_for(r) for r in batch]
            tails = [(self.seeds.get(r.seed_image).beats, r.tail_beats) for r in batch]
            audio = self.audio_from_images(images, widths, [r.continuation for r in batch], tails)
            pictures = (images.to(torch.float32) * 255).round().to(torch.uint8).movedim(1, -1).cpu()
            seconds = (time.perf_counter() - t0) / len(batch)
            for j, i in enumerate(indices):
                picture = Image.fromarray(pictures[j].numpy(), mode="RGB")
                warm = requests[i].continuation is not None
                tail = audio[j].shape[-1] - self.params.num_samples(widths[j])
                out[i] = RenderedTile(requests[i], audio[j].cpu(), picture, seconds, warm, tail)
        return out  # type: ignore[return-value]

    def request(
        self,
        prompt: str,
        seed: int = 0,
        seed_image: str | None = None,
        *,
        strength: float | None = None,
        guidance: float | None = None,
        steps: int | None = None,
        negative_prompt: str = "",
        bpm: float | None = None,
    ) -> TileRequest:
        """A single-endpoint request; what is not given comes from the model's defaults."""
        d = self.defaults
        end = Endpoint(
            prompts=blend(prompt),
            seed=seed,
            strength=d.strength if strength is None else strength,
            guidance=d.guidance if guidance is None else guidance,
            negative_prompt=negative_prompt,
        )
        return TileRequest(
            end, replace(end), 0.0, seed_image or d.seed_image, steps or d.steps, bpm
        )


def load_engine(
    model: str | Path | None = None, device: str | None = None, seed_dir: Path | None = None
) -> Engine:
    """An engine for a model (see :func:`open_model`) with the seed library of its format."""
    loaded = open_model(model, device)
    seeds = SeedLibrary(loaded.params, loaded.defaults.tile_width, user_dir=seed_dir)
    return Engine(loaded, seeds)
