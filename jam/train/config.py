"""What a training run builds: jam's spectrogram, the two architectures, the noise schedule,
the run's plan and the render defaults it exports.

Plain data, apart from the loops that read it, so that a resumed run, the export and the CLI
all read one definition.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from jam.model.blank import SD_SCHEDULER
from jam.sound.params import SpectrogramParams

# Stable Diffusion's noise schedule, so SD-1.x schedulers (and fine-tuning from SD) all fit.
BETAS = {
    k: SD_SCHEDULER[k] for k in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps")
}

JAM_PARAMS = SpectrogramParams(
    sample_rate=22050,
    step_size_ms=10,
    window_duration_ms=46,
    padded_duration_ms=46,
    num_frequencies=128,
    min_frequency=0,
    max_frequency=10000,
)
"""jam's own spectrogram: 128 mel rows 0-10 kHz, 10 ms hop, a 1014-point FFT (Griffin-Lim on
a 512-frame tile takes ~0.3 s here, against ~4 s at Riffusion's 17640-point FFT)."""

TILE_WIDTH = 512
TILE_BEATS = 8
"""A training tile is :data:`TILE_WIDTH` frames holding exactly :data:`TILE_BEATS` beats (two bars
of 4/4) from its downbeat at column 0: every tile at one *image tempo* (:func:`image_bpm`), the
tempo of the seed loops too; a stream's real tempo is a time stretch at playback
(:mod:`jam.sound.tempo`)."""


def image_bpm(
    params: SpectrogramParams = JAM_PARAMS, width: int = TILE_WIDTH, beats: int = TILE_BEATS
) -> float:
    """The tempo at which ``beats`` beats fill a ``width``-frame tile exactly: 94.147 bpm for
    :data:`JAM_PARAMS` (a tile spans 511 hops of 220 samples at 22050 Hz, 5.098 s). The same
    formula as the seed loops' (:func:`jam.seeds.synth.bpm_for`), so the two always agree."""
    from jam.seeds.synth import bpm_for

    return bpm_for(beats, params.sample_rate, params.num_samples(width))


VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(16, 48, 96, 128),
    layers_per_block=1,
    latent_channels=8,
    norm_num_groups=16,
    sample_size=128,
)
"""v3's autoencoder: 8x down as before, but 8 latent channels (v2: 4) and wider lower blocks
(v2: 16, 32, 64, 64), so a 16-row latent can still say where each harmonic line lies."""

UNET_CONFIG = dict(
    in_channels=4,
    out_channels=4,
    block_out_channels=(48, 96, 192),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=4,  # diffusers reads this as the number of heads
    norm_num_groups=16,
)


@dataclass
class TrainConfig:
    """What one training run does; stored in checkpoints so a resume keeps the same plan."""

    vae_steps: int = 600
    unet_steps: int = 3000
    batch: int = 16
    vae_batch: int = 8
    vae_crop: int = 96
    vae_lr: float = 1e-3
    unet_lr: float = 4e-4
    warmup: int = 100
    kl_weight: float = 1e-6
    caption_dropout: float = 0.1
    ema_decay: float = 0.999
    checkpoint_every: int = 100
    sample_every: int = 500
    tile_width: int = 512
    seed: int = 0
    train_vae: bool = True
    decoder_only: bool = False
    # what keeps harmonic lines sharp (jam.train.losses); 0 switches a term off
    sharpness: float = 1.0  # L1 on mel- and time-differences
    spectral: float = 0.5  # multi-resolution spectra along both image axes
    adversarial: float = 0.5  # the patch discriminator's loss (adaptive weight, as VQGAN's)
    adversarial_start: int = 500  # autoencoder step from which the discriminator takes part
    vae_channels: tuple[int, ...] = tuple(VAE_CONFIG["block_out_channels"])
    latent_channels: int = int(VAE_CONFIG["latent_channels"])
    unet_minutes: float = 0.0  # > 0: set unet_steps from the measured speed to fit this budget
    unet_channels: tuple[int, ...] = (48, 96, 192)


@dataclass(frozen=True)
class Defaults:
    """Render defaults a trained model recommends, written to its jam.json as
    :class:`jam.model.folder.ModelDefaults` (which owns the file and every other field)."""

    steps: int = 15
    strength: float = 0.95
    guidance: float = 7.0


def new_vae(channels: tuple[int, ...] | None = None, latent_channels: int | None = None):
    """A fresh autoencoder of :data:`VAE_CONFIG` (diffusers is imported only when one is built)."""
    from diffusers import AutoencoderKL

    config = dict(VAE_CONFIG)
    if channels is not None:
        config["block_out_channels"] = tuple(channels)
    if latent_channels is not None:
        config["latent_channels"] = latent_channels
    return AutoencoderKL(**config)


def new_unet(
    cross_attention_dim: int,
    latent_hw: tuple[int, int],
    channels: tuple[int, ...] | None = None,
    latent_channels: int = 4,
):
    """A fresh UNet of :data:`UNET_CONFIG`, sized to the text encoder and the latent tile."""
    from diffusers import UNet2DConditionModel

    config = dict(
        UNET_CONFIG,
        block_out_channels=tuple(channels or UNET_CONFIG["block_out_channels"]),
        in_channels=latent_channels,
        out_channels=latent_channels,
    )
    return UNet2DConditionModel(
        sample_size=latent_hw, cross_attention_dim=cross_attention_dim, **config
    )


def parse_params(text: str | None) -> SpectrogramParams:
    """``--params``: a JSON file, a folder holding spectrogram_params.json, or k=v pairs
    (changes to :data:`JAM_PARAMS`); nothing: :data:`JAM_PARAMS` itself."""
    if not text:
        return JAM_PARAMS
    path = Path(text)
    if path.is_dir():
        return SpectrogramParams.load(path)
    if path.is_file():
        return SpectrogramParams.from_dict(json.loads(path.read_text()))
    changes = {}
    fields = {f.name: f.type for f in dataclasses.fields(SpectrogramParams)}
    for pair in text.split(","):
        key, _, value = pair.partition("=")
        key = key.strip()
        if key not in fields:
            raise ValueError(f"unknown spectrogram param {key!r}")
        changes[key] = json.loads(value) if value.strip() not in ("", "None") else None
    return dataclasses.replace(JAM_PARAMS, **changes)
