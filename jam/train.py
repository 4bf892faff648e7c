"""`jam train`: an audio folder with captions -> a jam model folder the engine loads as it is.

Two phases, each resumable from an atomic checkpoint: a small ``AutoencoderKL`` (8x
downsampling) learns to reconstruct spectrogram images (random crops: it is convolutional, and
crops train it 4x faster), then a ``UNet2DConditionModel`` learns epsilon prediction on the
autoencoder's latents with Stable Diffusion's scaled-linear betas, conditioned on a frozen text
encoder's hidden states, with ~10% of captions dropped for classifier-free guidance. Latents and
text embeddings are computed once: both models that make them are frozen during UNet training.
The output is a Stable-Diffusion-format folder, so Riffusion's engine path serves it unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from jam.blank import SD_SCHEDULER
from jam.dataset import DatasetError, TileSet, atomic_save, cached_tiles, read_items
from jam.params import SpectrogramParams

log = logging.getLogger(__name__)

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

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(16, 32, 64, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=16,
    sample_size=128,
)

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

    vae_steps: int = 300
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
    sharpness: float = 0.0  # weight of an L1 loss on mel- and time-differences (harmonic lines)
    unet_minutes: float = 0.0  # > 0: set unet_steps from the measured speed to fit this budget
    unet_channels: tuple[int, ...] = (48, 96, 192)


@dataclass(frozen=True)
class Defaults:
    """Render defaults written to jam.json (see jam.diffusion.ModelDefaults)."""

    steps: int = 15
    strength: float = 0.95
    guidance: float = 7.0


SAMPLE_PROMPTS = ("funky bass groove with brass", "dark techno with acid bass", "solo piano")


# --- small pure helpers ----------------------------------------------------------------------


def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, H, W)`` -> float ``(B, 3, H, W)`` in [-1, 1], as the pipeline's processor."""
    x = pixels.to(torch.float32).div(127.5).sub(1.0)
    return x.unsqueeze(1).expand(-1, 3, -1, -1)


def random_crops(pixels: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Same-size time crops (the full height: mel rows are not translation-invariant)."""
    w = pixels.shape[-1]
    starts = torch.randint(0, w - size + 1, (pixels.shape[0],), generator=gen).tolist()
    return torch.stack([p[:, s : s + size] for p, s in zip(pixels, starts, strict=True)])


def difference_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 between neighbour differences along mel rows and time frames: plain L1 is satisfied by
    a blur, this term is not (a gradient-difference loss, as in video prediction)."""
    return F.l1_loss(a.diff(dim=-2), b.diff(dim=-2)) + F.l1_loss(a.diff(dim=-1), b.diff(dim=-1))


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(total - warmup, 1)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def autocast(device: torch.device):
    """bf16 autocast on CUDA (fp16 where bf16 is unsupported); nothing on the CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


# --- models --------------------------------------------------------------------------------


def new_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(**VAE_CONFIG)


def new_unet(
    cross_attention_dim: int, latent_hw: tuple[int, int], channels: tuple[int, ...] | None = None
):
    from diffusers import UNet2DConditionModel

    config = dict(
        UNET_CONFIG, block_out_channels=tuple(channels or UNET_CONFIG["block_out_channels"])
    )
    return UNet2DConditionModel(
        sample_size=latent_hw, cross_attention_dim=cross_attention_dim, **config
    )


@dataclass
class TextSide:
    """The frozen tokenizer + text encoder and whether it is the referenced MiniLM."""

    tokenizer: object
    encoder: torch.nn.Module
    referenced: bool

    @property
    def dim(self) -> int:
        return int(self.encoder.config.hidden_size)

    def encode(self, texts: list[str], batch: int = 256) -> torch.Tensor:
        from jam.textenc import encode

        chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
        return torch.cat([encode(self.tokenizer, self.encoder, c) for c in chunks])


def text_side(init: Path | None) -> TextSide:
    """The init model's own text encoder, else (or when it references one) MiniLM."""
    from jam import textenc

    if init is not None and not textenc.referenced_components(init):
        from transformers import AutoTokenizer, CLIPTextModel

        tok = AutoTokenizer.from_pretrained(str(init / "tokenizer"))
        enc = CLIPTextModel.from_pretrained(str(init / "text_encoder")).eval().requires_grad_(False)
        return TextSide(tok, enc, referenced=False)
    return TextSide(textenc.load_tokenizer(), textenc.load_text_encoder(), referenced=True)


# --- checkpoints -----------------------------------------------------------------------------


def load_checkpoint(path: Path) -> dict | None:
    return torch.load(path, weights_only=False) if path.is_file() else None


# --- phase 1: the autoencoder ------------------------------------------------------------


def train_vae(
    vae, tiles: TileSet, cfg: TrainConfig, device: torch.device, ckpt_path: Path, progress: bool
) -> list[float]:
    """Reconstruction (L1) + a tiny KL term on random crops; returns the loss history.

    With ``cfg.decoder_only`` the encoder is frozen: latents stay exactly as they were, so a UNet
    trained on them stays valid while a sharper decoder is trained (as SD's ft-MSE decoder was).
    """
    from tqdm import tqdm

    vae.to(device).train()
    params = list(vae.parameters())
    if cfg.decoder_only:
        vae.encoder.requires_grad_(False).eval()
        vae.quant_conv.requires_grad_(False)
        params = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.vae_lr, weight_decay=0.0)
    state = load_checkpoint(ckpt_path)
    start, losses = 0, []
    if state is not None:
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start, losses = state["step"], state["losses"]
    gen = torch.Generator().manual_seed(cfg.seed + start)
    crop = min(cfg.vae_crop, tiles.pixels.shape[-1])
    bar = tqdm(range(start, cfg.vae_steps), desc="autoencoder", disable=not progress)
    for step in bar:
        set_lr(opt, lr_at(step, cfg.vae_steps, cfg.vae_lr, cfg.warmup // 2))
        idx = torch.randint(0, len(tiles), (cfg.vae_batch,), generator=gen)
        x = to_model_range(random_crops(tiles.pixels[idx], crop, gen)).to(device)
        with autocast(device):
            with torch.set_grad_enabled(not cfg.decoder_only):
                posterior = vae.encode(x).latent_dist
            recon = vae.decode(posterior.sample(generator=None)).sample
        rec = F.l1_loss(recon.float(), x)
        loss = rec if cfg.decoder_only else rec + cfg.kl_weight * posterior.kl().mean()
        if cfg.sharpness:
            loss = loss + cfg.sharpness * difference_l1(recon.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(rec.item())
        bar.set_postfix(l1=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}")
        done = step + 1
        if done % cfg.checkpoint_every == 0 or done == cfg.vae_steps:
            atomic_save(
                {
                    "model": vae.state_dict(),
                    "opt": opt.state_dict(),
                    "step": done,
                    "losses": losses,
                },
                ckpt_path,
            )
    vae.eval()
    return losses


@torch.no_grad()
def encode_latents(vae, tiles: TileSet, device: torch.device, batch: int = 32) -> torch.Tensor:
    """Posterior means and stds ``(N, 2, C, h, w)`` of every tile (sampled per step later)."""
    out = []
    for i in range(0, len(tiles), batch):
        x = to_model_range(tiles.pixels[i : i + batch]).to(device)
        dist = vae.encode(x).latent_dist
        out.append(torch.stack([dist.mean, dist.std], dim=1).float().cpu())
    return torch.cat(out)


# --- phase 2: the UNet -----------------------------------------------------------------------


@dataclass
class Conditioning:
    """Every training caption's embedding plus, per tile, which captions belong to it."""

    embeddings: torch.Tensor  # (num_captions, L, D) float16
    tile_captions: list[list[int]]
    empty: torch.Tensor  # (L, D): the unconditional embedding the engine uses ("")


def conditioning(tiles: TileSet, text: TextSide) -> Conditioning:
    captions: list[str] = []
    per_item: list[list[int]] = []
    for item in tiles.items:
        per_item.append(list(range(len(captions), len(captions) + len(item.captions))))
        captions.extend(item.captions)
    emb = text.encode(captions).to(torch.float16)
    empty = text.encode([""])[0]
    return Conditioning(emb, [per_item[int(k)] for k in tiles.item_index], empty)


def cached_conditioning(tiles: TileSet, text: TextSide, path: Path) -> Conditioning:
    """:func:`conditioning`, reused when the captions are unchanged (a resume skips ~1 min)."""
    key = [list(i.captions) for i in tiles.items]
    stored = load_checkpoint(path)
    if stored is not None and stored.get("key") == key and "embeddings" in stored:
        return Conditioning(stored["embeddings"], stored["tile_captions"], stored["empty"])
    cond = conditioning(tiles, text)
    # Plain tensors and lists, not the dataclass: a pickled class breaks when the module that
    # wrote it ran as __main__.
    atomic_save(
        {
            "key": key,
            "embeddings": cond.embeddings,
            "tile_captions": cond.tile_captions,
            "empty": cond.empty,
        },
        path,
    )
    return cond


@dataclass
class CaptionSampler:
    """Draws one caption embedding per tile (or the empty prompt, for guidance) on the device:
    no Python loop per sample, so large GPU batches are not held up by the host."""

    embeddings: torch.Tensor  # (num_captions, L, D) on the device, kept in float16
    choices: torch.Tensor  # (num_tiles, max_captions) caption indexes, padded by repetition
    counts: torch.Tensor  # (num_tiles,)
    empty: torch.Tensor  # (L, D), in the dtype the UNet is fed

    @classmethod
    def build(cls, cond: Conditioning, device: torch.device) -> CaptionSampler:
        width = max(len(c) for c in cond.tile_captions)
        choices = torch.tensor([c + c[:1] * (width - len(c)) for c in cond.tile_captions])
        counts = torch.tensor([len(c) for c in cond.tile_captions])
        # float32 on a CPU (no autocast there); the table itself stays float16 (half the memory)
        dtype = torch.float32 if device.type == "cpu" else cond.embeddings.dtype
        return cls(
            cond.embeddings.to(device),
            choices.to(device),
            counts.to(device),
            cond.empty.to(device, dtype),
        )

    def __call__(self, idx: torch.Tensor, dropout: float, gen: torch.Generator) -> torch.Tensor:
        u = torch.rand((2, len(idx)), generator=gen, device=gen.device)
        pick = (u[0] * self.counts[idx]).long()
        rows = self.embeddings[self.choices[idx, pick]].to(self.empty.dtype)
        drop = (u[1] < dropout)[:, None, None]
        return torch.where(drop, self.empty, rows)


def train_unet(
    unet,
    latents: torch.Tensor,
    scaling: float,
    cond: Conditioning,
    cfg: TrainConfig,
    device: torch.device,
    ckpt_path: Path,
    progress: bool,
    on_checkpoint=None,
) -> tuple[object, list[float]]:
    """Epsilon-prediction MSE with AdamW and an EMA copy; returns (EMA model, losses)."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel
    from tqdm import tqdm

    noise_sched = DDPMScheduler(**BETAS)
    unet.to(device).train()
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.unet_lr, weight_decay=1e-2)
    ema = EMAModel(
        unet.parameters(),
        decay=cfg.ema_decay,
        use_ema_warmup=True,
        model_cls=type(unet),
        model_config=unet.config,
    )
    state = load_checkpoint(ckpt_path)
    start, losses = 0, []
    if state is not None:
        unet.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        ema.load_state_dict(state["ema"])
        start, losses = state["step"], state["losses"]
    ema.to(device)
    # Everything a step reads lives on the device, drawn by a generator seeded by the step.
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + start)
    latents = latents.to(device)
    captions = CaptionSampler.build(cond, device)
    n = len(latents)
    bar = tqdm(total=cfg.unet_steps, initial=start, desc="unet", disable=not progress)
    t0 = time.perf_counter()
    probe = (start + 10, start + 40)  # steps timed to size a --minutes budget (after warm-up)
    step, pending = start, []
    while step < cfg.unet_steps:
        if cfg.unet_minutes > 0 and step in probe:
            if step == probe[0]:
                t_probe = time.perf_counter()
            else:
                per_step = (time.perf_counter() - t_probe) / (probe[1] - probe[0])
                left = cfg.unet_minutes * 60 - (time.perf_counter() - t0)
                cfg.unet_steps = max(step + 1, step + int(left / per_step))
                bar.total = cfg.unet_steps
                log.info(
                    "%.1f ms/step: %d steps fit in %.1f min",
                    per_step * 1e3,
                    cfg.unet_steps,
                    cfg.unet_minutes,
                )
        set_lr(opt, lr_at(step, cfg.unet_steps, cfg.unet_lr, cfg.warmup))
        idx = torch.randint(0, n, (cfg.batch,), generator=gen, device=device)
        mean, std = latents[idx, 0], latents[idx, 1]
        z = (mean + std * torch.randn(mean.shape, generator=gen, device=device)) * scaling
        noise = torch.randn(z.shape, generator=gen, device=device)
        t = torch.randint(
            0, noise_sched.config.num_train_timesteps, (len(idx),), generator=gen, device=device
        )
        noisy = noise_sched.add_noise(z, noise, t)
        text = captions(idx, cfg.caption_dropout, gen)
        with autocast(device):
            pred = unet(noisy, t, text).sample
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.step(unet.parameters())
        pending.append(loss.detach())
        step += 1
        bar.update()
        checkpoint = step % cfg.checkpoint_every == 0 or step == cfg.unet_steps
        if step % 10 == 0 or checkpoint:  # reading a loss syncs with a GPU: not every step
            losses += torch.stack(pending).tolist()
            pending.clear()
            recent = losses[-50:]
            rate = (step - start) * cfg.batch / (time.perf_counter() - t0)
            bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}", samples_s=f"{rate:.1f}")
        if checkpoint:
            atomic_save(
                {
                    "model": unet.state_dict(),
                    "opt": opt.state_dict(),
                    "ema": ema.state_dict(),
                    "step": step,
                    "losses": losses,
                },
                ckpt_path,
            )
            if on_checkpoint is not None and (
                step % cfg.sample_every == 0 or step == cfg.unet_steps
            ):
                on_checkpoint(step, ema_model(ema, unet))
    bar.close()
    return ema_model(ema, unet), losses


def ema_model(ema, unet):
    """A copy of ``unet`` carrying the EMA weights (the training weights stay untouched)."""
    import copy

    model = copy.deepcopy(unet).eval()
    ema.copy_to(model.parameters())
    return model


# --- export ----------------------------------------------------------------------------------


def export_pipeline(
    out: Path,
    vae,
    unet,
    text: TextSide,
    params: SpectrogramParams,
    tile_width: int,
    defaults: Defaults,
) -> Path:
    """Write a Stable-Diffusion-format folder (+ jam params and defaults); atomic swap-in."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    from jam import textenc
    from jam.diffusion import ModelDefaults

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
    for config in tmp.glob(
        "*/config.json"
    ):  # no local paths (of an --init model) in a shipped folder
        data = json.loads(config.read_text())
        if data.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(data, indent=2) + "\n")
    params.save(tmp)
    ModelDefaults(tile_width, defaults.steps, defaults.strength, defaults.guidance).save(tmp)
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


def plot_losses(curves: dict[str, list[float]], path: Path, size=(900, 300)) -> None:
    """A small log-scale loss chart (one panel per curve), drawn with Pillow."""
    from PIL import Image, ImageDraw

    curves = {k: v for k, v in curves.items() if v}
    w, h = size
    img = Image.new("RGB", (w, h * max(len(curves), 1)), "white")
    draw = ImageDraw.Draw(img)
    for row, (name, values) in enumerate(curves.items()):
        window = max(1, len(values) // 200)
        smooth = [
            sum(values[i : i + window]) / len(values[i : i + window])
            for i in range(0, len(values), window)
        ]
        logs = [math.log10(max(v, 1e-8)) for v in smooth]
        lo, hi = min(logs), max(logs)
        top, pad = row * h, 30
        points = [
            (
                pad + (w - 2 * pad) * i / max(len(logs) - 1, 1),
                top + pad + (h - 2 * pad) * (hi - v) / max(hi - lo, 1e-9),
            )
            for i, v in enumerate(logs)
        ]
        draw.rectangle([pad, top + pad, w - pad, top + h - pad], outline="grey")
        draw.line(points, fill="navy", width=2)
        draw.text(
            (pad, top + 8),
            f"{name}: {smooth[0]:.4f} -> {smooth[-1]:.4f} over {len(values)} steps (log scale)",
            fill="black",
        )
    img.save(path)


def render_samples(
    model_dir: Path, out_dir: Path, tag: str, prompts=SAMPLE_PROMPTS, device: str = "cpu"
) -> None:
    """Spectrogram PNGs and WAVs of a few prompts, through the real engine."""
    from jam.audio_io import write_wav
    from jam.diffusion import load_engine

    engine = load_engine(model_dir, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    tiles = engine.render([engine.request(p, seed=i) for i, p in enumerate(prompts)])
    for p, tile in zip(prompts, tiles, strict=True):
        name = f"{tag}_{'_'.join(p.split()[:3])}"
        tile.image.save(out_dir / f"{name}.png")
        write_wav(out_dir / f"{name}.wav", tile.audio, engine.params.sample_rate)


# --- the whole run ---------------------------------------------------------------------------


def load_init(init: Path):
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
    defaults: Defaults = Defaults(),
    init: Path | None = None,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
    samples: bool = True,
) -> dict:
    """Train and export; returns a summary (losses, timings). Work files live in ``out/../``."""
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
    tiles = cached_tiles(items, params, cfg.tile_width, work / "tiles.pt", progress)
    log.info("%d files -> %d tiles of %d frames", len(items), len(tiles), cfg.tile_width)

    if init is not None:
        vae, unet = load_init(init)
    else:
        vae, unet = new_vae(), None
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
        unet = new_unet(text.dim, latent_hw, cfg.unet_channels)
    elif unet.config.cross_attention_dim != text.dim:
        raise DatasetError(
            f"--init UNet expects {unet.config.cross_attention_dim}-d text embeddings; "
            f"its text encoder gives {text.dim}"
        )

    def checkpoint_export(step: int, model) -> None:
        export_pipeline(out, vae, model, text, params, cfg.tile_width, defaults)
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
    export_pipeline(out, vae, model, text, params, cfg.tile_width, defaults)
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


def parse_params(text: str | None) -> SpectrogramParams:
    """``--params``: a JSON file, a folder holding spectrogram_params.json, or k=v pairs."""
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


def train_main(argv: list[str] | None = None) -> int:
    """`jam train DATA_DIR -o MODEL_DIR`: train (or fine-tune with --init) a jam model."""
    p = argparse.ArgumentParser(prog="jam train", description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="folder of audio (+ captions.jsonl/.csv/.json)")
    p.add_argument("-o", "--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--init", type=Path, help="diffusers folder to fine-tune (e.g. SD-1.x)")
    p.add_argument("--params", help="spectrogram params: JSON file, model folder or k=v,k=v")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--steps", type=int, default=TrainConfig.unet_steps, help="UNet steps")
    p.add_argument(
        "--vae-steps",
        type=int,
        help=f"autoencoder steps (default {TrainConfig.vae_steps}; 0 with --init)",
    )
    p.add_argument(
        "--decoder-only",
        action="store_true",
        help="with --init: train only the autoencoder's decoder (latents and UNet stay valid)",
    )
    p.add_argument("--vae-lr", type=float, default=TrainConfig.vae_lr)
    p.add_argument(
        "--sharpness",
        type=float,
        default=TrainConfig.sharpness,
        help="autoencoder: weight of an L1 loss on mel/time differences (keeps harmonics sharp)",
    )
    p.add_argument("--batch", type=int, default=TrainConfig.batch)
    p.add_argument("--vae-batch", type=int, default=TrainConfig.vae_batch)
    p.add_argument(
        "--minutes",
        type=float,
        default=0.0,
        help="UNet phase time budget: --steps becomes what fits, measured after 40 steps",
    )
    p.add_argument("--lr", type=float, default=TrainConfig.unet_lr)
    p.add_argument("--checkpoint-every", type=int, default=TrainConfig.checkpoint_every)
    p.add_argument("--sample-every", type=int, default=TrainConfig.sample_every)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--no-samples", action="store_true", help="skip sample renders")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("jam train: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    cfg = TrainConfig(
        unet_steps=args.steps,
        vae_steps=args.vae_steps
        if args.vae_steps is not None
        else (0 if args.init else TrainConfig.vae_steps),
        batch=args.batch,
        vae_batch=args.vae_batch,
        unet_minutes=args.minutes,
        unet_lr=args.lr,
        checkpoint_every=args.checkpoint_every,
        sample_every=args.sample_every,
        train_vae=args.init is None or bool(args.vae_steps),
        decoder_only=args.decoder_only,
        sharpness=args.sharpness,
        vae_lr=args.vae_lr,
    )
    if args.decoder_only and (args.init is None or not args.vae_steps):
        print("jam train: --decoder-only needs --init and --vae-steps", file=sys.stderr)
        return 2
    try:
        summary = train(
            args.data,
            args.out,
            cfg,
            parse_params(args.params),
            init=args.init,
            device=args.device,
            resume=args.resume,
            samples=not args.no_samples,
        )
    except (DatasetError, ValueError) as e:
        print(f"jam train: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
