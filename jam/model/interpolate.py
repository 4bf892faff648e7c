"""Interpolation between two endpoints in latent space (pure torch; device/dtype follow input)."""

from __future__ import annotations

import torch


def lerp(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.lerp(a, b, alpha)


def slerp(
    a: torch.Tensor, b: torch.Tensor, alpha: float, dot_threshold: float = 0.9995
) -> torch.Tensor:
    """Spherical interpolation of two noise tensors, keeping the result Gaussian-shaped.

    A straight lerp between two independent Gaussians shrinks the norm at the midpoint (by up
    to sqrt(2)), which the denoiser reads as less noise; slerp keeps it. Nearly parallel inputs
    fall back to lerp, where slerp's division is ill-conditioned.
    """
    a32, b32 = a.to(torch.float32), b.to(torch.float32)
    dot = torch.sum(a32 * b32) / (torch.linalg.vector_norm(a32) * torch.linalg.vector_norm(b32))
    if torch.abs(dot) > dot_threshold:
        return torch.lerp(a32, b32, alpha).to(a.dtype)
    theta = torch.arccos(dot)
    sin_theta = torch.sin(theta)
    wa = torch.sin((1 - alpha) * theta) / sin_theta
    wb = torch.sin(alpha * theta) / sin_theta
    return (wa * a32 + wb * b32).to(a.dtype)


def seeded_noise(
    seed: int, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Gaussian noise fixed by ``seed`` alone: drawn on the CPU so every device gets the same."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device, dtype)
