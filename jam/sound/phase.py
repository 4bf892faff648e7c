"""Griffin-Lim that can start from a given phase, so a tile can continue the one before it.

:func:`griffin_lim` is the fast Griffin-Lim with momentum of ``torchaudio.transforms.GriffinLim``
(Perraudin et al. 2013, as torchaudio ports it from librosa): the same update, the same momentum
scaling ``m / (1 + m)``, the same random start (real and imaginary parts uniform in [0, 1)).
torchaudio's takes no initial phase, hence this short loop of our own: ``init_phase`` gives the
starting phase of some or all frames.

Consecutive stream tiles overlap by whole beats and are crossfaded there. Inverted from random
phase, the two tiles' waveforms over the overlap are unrelated and partly cancel in the
crossfade; started from the previous tile's phase (:func:`carried_phase`: the phase of the
previous tile's *audio* at the new tile's frame positions, so any sample offset works, not only
whole hops), the new tile begins coherent with the one it fades in under.

All functions are pure; device and dtype follow the input tensors.
"""

from __future__ import annotations

import torch


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def random_phase(
    shape: torch.Size | tuple[int, ...],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """torchaudio's random start: complex with real and imaginary parts uniform in [0, 1)
    (so phases in the first quadrant, not uniform on the circle; kept for parity)."""
    return torch.rand(tuple(shape), dtype=_complex_dtype(dtype), device=device, generator=generator)


def griffin_lim(
    magnitude: torch.Tensor,
    window: torch.Tensor,
    n_fft: int,
    hop_length: int,
    n_iter: int,
    momentum: float,
    init_phase: torch.Tensor | None = None,
    length: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Audio ``(..., samples)`` whose STFT magnitude approximates ``magnitude`` ``(..., freq,
    frames)`` (a linear magnitude, ``freq = n_fft // 2 + 1``).

    ``window`` (length = the window length, centred in ``n_fft`` as ``torch.stft`` does) and the
    hop must be those the magnitude was made with. ``init_phase``: complex, the shape of
    ``magnitude``; each entry's angle is where that bin starts, and entries that are exactly
    zero start from :func:`random_phase` as torchaudio's do (None: all random). The frames given
    are not held fixed: every iteration may move them.
    """
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    shape = magnitude.shape
    spec = magnitude.reshape(-1, *shape[-2:])
    angles = random_phase(spec.shape, spec.dtype, spec.device, generator)
    if init_phase is not None:
        if init_phase.shape != shape:
            raise ValueError(f"init_phase {tuple(init_phase.shape)} != magnitude {tuple(shape)}")
        given = init_phase.reshape(spec.shape).to(angles.dtype)
        known = given.abs() > 0
        angles = torch.where(known, given / given.abs().clamp(min=1e-30), angles)
    alpha = momentum / (1 + momentum)
    win = window.to(spec.device, spec.dtype)
    stft = {"n_fft": n_fft, "hop_length": hop_length, "win_length": win.numel(), "window": win}
    previous = None
    for _ in range(n_iter):
        audio = torch.istft(spec * angles, length=length, **stft)
        rebuilt = torch.stft(audio, center=True, pad_mode="reflect", return_complex=True, **stft)
        angles = rebuilt if previous is None or not alpha else rebuilt - alpha * previous
        angles = angles / (angles.abs() + 1e-16)
        previous = rebuilt
    audio = torch.istft(spec * angles, length=length, **stft)
    return audio.reshape(*shape[:-2], audio.shape[-1])


def stft_magnitude(
    audio: torch.Tensor, window: torch.Tensor, n_fft: int, hop_length: int
) -> torch.Tensor:
    """``|STFT|`` ``(..., freq, frames)`` with the conventions :func:`griffin_lim` inverts."""
    win = window.to(audio.device, audio.dtype)
    x = audio.reshape(-1, audio.shape[-1])
    s = torch.stft(
        x, n_fft, hop_length, win.numel(), win, center=True, pad_mode="reflect",
        return_complex=True,
    ).abs()  # fmt: skip
    return s.reshape(*audio.shape[:-1], *s.shape[-2:])


def spectral_convergence(
    magnitude: torch.Tensor,
    audio: torch.Tensor,
    window: torch.Tensor,
    n_fft: int,
    hop_length: int,
    frames: slice = slice(None),
) -> float:
    """``20 log10(‖S - |STFT(audio)|‖ / ‖S‖)`` in dB over ``frames`` (lower is better): how far
    the audio's magnitude is from the one it was inverted from."""
    got = stft_magnitude(audio, window, n_fft, hop_length)
    n = min(got.shape[-1], magnitude.shape[-1])
    target, got = magnitude[..., :n][..., frames], got[..., :n][..., frames]
    err = torch.linalg.vector_norm(target - got) / torch.linalg.vector_norm(target).clamp(min=1e-30)
    return float(20 * torch.log10(err.clamp(min=1e-30)))


def carried_phase(
    previous: torch.Tensor,
    offset: int,
    frames: int,
    window: torch.Tensor,
    n_fft: int,
    hop_length: int,
    first: int = 0,
    last: int | None = None,
) -> torch.Tensor:
    """The phase a new tile should start from, taken from the audio it fades in under.

    ``previous``: that audio ``(..., samples)``; the new tile's frame ``j`` is centred on its
    sample ``offset + j * hop_length`` (``offset``: where the new tile's sample 0 falls in
    ``previous``). Returns complex unit phases ``(..., n_fft // 2 + 1, frames)`` for frames
    ``first .. last - 1`` whose whole window lies inside ``previous``, zero elsewhere (zero =
    unknown: :func:`griffin_lim` starts those at random).
    """
    last = frames if last is None else min(last, frames)
    win = window.to(previous.device, previous.dtype)
    half = n_fft // 2
    lo = max(first, -((offset - half) // hop_length))  # first frame starting at sample >= 0
    hi = min(last, (previous.shape[-1] - n_fft - offset + half) // hop_length + 1)
    lead = previous.shape[:-1]
    out = torch.zeros(
        (*lead, n_fft // 2 + 1, frames), dtype=_complex_dtype(previous.dtype),
        device=previous.device,
    )  # fmt: skip
    if hi <= lo:
        return out
    a = offset - half + lo * hop_length
    chunk = previous.reshape(-1, previous.shape[-1])[:, a : a + (hi - lo - 1) * hop_length + n_fft]
    spec = torch.stft(chunk, n_fft, hop_length, win.numel(), win, center=False, return_complex=True)
    unit = spec / (spec.abs() + 1e-16)
    unit = torch.where(spec.abs() > 0, unit, torch.ones_like(unit))  # silence: phase 0, known
    out[..., lo:hi] = unit.reshape(*lead, *unit.shape[-2:])
    return out
