"""How jam's model learns: the two training phases, each resumable from an atomic checkpoint.

A small ``AutoencoderKL`` (8x downsampling) learns to reconstruct spectrogram images (random
crops: it is convolutional, and crops train it 4x faster), then a ``UNet2DConditionModel`` learns
epsilon prediction on the autoencoder's latents with Stable Diffusion's scaled-linear betas,
conditioned on a frozen text encoder's hidden states, with ~10% of captions dropped for
classifier-free guidance, and an EMA copy of its weights is what gets exported. Latents and text
embeddings are computed once: both models that make them are frozen during UNet training.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from jam.train.config import BETAS, TrainConfig
from jam.train.dataset import TileSet, atomic_save
from jam.train.losses import (
    PatchDiscriminator,
    difference_l1,
    hinge_discriminator,
    hinge_generator,
    spectral_l1,
)

log = logging.getLogger(__name__)

# --- small pure helpers ---------------------------------------------------------------------------


def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, H, W)`` -> float ``(B, 3, H, W)`` in [-1, 1], as the pipeline's processor."""
    x = pixels.to(torch.float32).div(127.5).sub(1.0)
    return x.unsqueeze(1).expand(-1, 3, -1, -1)


def random_crops(pixels: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Same-size time crops (the full height: mel rows are not translation-invariant)."""
    w = pixels.shape[-1]
    starts = torch.randint(0, w - size + 1, (pixels.shape[0],), generator=gen).tolist()
    return torch.stack([p[:, s : s + size] for p, s in zip(pixels, starts, strict=True)])


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(total - warmup, 1)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate (the schedule is computed per step here)."""
    for group in opt.param_groups:
        group["lr"] = lr


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (fp16 where bf16 is unsupported); nothing on the CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


# --- the text side --------------------------------------------------------------------------------


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
        """Hidden states ``(len(texts), L, D)``, exactly as the engine embeds a prompt."""
        from jam.model.textenc import encode

        chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
        return torch.cat([encode(self.tokenizer, self.encoder, c) for c in chunks])


def text_side(init: Path | None) -> TextSide:
    """The init model's own text encoder, else (or when it references one) MiniLM."""
    from jam.model import textenc

    if init is not None and not textenc.referenced_components(init):
        from transformers import AutoTokenizer, CLIPTextModel

        tok = AutoTokenizer.from_pretrained(str(init / "tokenizer"))
        enc = CLIPTextModel.from_pretrained(str(init / "text_encoder")).eval().requires_grad_(False)
        return TextSide(tok, enc, referenced=False)
    return TextSide(textenc.load_tokenizer(), textenc.load_text_encoder(), referenced=True)


# --- checkpoints ----------------------------------------------------------------------------------


def load_checkpoint(path: Path) -> dict | None:
    """A checkpoint written by :func:`jam.train.dataset.atomic_save`, or None before the first."""
    return torch.load(path, weights_only=False) if path.is_file() else None


# --- phase 1: the autoencoder ---------------------------------------------------------------------


ADAPT_EVERY = 10  # autoencoder steps between refreshes of the adversarial balance


def adaptive_weight(rec: torch.Tensor, adv: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """VQGAN's balance: scale the adversarial term so its gradient at the decoder's last layer
    is as large as the reconstruction's (neither drowns the other, whatever their units)."""
    g_rec = torch.autograd.grad(rec, last, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adv, last, retain_graph=True)[0]
    return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, 1e4).detach()


def train_vae(
    vae, tiles: TileSet, cfg: TrainConfig, device: torch.device, ckpt_path: Path, progress: bool
) -> list[float]:
    """Reconstruction (L1) + a tiny KL term on random crops, plus what keeps lines sharp
    (:mod:`jam.train.losses`: ``cfg.sharpness``, ``cfg.spectral``, and from
    ``cfg.adversarial_start`` a patch discriminator weighted by ``cfg.adversarial``); returns
    the L1 history.

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
    disc = PatchDiscriminator().to(device) if cfg.adversarial else None
    disc_opt = (
        torch.optim.AdamW(disc.parameters(), lr=cfg.vae_lr, betas=(0.5, 0.9), weight_decay=0.0)
        if disc is not None
        else None
    )
    state = load_checkpoint(ckpt_path)
    start, losses = 0, []
    if state is not None:
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start, losses = state["step"], state["losses"]
        if disc is not None and "disc" in state:
            disc.load_state_dict(state["disc"])
            disc_opt.load_state_dict(state["disc_opt"])
    gen = torch.Generator().manual_seed(cfg.seed + start)
    crop = min(cfg.vae_crop, tiles.pixels.shape[-1])
    last = vae.decoder.conv_out.weight
    weight: torch.Tensor | None = None  # the adversarial term's balance, refreshed now and then
    bar = tqdm(range(start, cfg.vae_steps), desc="autoencoder", disable=not progress)
    for step in bar:
        lr = lr_at(step, cfg.vae_steps, cfg.vae_lr, cfg.warmup // 2)
        set_lr(opt, lr)
        idx = torch.randint(0, len(tiles), (cfg.vae_batch,), generator=gen)
        x = to_model_range(random_crops(tiles.pixels[idx], crop, gen)).to(device)
        with autocast(device):
            with torch.set_grad_enabled(not cfg.decoder_only):
                posterior = vae.encode(x).latent_dist
            recon = vae.decode(posterior.sample(generator=None)).sample
        recon = recon.float()
        rec = F.l1_loss(recon, x)
        loss = rec if cfg.decoder_only else rec + cfg.kl_weight * posterior.kl().mean()
        if cfg.sharpness:
            loss = loss + cfg.sharpness * difference_l1(recon, x)
        if cfg.spectral:
            loss = loss + cfg.spectral * spectral_l1(recon.mean(1), x[:, 0])
        judged = disc is not None and step >= cfg.adversarial_start
        if judged:
            disc.requires_grad_(False)
            adv = hinge_generator(disc(recon.mean(1, keepdim=True)))
            if weight is None or step % ADAPT_EVERY == 0:  # two extra backward passes: not always
                weight = adaptive_weight(loss, adv, last)
            loss = loss + cfg.adversarial * weight * adv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if judged:
            disc.requires_grad_(True)
            set_lr(disc_opt, lr)
            d_loss = hinge_discriminator(disc(x[:, :1]), disc(recon.detach().mean(1, keepdim=True)))
            disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            disc_opt.step()
        losses.append(rec.item())
        bar.set_postfix(l1=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}")
        done = step + 1
        if done % cfg.checkpoint_every == 0 or done == cfg.vae_steps:
            saved = {"model": vae.state_dict(), "opt": opt.state_dict(), "step": done}
            if disc is not None:
                saved |= {"disc": disc.state_dict(), "disc_opt": disc_opt.state_dict()}
            atomic_save(saved | {"losses": losses}, ckpt_path)
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


# --- phase 2: the UNet ----------------------------------------------------------------------------


@dataclass
class Conditioning:
    """Every training caption's embedding plus, per tile, which captions belong to it."""

    embeddings: torch.Tensor  # (num_captions, L, D) float16
    tile_captions: list[list[int]]
    empty: torch.Tensor  # (L, D): the unconditional embedding the engine uses ("")


def conditioning(tiles: TileSet, text: TextSide) -> Conditioning:
    """Embed every caption once: the text encoder is frozen, so per-step encoding would only
    repeat the same numbers."""
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
    on_checkpoint: Callable[[int, object], None] | None = None,
) -> tuple[object, list[float]]:
    """Epsilon-prediction MSE with AdamW and an EMA copy; returns (EMA model, losses).

    ``on_checkpoint(step, ema_model)`` runs at every ``sample_every``-th checkpoint (the run
    exports and renders samples there). With ``cfg.unet_minutes`` the step count is reset, in
    ``cfg`` itself, from the speed measured over steps 10-40, so the schedule fits the budget.
    """
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
