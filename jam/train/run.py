"""One `jam train` run: an audio folder with captions -> a model folder, resumable.

Work files live beside the output in ``OUT.work/``: cached tiles, latents and caption
embeddings (minutes each to recompute), the phases' checkpoints, sample renders, the summary and
the loss chart. The phases run in order (autoencoder, latents, UNet); each export is a complete
model folder, so a run stopped at any checkpoint has already left something servable.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import torch

from jam.sound.params import SpectrogramParams
from jam.train.captions import style_tempos
from jam.train.config import JAM_PARAMS, Defaults, TrainConfig, new_unet, new_vae
from jam.train.corpus import read_captions
from jam.train.dataset import DatasetError, atomic_save, cached_tiles, read_items
from jam.train.export import export_pipeline
from jam.train.loop import (
    cached_conditioning,
    encode_latents,
    load_checkpoint,
    text_side,
    train_unet,
    train_vae,
)
from jam.train.report import plot_losses, render_samples

log = logging.getLogger(__name__)


def load_init(init: Path) -> tuple[object, object]:
    """(vae, unet) of an existing diffusers folder to fine-tune."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    if not (init / "model_index.json").is_file():
        raise DatasetError(f"--init {init} is not a diffusers model folder (no model_index.json)")
    vae = AutoencoderKL.from_pretrained(str(init / "vae"), torch_dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(str(init / "unet"), torch_dtype=torch.float32)
    return vae, unet


def train(
    data_dir: Path,
    out: Path,
    cfg: TrainConfig,
    params: SpectrogramParams = JAM_PARAMS,
    defaults: Defaults | None = None,
    init: Path | None = None,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
    samples: bool = True,
) -> dict:
    """Train and export; returns a summary (losses, timings). Work files: ``OUT.work/``.

    ``defaults`` (:class:`Defaults` when None) are the render settings written to jam.json.
    """
    defaults = Defaults() if defaults is None else defaults
    dev = torch.device(device)
    torch.manual_seed(cfg.seed)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    work = out.with_name(out.name + ".work")
    if work.exists() and not resume:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    t_start = time.perf_counter()
    items = read_items(data_dir)
    captions = Path(data_dir) / "captions.jsonl"  # a `jam corpus` folder: its styles' tempos
    tempos = style_tempos(read_captions(captions)) if captions.is_file() else {}
    tiles = cached_tiles(items, params, cfg.tile_width, work / "tiles.pt", progress)
    log.info("%d files -> %d tiles of %d frames", len(items), len(tiles), cfg.tile_width)

    if init is not None:
        vae, unet = load_init(init)
    else:
        vae, unet = new_vae(cfg.vae_channels, cfg.latent_channels), None
    text = text_side(init)
    summary: dict = {"tiles": len(tiles), "files": len(items)}

    t0 = time.perf_counter()
    if cfg.train_vae and cfg.vae_steps > 0:
        vae_losses = train_vae(vae, tiles, cfg, dev, work / "vae.ckpt", progress)
        summary["vae_l1"] = sum(vae_losses[-20:]) / max(len(vae_losses[-20:]), 1)
    summary["vae_minutes"] = (time.perf_counter() - t0) / 60
    vae.to(dev).eval()
    latents_path = work / "latents.pt"
    stored = load_checkpoint(latents_path) if resume else None
    if stored is None:
        latents = encode_latents(vae, tiles, dev)
        scaling = 1.0 / float(latents[:, 0].std())
        if init is not None and (not cfg.train_vae or cfg.decoder_only):
            scaling = float(vae.config.scaling_factor)
        atomic_save({"latents": latents, "scaling": scaling}, latents_path)
    else:
        latents, scaling = stored["latents"], stored["scaling"]
    vae.register_to_config(scaling_factor=scaling)

    cond = cached_conditioning(tiles, text, work / "text.pt")
    latent_hw = tuple(latents.shape[-2:])
    if unet is None:
        unet = new_unet(text.dim, latent_hw, cfg.unet_channels, int(latents.shape[2]))
    elif unet.config.cross_attention_dim != text.dim:
        raise DatasetError(
            f"--init UNet expects {unet.config.cross_attention_dim}-d text embeddings; "
            f"its text encoder gives {text.dim}"
        )

    def checkpoint_export(step: int, model) -> None:
        export_pipeline(out, vae, model, text, params, cfg.tile_width, defaults, tempos)
        vae.to(dev)
        if samples:
            try:
                render_samples(out, work / "samples", f"step{step:06d}", device=device)
            except Exception as e:  # a failed preview must not end a long run
                log.warning("sample render at step %d failed: %s", step, e)

    t0 = time.perf_counter()
    start = (load_checkpoint(work / "unet.ckpt") or {}).get("step", 0)
    model, losses = train_unet(
        unet, latents, scaling, cond, cfg, dev, work / "unet.ckpt", progress, checkpoint_export
    )
    minutes = (time.perf_counter() - t0) / 60
    export_pipeline(out, vae, model, text, params, cfg.tile_width, defaults, tempos)
    summary.update(
        unet_loss=sum(losses[-50:]) / max(len(losses[-50:]), 1),
        unet_first_loss=sum(losses[:20]) / max(len(losses[:20]), 1),
        unet_steps=len(losses),
        unet_minutes=minutes,
        unet_samples_per_s=(cfg.unet_steps - start) * cfg.batch / max(minutes * 60, 1e-9),
        total_minutes=(time.perf_counter() - t_start) / 60,
    )
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    vae_state = load_checkpoint(work / "vae.ckpt") or {}
    curves = {"autoencoder L1": vae_state.get("losses", []), "UNet epsilon MSE": losses}
    plot_losses(curves, work / "loss.png")
    (work / "losses.json").write_text(json.dumps(curves))
    return summary
