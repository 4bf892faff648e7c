"""Seed loops: exact length, beat grid, seamless wrap, level, band; the seed library's I/O."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from jam.seeds.library import SeedError, SeedLibrary, UnknownSeedError
from jam.seeds.synth import LOOPS, bpm_for, render_loop
from jam.sound.files import AudioDecodeError, read_audio, write_audio, write_wav
from jam.sound.params import RIFFUSION_V1, ExifTag, SpectrogramParams

OTHER = SpectrogramParams(sample_rate=22050, step_size_ms=8)  # hop 176: another tile length
# Small params for anything that builds a spectrogram converter (the 512-mel one is slow).
SMALL = SpectrogramParams(
    sample_rate=22050, num_frequencies=128, max_frequency=8000, padded_duration_ms=200
)
SETTINGS = [(RIFFUSION_V1, 512), (OTHER, 512)]

# Subdivisions per beat that any onset may fall on, and the beats that carry a kick/pulse.
GRID = {"four_on_floor": 4, "half_time": 4, "shuffle": 3, "breakbeat": 4, "arpeggio": 4, "drone": 1}
PULSE_BEATS = {
    "four_on_floor": range(8),
    "half_time": (0, 4),
    "shuffle": (0, 2, 4, 6),
    "breakbeat": (0, 4),
    "arpeggio": range(8),
    "drone": range(8),
}


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, int, int], np.ndarray]:
    """Every loop at both settings, rendered once for the whole module."""
    out = {}
    for params, width in SETTINGS:
        n = params.num_samples(width)
        for name in LOOPS:
            out[name, params.sample_rate, n] = render_loop(name, params.sample_rate, n)
    return out


def low_band(x: np.ndarray, sr: int, hz: float = 120.0) -> np.ndarray:
    """Kick/pulse band, with a gentle (not brick-wall) edge so onsets do not pre-ring."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / sr)
    return np.fft.irfft(spec * np.clip((1.25 * hz - f) / (0.25 * hz), 0.0, 1.0), len(x))


def onsets(x: np.ndarray, sr: int, ratio: float = 4.0, floor: float = 0.04) -> np.ndarray:
    """Sample positions where low-band energy (4 ms window, 1 ms hop) jumps ``ratio``-fold over
    the 8-30 ms before it. The loop is played twice so an onset at 0 hears the wrapped tail."""
    n, hop = len(x), max(sr // 1000, 1)
    y = np.tile(low_band(x, sr), 2)
    frames = len(y) // hop
    e = (y[: frames * hop].reshape(frames, hop) ** 2).mean(1)
    e = np.convolve(e, np.ones(4) / 4)[:frames]
    c = np.concatenate([[0.0], np.cumsum(e)])
    i = np.arange(frames)
    lo, hi = np.maximum(i - 30, 0), np.maximum(i - 8, 1)
    before = (c[hi] - c[lo]) / np.maximum(hi - lo, 1)
    hot = np.flatnonzero((e > ratio * before) & (e > floor * e.max()))
    found, last = [], -n
    for frame in hot:
        if (frame - last) * hop <= 0.06 * sr:  # one onset per hit
            continue
        last = frame
        s = frame * hop
        if n // 2 <= s < n // 2 + n:
            found.append(s % n)
    return np.array(sorted(found))


def circular_distance(pos: np.ndarray, targets: np.ndarray, n: int) -> np.ndarray:
    """For each position, samples to the nearest target around the loop."""
    d = np.abs(pos[:, None] - targets[None, :]) % n
    return np.minimum(d, n - d).min(axis=1)


@pytest.mark.parametrize(("params", "width"), SETTINGS)
@pytest.mark.parametrize("name", list(LOOPS))
def test_loop_is_exact_tile_length_float32_mono(rendered, name, params, width):
    n = params.num_samples(width)
    audio = rendered[name, params.sample_rate, n]
    assert audio.shape == (n,)
    assert audio.dtype == np.float32
    assert LOOPS[name].beats == 8


@pytest.mark.parametrize(("params", "width"), SETTINGS)
@pytest.mark.parametrize("name", list(LOOPS))
def test_kick_onsets_land_on_beat_grid(rendered, name, params, width):
    sr, n = params.sample_rate, params.num_samples(width)
    found = onsets(rendered[name, sr, n], sr)
    beats = LOOPS[name].beats
    pulses = np.round(np.array(PULSE_BEATS[name]) * n / beats)
    assert found.size, "no onsets detected"
    # Every kick/pulse beat has an onset within ~5 ms (6: the zero-phase band filter lets an
    # onset ring up to ~5 ms early; the events themselves sit on exact sample positions) ...
    assert circular_distance(pulses, found, n).max() <= 0.006 * sr
    # ... and every low-band onset (kicks, 808s, bass notes) sits on the loop's subdivisions.
    grid = np.round(np.arange(beats * GRID[name]) * n / (beats * GRID[name]))
    assert circular_distance(found, grid, n).max() <= 0.010 * sr


@pytest.mark.parametrize(("params", "width"), SETTINGS)
@pytest.mark.parametrize("name", list(LOOPS))
def test_loop_wraps_seamlessly(rendered, name, params, width):
    audio = rendered[name, params.sample_rate, params.num_samples(width)].astype(np.float64)
    steps = np.abs(np.diff(audio))
    assert abs(audio[0] - audio[-1]) <= np.percentile(steps, 99)


@pytest.mark.parametrize("name", list(LOOPS))
def test_level_peak_below_one_and_not_silent(rendered, name):
    audio = rendered[name, 44100, RIFFUSION_V1.num_samples(512)]
    assert 0.3 <= np.abs(audio).max() < 1.0
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 0.03


@pytest.mark.parametrize("name", list(LOOPS))
def test_spectrum_stays_below_10khz(rendered, name):
    audio = rendered[name, 44100, RIFFUSION_V1.num_samples(512)]
    power = np.abs(np.fft.rfft(audio)) ** 2
    f = np.fft.rfftfreq(len(audio), 1 / 44100)
    assert power[f > 10000].sum() < 1e-4 * power.sum()


def test_render_is_deterministic():
    a = render_loop("breakbeat", 22050, 50000)
    assert np.array_equal(a, render_loop("breakbeat", 22050, 50000))


def test_render_loop_unknown_name_lists_known_loops():
    with pytest.raises(ValueError, match="four_on_floor"):
        render_loop("polka", 44100, 1000)


def test_seed_bpm_at_riffusion_tile_is_about_94():
    seed = SeedLibrary(RIFFUSION_V1).get("four_on_floor")
    assert seed.audio.shape == (1, 225351)
    assert seed.bpm == pytest.approx(bpm_for(8, 44100, 225351))
    assert seed.bpm == pytest.approx(93.93, abs=0.01)


def test_seed_image_has_params_height_and_exif():
    seed = SeedLibrary(SMALL, width=128).get("arpeggio")
    image = seed.image
    assert image.size == (128, SMALL.num_frequencies)
    exif = image.getexif()
    assert exif[ExifTag.SAMPLE_RATE] == 22050
    assert exif[ExifTag.NUM_FREQUENCIES] == 128
    assert exif[ExifTag.MAX_VALUE] > 0
    assert SpectrogramParams.from_exif(dict(exif), default=SMALL) == SMALL
    assert np.asarray(image).std() > 10  # a real picture, not a blank


def test_stereo_params_give_two_channel_seeds():
    params = SpectrogramParams(stereo=True, sample_rate=22050)
    seed = SeedLibrary(params, width=64).get("drone")
    assert seed.audio.shape == (2, params.num_samples(64))
    assert torch.equal(seed.audio[0], seed.audio[1])


def test_get_caches_built_loops():
    library = SeedLibrary(OTHER, width=64)
    assert library.get("shuffle") is library.get("shuffle")


def test_unknown_seed_raises_listing_names():
    library = SeedLibrary(OTHER, width=64)
    with pytest.raises(UnknownSeedError) as info:
        library.get("polka")
    message = str(info.value)
    assert "polka" in message
    assert all(name in message for name in LOOPS)
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, ValueError)


def tone(sr: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    mono = 0.4 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t)) / 1.5
    return np.stack([mono] * channels)


def test_user_seed_from_short_stereo_wav_is_looped_to_tile(tmp_path):
    path = tmp_path / "pad loop.wav"
    write_wav(path, tone(48000, 1.3, 2), 48000)
    with wave.open(str(path)) as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (2, 2, 48000)
    library = SeedLibrary(RIFFUSION_V1, user_dir=tmp_path / "seeds")
    seed = library.add_file(path)
    assert seed.name == "pad-loop"
    assert seed.audio.shape == (1, 225351)
    assert seed.audio.dtype == torch.float32
    assert "pad-loop" in library.names()
    # Resampled 220 Hz survives; repetition keeps it playing to the end.
    period = round(44100 * 1.3)
    assert torch.allclose(seed.audio[0, :1000], seed.audio[0, period : period + 1000], atol=0.02)
    assert seed.audio[0, -4410:].abs().max() > 0.05


def test_user_seed_from_long_mp3_is_trimmed_to_tile(tmp_path):
    path = tmp_path / "jam.mp3"
    write_audio(path, tone(44100, 6.0, 1), 44100)
    library = SeedLibrary(OTHER)
    seed = library.add_file(path, name="take1", beats=4)
    assert seed.audio.shape == (1, OTHER.num_samples(512))
    assert seed.beats == 4
    assert seed.bpm == pytest.approx(4 * 60 * 22050 / OTHER.num_samples(512))
    assert abs(float(seed.audio[0, -1])) < 1e-3  # the cut end fades instead of clicking


def test_user_seeds_survive_restart(tmp_path):
    source = tmp_path / "riff.flac"
    write_audio(source, tone(22050, 2.0, 1), 22050)
    SeedLibrary(OTHER, width=128, user_dir=tmp_path / "seeds").add_file(source, beats=2)
    assert (tmp_path / "seeds" / "riff.wav").is_file()
    reloaded = SeedLibrary(OTHER, width=128, user_dir=tmp_path / "seeds")
    seed = reloaded.get("riff")
    assert seed.beats == 2
    assert seed.audio.shape == (1, OTHER.num_samples(128))


def test_undecodable_file_raises_seed_error(tmp_path):
    path = tmp_path / "noise.mp3"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(SeedError, match=r"cannot use 'noise\.mp3' as a seed"):
        SeedLibrary(OTHER).add_file(path)
    with pytest.raises(AudioDecodeError):
        read_audio(path)


def test_missing_file_and_builtin_name_raise_seed_error(tmp_path):
    library = SeedLibrary(OTHER)
    with pytest.raises(SeedError, match="no such audio file"):
        library.add_file(tmp_path / "nothing.wav")
    path = write_wav(tmp_path / "x.wav", tone(22050, 0.5, 1), 22050)
    with pytest.raises(SeedError, match="built-in"):
        library.add_file(path, name="drone")


def test_write_audio_rejects_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\.mp3"):
        write_audio(tmp_path / "x.aiff", tone(22050, 0.1, 1), 22050)


def test_wav_round_trip_clips_and_keeps_shape(tmp_path):
    audio = torch.tensor([[0.0, 0.5, -0.5, 2.0], [0.25, -2.0, 0.0, 1.0]])
    back, rate = read_audio(write_wav(tmp_path / "r.wav", audio, 8000))
    assert rate == 8000
    assert back.shape == (2, 4)
    assert torch.allclose(back, audio.clamp(-1, 1), atol=1e-4)


def test_ogg_round_trip_through_ffmpeg(tmp_path):
    assert isinstance(write_audio(tmp_path / "a.ogg", tone(22050, 0.3, 1), 22050), Path)
    audio, rate = read_audio(tmp_path / "a.ogg")
    assert rate == 22050 and audio.shape[0] == 1
