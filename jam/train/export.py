"""Trained models -> a model folder the engine loads as it is.

The folder is Stable Diffusion's format (so Riffusion's engine path serves it unchanged) plus
jam's ``spectrogram_params.json`` and ``jam.json``. It is swapped in atomically, because a long
run exports at every sample checkpoint while a server may be reading the previous export.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from jam.sound.params import SpectrogramParams
from jam.train.config import BETAS, Defaults

if TYPE_CHECKING:
    from jam.train.loop import TextSide


def export_pipeline(
    out: Path,
    vae,
    unet,
    text: TextSide,
    params: SpectrogramParams,
    tile_width: int,
    defaults: Defaults,
    tempos: dict[str, float] | None = None,
) -> Path:
    """Write a Stable-Diffusion-format folder (+ jam params and defaults, with the style
    ``tempos`` its training music had); atomic swap-in."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    from jam.model import textenc
    from jam.model.folder import ModelDefaults

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe = StableDiffusionPipeline(
        vae=vae.to("cpu", torch.float32),
        text_encoder=text.encoder,
        tokenizer=text.tokenizer,
        unet=unet.to("cpu", torch.float32),
        scheduler=DPMSolverMultistepScheduler(
            **BETAS, steps_offset=1, final_sigmas_type="sigma_min"
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if text.referenced:
        # Save all but the 90 MB text encoder, which loads from its pip package instead.
        pipe.text_encoder = None
        pipe.save_pretrained(tmp, safe_serialization=True)
        pipe.text_encoder = text.encoder
        textenc.write_reference(tmp, text.tokenizer.model_max_length)
    else:
        pipe.save_pretrained(tmp, safe_serialization=True)
    for weights in tmp.glob("*/diffusion_pytorch_model.safetensors"):
        halve(weights)
    for config in tmp.glob("*/config.json"):  # no local paths (of an --init model) when shipped
        data = json.loads(config.read_text())
        if data.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(data, indent=2) + "\n")
    params.save(tmp)
    ModelDefaults(
        tile_width=tile_width,
        steps=defaults.steps,
        strength=defaults.strength,
        guidance=defaults.guidance,
        tempos=tuple(sorted((tempos or {}).items())),
    ).save(tmp)
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
    return out


def halve(weights: Path) -> None:
    """Store float32 weights as float16: half the folder, and the engine loads them in its own
    dtype anyway (float32 on a CPU, where the model is computed at full precision)."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(weights))
    save_file(
        {k: v.half() if v.dtype == torch.float32 else v for k, v in state.items()},
        str(weights),
        metadata={"format": "pt"},
    )
