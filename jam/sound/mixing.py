"""Mixing the stream: crossfades, loudness levelling, limiting (pure torch functions)."""

from __future__ import annotations

import math

import torch

TARGET_RMS_DB = -20.0  # level the stream sits at
LIMIT_CEILING = 0.7  # per tile; two tiles in an equal-power crossfade stay below 0.99
MIN_RMS_DB = -70.0  # quieter than this is silence: don't chase it with gain
MAX_GAIN_DB = 30.0


def db(x: float) -> float:
    return 20.0 * math.log10(max(x, 1e-12))


def rms_db(audio: torch.Tensor) -> float:
    return db(float(torch.sqrt(torch.mean(audio.to(torch.float32) ** 2))))


def equal_power_weights(position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fade-out, fade-in) gains at ``position`` in [0, 1] through a crossfade.

    cos/sin keeps the summed power of two uncorrelated signals constant, so the seam neither
    dips nor swells the way a linear fade does.
    """
    theta = position.clamp(0, 1) * (math.pi / 2)
    return torch.cos(theta), torch.sin(theta)


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Normalised correlation of two equally shaped signals (0 for silence): 1 coherent, 0
    unrelated, below 0 they partly cancel when summed."""
    norm = float(torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b))
    return float((a * b).sum()) / norm if norm > 0 else 0.0


def coherent_weights(
    position: torch.Tensor, correlation: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fade-out, fade-in) gains that keep the level of two signals of equal power and this
    ``correlation`` in [0, 1]: :func:`equal_power_weights` scaled by ``1 / sqrt(1 + 2 r w_out
    w_in)``, the sum's power then being constant.

    0 is the equal-power fade exactly; 1 is an equal-gain fade (the gains sum to 1), right for
    identical signals. A tile inverted from its predecessor's phase lies between (about 0.1 to
    0.4 with the embedded model), where either fixed law is off by a decibel or more.
    """
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must be in [0, 1], got {correlation}")
    w_out, w_in = equal_power_weights(position)
    if not correlation:
        return w_out, w_in
    norm = torch.rsqrt(1 + 2 * correlation * w_out * w_in)
    return w_out * norm, w_in * norm


def follow_gain_db(previous_db: float | None, tile_rms_db: float, fraction: float = 0.75) -> float:
    """Next tile's gain (dB) from a slow follower toward the target level.

    Moves ``fraction`` of the way each tile instead of normalising every tile outright, so a
    genuinely louder passage stays somewhat louder and nothing pumps at the seams.
    """
    wanted = TARGET_RMS_DB - max(tile_rms_db, MIN_RMS_DB)
    wanted = min(wanted, MAX_GAIN_DB)
    if previous_db is None:
        return wanted
    return previous_db + fraction * (wanted - previous_db)


def limit(
    audio: torch.Tensor, ceiling: float = LIMIT_CEILING, block: int = 256, release_db: float = 0.1
) -> torch.Tensor:
    """Look-ahead peak limiter for a whole tile: no sample exceeds ``ceiling``, no gain steps.

    Gain is piecewise linear between block boundaries; each boundary takes the smaller of the
    gains its two neighbouring blocks need, so every block's gain stays at or below its own
    need. Gain recovers by at most ``release_db`` per block (a running minimum), so it glides
    back up instead of pumping.
    """
    n = audio.shape[-1]
    blocks = -(-n // block)
    padded = torch.nn.functional.pad(audio.abs().amax(0), (0, blocks * block - n))
    peaks = padded.view(blocks, block).amax(1)
    need = (ceiling / peaks.clamp(min=1e-9)).clamp(max=1.0)  # gain each block needs
    edge = torch.minimum(torch.cat([need[:1], need]), torch.cat([need, need[-1:]]))
    # release: gain may rise at most `step` per block -> G_i = min_j (edge_j + step*(i-j))
    step = 1 - 10 ** (-release_db / 20)
    idx = torch.arange(len(edge), dtype=edge.dtype, device=edge.device)
    edge = torch.cummin(edge - step * idx, 0).values + step * idx
    gain = torch.nn.functional.interpolate(
        edge.view(1, 1, -1), size=blocks * block + 1, mode="linear", align_corners=True
    ).view(-1)[:n]
    return audio * gain.to(audio.dtype)


def level_and_limit(audio: torch.Tensor, gain_db: float) -> torch.Tensor:
    return limit(audio * (10 ** (gain_db / 20)))
