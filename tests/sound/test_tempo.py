"""Tempo by stretching the spectrogram's time axis before inversion, through the real codec
(mel spectrogram, pseudo-inverse mel, Griffin-Lim): the beats move, the pitch stays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jam.model.folder import DEFAULT_MODEL_DIR
from jam.sound.params import SpectrogramParams
from jam.sound.spectrogram import converter
from jam.sound.tempo import loop_frames, loop_tail, stretch_time, stretched_width

PARAMS = SpectrogramParams.load(DEFAULT_MODEL_DIR)  # the embedded model's codec
WIDTH = 512
BEATS = 8


def loop(bpm_native: float) -> tuple[torch.Tensor, int]:
    """A tile: a 440 Hz tone, and a noise burst on every beat."""
    sr = PARAMS.sample_rate
    n = PARAMS.num_samples(WIDTH)
    t = torch.arange(n) / sr
    audio = 0.3 * torch.sin(2 * torch.pi * 440.0 * t)
    beat = n / BEATS
    gen = torch.Generator().manual_seed(0)
    for k in range(BEATS):
        at = round(k * beat)
        burst = torch.randn(400, generator=gen) * torch.linspace(1, 0, 400)
        audio[at : at + 400] += 0.8 * burst
    return audio[None], n


def onsets(audio: np.ndarray, sr: int) -> np.ndarray:
    """Times (s) where the 10 ms energy jumps well above what came before."""
    win = sr // 100
    e = (audio[: audio.size // win * win].reshape(-1, win) ** 2).mean(1)
    rise = np.diff(e, prepend=0.0)
    peaks = np.flatnonzero((rise > 0.3 * rise.max()) & (rise >= np.roll(rise, 1)))
    kept = [p for i, p in enumerate(peaks) if i == 0 or p - peaks[i - 1] > 5]
    return np.array(kept) * win / sr


def test_stretched_width_scales_the_span_of_the_tile_exactly():
    assert stretched_width(512, 94.0, 94.0) == 512
    assert stretched_width(512, 94.0, 188.0) == 257  # 511 hops -> 255.5 -> 256 hops
    assert PARAMS.num_samples(stretched_width(512, 120.0, 60.0)) == 2 * PARAMS.num_samples(512)
    with pytest.raises(ValueError):
        stretched_width(512, 94.0, 0.0)


def test_stretch_keeps_the_first_and_last_frames_in_place():
    spec = torch.arange(10.0).reshape(1, 1, 10).repeat(1, 3, 1)
    out = stretch_time(spec, 19)
    assert out.shape == (1, 3, 19)
    assert out[..., 0].eq(0).all() and out[..., -1].eq(9).all()
    torch.testing.assert_close(out[0, 0, ::2], torch.arange(10.0))


@pytest.mark.parametrize("bpm", [70.0, 140.0])
def test_a_stretched_tile_plays_its_beats_at_the_new_tempo_at_the_same_pitch(bpm):
    sr = PARAMS.sample_rate
    audio, n = loop(0.0)
    native = BEATS * 60 * sr / n
    codec = converter(PARAMS)
    mel = codec.spectrogram_from_audio(audio)
    width = stretched_width(mel.shape[-1], native, bpm)
    with torch.random.fork_rng():  # Griffin-Lim's random start (some starts lose an onset)
        torch.manual_seed(0)
        out = codec.audio_from_spectrogram(stretch_time(mel, width))[0].numpy()
    assert out.size == PARAMS.num_samples(width)
    assert out.size / sr == pytest.approx(BEATS * 60 / bpm, rel=0.01)
    times = onsets(out, sr)
    assert len(times) == BEATS
    np.testing.assert_allclose(np.diff(times), 60 / bpm, atol=0.015)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    peak = np.fft.rfftfreq(out.size, 1 / sr)[spectrum.argmax()]
    assert peak == pytest.approx(440.0, rel=0.01), "the pitch moved with the tempo"


def rms_10ms(audio: np.ndarray, sr: int) -> np.ndarray:
    win = sr // 100
    return np.sqrt((audio[: audio.size // win * win].reshape(-1, win) ** 2).mean(1))


def test_loop_tail_replays_the_last_bar_from_just_before_its_downbeat():
    mel = torch.arange(WIDTH, dtype=torch.float32).expand(2, 3, WIDTH)
    out = loop_tail(mel, BEATS, 1, lead=4)
    assert out.shape[-1] == loop_frames(WIDTH, BEATS, 1) == WIDTH + 64
    bar_line = WIDTH - 1  # where the tile's last column falls: the next downbeat
    last_bar = round((WIDTH - 1) * (BEATS - 4) / BEATS)
    assert torch.equal(out[..., : bar_line - 4], mel[..., : bar_line - 4])
    assert out[0, 0, bar_line].item() == last_bar
    assert torch.equal(out[..., bar_line - 4 :], mel[..., last_bar - 4 : last_bar + 65])
    assert loop_tail(mel, BEATS, 0) is mel
    with pytest.raises(ValueError):
        loop_tail(mel, BEATS, 5)  # more than the last bar holds


def test_a_looped_tile_plays_on_over_its_bar_line_on_the_beat_and_without_a_dip():
    """Through the real codec: a tile faded at its ends, as training clips are, plays a ninth
    beat on the grid, and the 10 ms around its bar line are as loud as the rest; wrapping to
    the tile's very start instead (no lead) leaves the faded edge there, a dip."""
    sr = PARAMS.sample_rate
    audio, n = loop(0.0)
    fade = sr // 100
    audio[:, :fade] *= torch.linspace(0, 1, fade)
    audio[:, -fade:] *= torch.linspace(1, 0, fade)
    codec = converter(PARAMS)
    mel = codec.spectrogram_from_audio(audio)
    beat_s = n / BEATS / sr
    quietest = {}
    for lead in (4, 0):
        with torch.random.fork_rng():  # Griffin-Lim's random start
            torch.manual_seed(0)
            out = codec.audio_from_spectrogram(loop_tail(mel, BEATS, 1, lead=lead))[0].numpy()
        assert out.size == PARAMS.num_samples(loop_frames(mel.shape[-1], BEATS, 1))
        beats = onsets(out, sr) / beat_s  # (the faded-in first burst may not count)
        assert set(np.round(beats).astype(int)) >= set(range(1, BEATS + 1))
        np.testing.assert_allclose(beats, np.round(beats), atol=0.025 / beat_s)
        rms = rms_10ms(out, sr)
        at = round(n / (sr // 100))  # the 10 ms frame of the bar line
        near = rms[at - 5 : at + 5]
        quietest[lead] = near.min() / np.percentile(np.delete(rms, range(at - 5, at + 5)), 5)
    assert quietest[4] >= 0.9, quietest
    assert quietest[0] < quietest[4], quietest
