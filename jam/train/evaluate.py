"""Judging a jam model honestly: a style classifier trained on real rendered clips, then asked
what the model generates for wordings it never trained on.

The classifier is a small CNN on the spectrogram image (the same pixels the engine produces),
trained on corpus clips and scored first on real clips it never saw: that accuracy is the
ceiling any generated tile can be judged against. Prompt adherence is its accuracy on tiles
generated for held-out wordings, also stated as a ratio to the real-clip ceiling. Its pooled
features give a Fréchet distance between generated and real tiles; per-mel-row mean and std of
the pixels give a distance that needs no classifier at all.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# --- the classifier --------------------------------------------------------------------------


class StyleCNN(nn.Module):
    """Four conv blocks over a 2x/4x (mel/time) downsampled spectrogram, mean+max pooled."""

    def __init__(self, n_classes: int, width: int = 32) -> None:
        super().__init__()
        chans = (1, width, width * 2, width * 4, width * 4)
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(chans):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(chans[-1] * 2, n_classes))

    @staticmethod
    def prepare(pixels: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, H, W)`` image rows -> float ``(B, 1, H/2, W/4)``, dark = loud."""
        x = 1.0 - pixels.to(torch.float32).unsqueeze(1) / 255.0
        return F.avg_pool2d(x, (2, 4))

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        h = self.features(self.prepare(pixels))
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(pixels))


@dataclass
class StyleClassifier:
    model: StyleCNN
    styles: list[str]

    @torch.inference_mode()
    def probabilities(self, pixels: torch.Tensor, batch: int = 64) -> torch.Tensor:
        self.model.eval()
        return torch.cat(
            [self.model(pixels[i : i + batch]).softmax(-1) for i in range(0, len(pixels), batch)]
        )

    @torch.inference_mode()
    def embeddings(self, pixels: torch.Tensor, batch: int = 64) -> torch.Tensor:
        self.model.eval()
        return torch.cat(
            [self.model.embed(pixels[i : i + batch]) for i in range(0, len(pixels), batch)]
        )

    def accuracy(self, pixels: torch.Tensor, labels: Sequence[str]) -> float:
        pred = self.probabilities(pixels).argmax(-1).tolist()
        return sum(self.styles[p] == s for p, s in zip(pred, labels, strict=True)) / len(labels)

    def save(self, path) -> None:
        torch.save({"state": self.model.state_dict(), "styles": self.styles}, path)

    @classmethod
    def load(cls, path) -> StyleClassifier:
        data = torch.load(path, weights_only=False)
        model = StyleCNN(len(data["styles"]))
        model.load_state_dict(data["state"])
        return cls(model.eval(), data["styles"])


def is_test_clip(name: str, fraction: float = 0.15) -> bool:
    """A stable clip-level split: the same file is always on the same side."""
    digest = hashlib.sha1(name.encode()).digest()
    return digest[0] / 256 < fraction


def train_classifier(
    pixels: torch.Tensor,
    labels: Sequence[str],
    epochs: int = 12,
    batch: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> StyleClassifier:
    """Cross-entropy with time-shift augmentation (tiles start anywhere in a bar)."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    styles = sorted(set(labels))
    y = torch.tensor([styles.index(s) for s in labels])
    model = StyleCNN(len(styles))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
    steps = epochs * math.ceil(len(y) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(total=steps, desc="style classifier", disable=not progress)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch):
            idx = order[i : i + batch]
            shift = int(torch.randint(0, pixels.shape[-1], (1,), generator=gen))
            x = pixels[idx].roll(shift, dims=-1)
            loss = F.cross_entropy(model(x), y[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return StyleClassifier(model.eval(), styles)


# --- distances -------------------------------------------------------------------------------


def row_stats(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mel-row mean and std of darkness (0 silent .. 1 loudest) over a set of tiles."""
    x = 1.0 - pixels.to(torch.float32) / 255.0
    return x.mean(dim=(0, 2)), x.std(dim=2).mean(dim=0)


def row_stats_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference of per-row means and per-row stds (darkness units, 0..1)."""
    (ma, sa), (mb, sb) = row_stats(a), row_stats(b)
    return float(((ma - mb).abs().mean() + (sa - sb).abs().mean()) / 2)


def frechet_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two embedding sets (as FID does)."""
    x, y = x.double(), y.double()
    mx, my = x.mean(0), y.mean(0)
    cx, cy = torch.cov(x.T), torch.cov(y.T)
    # sqrt(cx^1/2 cy cx^1/2) has the trace of sqrtm(cx cy) and stays symmetric PSD.
    ex, vx = torch.linalg.eigh(cx)
    root_x = vx @ torch.diag(ex.clamp(min=0).sqrt()) @ vx.T
    inner = torch.linalg.eigvalsh(root_x @ cy @ root_x).clamp(min=0).sqrt().sum()
    return float((mx - my).pow(2).sum() + torch.trace(cx) + torch.trace(cy) - 2 * inner)


def monotonic_fraction(values: Sequence[float]) -> float:
    """Share of consecutive steps that move in the overall direction (1.0: monotonic)."""
    if len(values) < 2:
        return 1.0
    sign = 1.0 if values[-1] >= values[0] else -1.0
    steps = [sign * (b - a) for a, b in itertools.pairwise(values)]
    return sum(s >= -1e-3 for s in steps) / len(steps)
