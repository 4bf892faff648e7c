"""Griffin-Lim with a starting phase: torchaudio's algorithm exactly, and a warm start that pays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchaudio

import jam
from jam.seeds.library import SeedLibrary
from jam.sound.params import SpectrogramParams
from jam.sound.phase import (
    carried_phase,
    griffin_lim,
    spectral_convergence,
    stft_magnitude,
)

PARAMS = SpectrogramParams.from_dict(
    json.loads((Path(jam.__file__).parent / "model/default/spectrogram_params.json").read_text())
)
N_FFT, HOP = PARAMS.n_fft, PARAMS.hop_length


@pytest.fixture(scope="module")
def loop() -> torch.Tensor:
    """A real signal: the embedded model's default seed loop (drums, bass, chords), mono."""
    return SeedLibrary(PARAMS, 512).get("four_on_floor").audio[0]


def window() -> torch.Tensor:
    return torch.hann_window(PARAMS.win_length)


def stock(magnitude: torch.Tensor, n_iter: int = 32) -> torch.Tensor:
    gl = torchaudio.transforms.GriffinLim(
        n_fft=N_FFT, n_iter=n_iter, win_length=PARAMS.win_length, hop_length=HOP,
        window_fn=torch.hann_window, power=1.0, momentum=0.99,
    )  # fmt: skip
    return gl(magnitude)


def test_from_the_same_random_start_it_is_torchaudios_griffin_lim_exactly(loop):
    s = stft_magnitude(loop, window(), N_FFT, HOP)
    torch.manual_seed(5)
    theirs = stock(s, n_iter=8)
    torch.manual_seed(5)
    ours = griffin_lim(s, window(), N_FFT, HOP, 8, 0.99)
    assert torch.equal(ours, theirs)


def test_from_random_phase_it_converges_like_torchaudios():
    """Mean linear spectral convergence over four random starts each, on a tonal loop (the
    spread between starts is about 5% there; 15% on a drum loop)."""
    x = SeedLibrary(PARAMS, 512).get("arpeggio").audio[0]
    s = stft_magnitude(x, window(), N_FFT, HOP)

    def linear(audio: torch.Tensor) -> float:
        return 10 ** (spectral_convergence(s, audio, window(), N_FFT, HOP) / 20)

    theirs, ours = [], []
    for k in range(4):
        torch.manual_seed(100 + k)
        theirs.append(linear(stock(s)))
        g = torch.Generator().manual_seed(k)
        ours.append(linear(griffin_lim(s, window(), N_FFT, HOP, 32, 0.99, generator=g)))
    assert sum(theirs) / 4 < 0.15  # -16.5 dB: it does converge
    assert sum(ours) / 4 == pytest.approx(sum(theirs) / 4, rel=0.1)


def test_from_the_true_phase_it_reaches_a_far_lower_spectral_convergence(loop):
    s = stft_magnitude(loop, window(), N_FFT, HOP)
    true = torch.stft(loop, N_FFT, HOP, PARAMS.win_length, window(), return_complex=True)
    cold = spectral_convergence(
        s, griffin_lim(s, window(), N_FFT, HOP, 32, 0.99), window(), N_FFT, HOP
    )
    warm = griffin_lim(s, window(), N_FFT, HOP, 32, 0.99, init_phase=true)
    assert spectral_convergence(s, warm, window(), N_FFT, HOP) < cold - 40


def test_a_warm_start_over_the_first_frames_helps_those_frames(loop):
    """The phase of the first 64 frames given (as a tile's overlap would be), the rest random."""
    s = stft_magnitude(loop, window(), N_FFT, HOP)
    true = torch.stft(loop, N_FFT, HOP, PARAMS.win_length, window(), return_complex=True)
    init = torch.zeros_like(true)
    init[:, :64] = true[:, :64]
    first = slice(0, 64)

    def sc(init_phase):
        g = torch.Generator().manual_seed(3)
        audio = griffin_lim(s, window(), N_FFT, HOP, 32, 0.99, init_phase=init_phase, generator=g)
        return spectral_convergence(s, audio, window(), N_FFT, HOP, frames=first)

    assert sc(init) < sc(None) - 6


def test_carried_phase_is_the_previous_audios_phase_at_the_new_tiles_frames(loop):
    """Tile 2 starts 98368 samples into tile 1 (7 of 8 beats; not a whole number of hops)."""
    stream = torch.cat([loop, loop])
    offset = 98368
    frames = 512
    got = carried_phase(stream[: loop.numel()], offset, frames, window(), N_FFT, HOP, 0, 64)
    tile2 = stream[offset : offset + loop.numel()]
    true = torch.stft(tile2, N_FFT, HOP, PARAMS.win_length, window(), return_complex=True)
    known = got.abs().sum(0) > 0
    # Frames whose window lies inside tile 1: all but the last ones of the overlap.
    assert known.nonzero().view(-1).tolist() == list(range(62))
    unit = true / true.abs().clamp(min=1e-12)
    loud = true.abs() > 1e-3 * true.abs().max()
    inner = slice(3, 62)  # tile 2's own first frames are reflect-padded by torch.stft
    assert (got[:, inner] - unit[:, inner])[loud[:, inner]].abs().max() < 1e-3


def test_carried_phase_knows_nothing_before_the_previous_audio_starts(loop):
    got = carried_phase(loop, -10 * HOP, 20, window(), N_FFT, HOP)
    known = (got.abs().sum(0) > 0).nonzero().view(-1).tolist()
    assert known and known[0] >= 10 + (N_FFT // 2) // HOP
    assert carried_phase(loop, loop.numel(), 20, window(), N_FFT, HOP).abs().sum() == 0


def test_dtype_batch_and_length_follow_the_input(loop):
    x = torch.stack([loop[:20000], loop[20000:40000]]).double()
    s = stft_magnitude(x, window(), N_FFT, HOP)
    out = griffin_lim(s, window(), N_FFT, HOP, 4, 0.99, length=20000)
    assert out.shape == (2, 20000) and out.dtype == torch.float64
    phase = carried_phase(x, 1000, 10, window(), N_FFT, HOP)
    assert phase.shape == (2, N_FFT // 2 + 1, 10) and phase.dtype == torch.complex128


def test_momentum_outside_0_to_1_is_refused(loop):
    s = stft_magnitude(loop[:5000], window(), N_FFT, HOP)
    with pytest.raises(ValueError, match="momentum"):
        griffin_lim(s, window(), N_FFT, HOP, 2, 1.0)
