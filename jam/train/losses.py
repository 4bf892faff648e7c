"""What the autoencoder is scored on besides plain L1: the losses a blur cannot satisfy.

An L1 (or MSE) reconstruction is minimised by the average of what the latent cannot pin down,
which on a spectrogram is a harmonic line smeared over its neighbours. Three terms push back:

- :func:`difference_l1`: neighbour differences along mel rows and time frames (a gradient
  loss, as in video prediction): an edge must be an edge.
- :func:`spectral_l1`: multi-resolution spectra *along each axis* of the image (the STFT loss
  of neural vocoders, applied to a column's mel profile and a row's envelope): a comb of
  harmonics has energy at high "quefrency", a blurred column has none.
- :class:`PatchDiscriminator` with hinge losses (pix2pix's PatchGAN, as Stable Diffusion's
  autoencoder was trained): sharp, plausible texture where the latent leaves a choice.

Pure functions of the input tensors (device and dtype follow them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SPECTRAL_SIZES = (16, 32, 64)


def difference_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 between neighbour differences along mel rows and time frames: plain L1 is satisfied by
    a blur, this term is not."""
    return F.l1_loss(a.diff(dim=-2), b.diff(dim=-2)) + F.l1_loss(a.diff(dim=-1), b.diff(dim=-1))


def _axis_spectra(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Magnitude STFTs of every line of ``x`` along ``dim`` (Hann window ``size``, hop
    ``size // 4``): ``(lines, size // 2 + 1, windows)``."""
    lines = x.movedim(dim, -1).reshape(-1, x.shape[dim])
    window = torch.hann_window(size, device=x.device, dtype=x.dtype)
    spec = torch.stft(lines, size, size // 4, window=window, center=False, return_complex=True)
    return spec.abs()


def spectral_l1(
    a: torch.Tensor, b: torch.Tensor, sizes: tuple[int, ...] = SPECTRAL_SIZES
) -> torch.Tensor:
    """Multi-resolution spectral loss of ``a`` against ``b`` (images ``(..., H, W)``), along
    mel (columns) and time (rows): spectral convergence plus L1 of log magnitudes, averaged
    over the window sizes that fit each axis."""
    terms = []
    for dim in (-2, -1):
        for size in sizes:
            if size > a.shape[dim]:
                continue
            sa, sb = _axis_spectra(a.float(), dim, size), _axis_spectra(b.float(), dim, size)
            convergence = torch.linalg.norm(sb - sa) / torch.linalg.norm(sb).clamp_min(1e-6)
            log_mag = F.l1_loss(torch.log(sa + 1e-4), torch.log(sb + 1e-4))
            terms.append(convergence + log_mag)
    if not terms:
        raise ValueError(f"no window of {sizes} fits an image of {tuple(a.shape[-2:])}")
    return torch.stack(terms).mean()


class PatchDiscriminator(nn.Module):
    """Real or reconstructed, judged per ~30x30-pixel patch of a mel image ``(B, 1, H, W)``
    (a logit map, not one number: it scores texture, not composition)."""

    def __init__(self, channels: int = 32, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(1, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = channels
        for i in range(1, layers):
            stride = 2 if i < layers - 1 else 1
            mods += [
                nn.Conv2d(c, c * 2, 4, stride, 1),
                nn.GroupNorm(8, c * 2),
                nn.LeakyReLU(0.2),
            ]
            c *= 2
        mods.append(nn.Conv2d(c, 1, 3, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def hinge_discriminator(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's hinge loss on logit maps of real and reconstructed patches."""
    return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())


def hinge_generator(fake: torch.Tensor) -> torch.Tensor:
    """The autoencoder's side: make reconstructed patches score as real."""
    return -fake.mean()
