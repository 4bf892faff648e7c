"""Build Stable-Diffusion-1.x pipeline folders with random weights, from configs alone.

Used where no checkpoint can be downloaded: the test suite's tiny model, the Riffusion-scale
GPU benchmark (speed does not depend on weight values), and the starting point of training a
model from scratch. The folder is the same format a real checkpoint has, so it is loaded by
the same code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from jam.model.clip_tokenizer import write_clip_tokenizer
from jam.model.folder import ModelDefaults
from jam.sound.params import SpectrogramParams

# Riffusion's scheduler config (Stable Diffusion 1.x's PNDM).
SD_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    skip_prk_steps=True,
    steps_offset=1,
    set_alpha_to_one=False,
)

ARCHS = {
    # ~0.3M-parameter UNet: fast enough for tests on two CPU cores.
    "tiny": dict(
        unet=dict(
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
        ),
        vae=dict(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=8),
        text=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4),
    ),
    # Stable Diffusion 1.5's architecture (Riffusion v1 is a fine-tune of it): ~860M UNet.
    "sd15": dict(
        unet=dict(
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=768,
            attention_head_dim=8,
        ),
        vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
        text=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            projection_dim=768,
        ),
    ),
}


def build_pipeline(
    out_dir: str | Path,
    arch: Literal["tiny", "sd15"] = "tiny",
    params: SpectrogramParams | None = None,
    defaults: ModelDefaults | None = None,
    seed: int = 0,
) -> Path:
    """Write a random-weight SD-1.x pipeline folder (plus jam's params and defaults)."""
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    spec = ARCHS[arch]
    out = Path(out_dir)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, **spec["unet"])
    blocks = len(spec["vae"]["block_out_channels"])
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        latent_channels=4,
        sample_size=512,
        **spec["vae"],
    )
    tokenizer = write_clip_tokenizer(out / "tokenizer")
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_act="quick_gelu",
        **spec["text"],
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(text_config),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=PNDMScheduler(**SD_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out)
    (params or SpectrogramParams()).save(out)
    (defaults or ModelDefaults()).save(out)
    return out


# Small, fast spectrogram params for CPU tests: 16 kHz, 1024-point FFT, 64 mel bins to 8 kHz.
TINY_PARAMS = SpectrogramParams(
    sample_rate=16000,
    window_duration_ms=40,
    padded_duration_ms=64,
    num_frequencies=64,
    max_frequency=8000,
)
