"""The codec: Riffusion's exact numbers, pixel-exact image mapping, faithful round trips."""

from __future__ import annotations

import math
import subprocess
import sys
import wave

import numpy as np
import pytest
import torch
import torchaudio
from PIL import Image

from jam.model.blank import TINY_PARAMS
from jam.sound.params import ExifTag, SpectrogramParams
from jam.sound.phase import spectral_convergence as phase_sc
from jam.sound.spectrogram import (
    INT16_SCALE,
    converter,
    image_from_spectrogram,
    params_from_image,
    pixels_from_spectrogram,
    png_bytes,
    spectrogram_from_image,
)

SR = 44100


def riffusion_image(spectrogram: np.ndarray, power: float = 0.25) -> np.ndarray:
    """Riffusion's image_from_spectrogram, in NumPy as it wrote it: the format reference."""
    max_value = np.max(spectrogram)
    data = spectrogram / max_value
    data = np.power(data, power)
    data = data * 255
    data = 255 - data
    data = data.astype(np.uint8)
    if data.shape[0] == 1:
        image = Image.fromarray(data[0], mode="L").convert("RGB")
    else:
        rgb = np.array([np.zeros_like(data[0]), data[0], data[1]]).transpose(1, 2, 0)
        image = Image.fromarray(rgb, mode="RGB")
    return np.asarray(image.transpose(Image.Transpose.FLIP_TOP_BOTTOM))


def spectral_convergence(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    return float(torch.linalg.norm(reference - estimate) / torch.linalg.norm(reference))


def sweep(sr: int, seconds: float) -> torch.Tensor:
    t = torch.arange(round(sr * seconds)) / sr
    f0, f1 = 60.0, 6000.0
    phase = 2 * math.pi * f0 * seconds / math.log(f1 / f0) * ((f1 / f0) ** (t / seconds) - 1)
    return 0.4 * torch.sin(phase).unsqueeze(0)


def chord(sr: int, seconds: float) -> torch.Tensor:
    t = torch.arange(round(sr * seconds)) / sr
    notes = [220.0, 277.18, 329.63, 440.0]
    x = sum(torch.sin(2 * math.pi * f * t) + 0.3 * torch.sin(4 * math.pi * f * t) for f in notes)
    return (0.15 * x).unsqueeze(0)


def drums(sr: int, seconds: float) -> torch.Tensor:
    n = round(sr * seconds)
    x = torch.zeros(n)
    gen = torch.Generator().manual_seed(1)
    hit = round(0.25 * sr)
    for k, start in enumerate(range(0, n - hit, hit)):
        t = torch.arange(hit) / sr
        if k % 2 == 0:  # kick: falling sine
            x[start : start + hit] += (
                0.8
                * torch.sin(2 * math.pi * (50 + 80 * torch.exp(-t * 30)) * t)
                * torch.exp(-t * 12)
            )
        else:  # snare: noise burst
            x[start : start + hit] += 0.4 * torch.randn(hit, generator=gen) * torch.exp(-t * 25)
    return x.unsqueeze(0)


def test_riffusion_preset_has_riffusions_exact_stft_and_tile_sizes():
    p = SpectrogramParams()
    assert (p.sample_rate, p.hop_length, p.win_length, p.n_fft) == (44100, 441, 4410, 17640)
    assert p.n_fft // 2 + 1 == 8821
    assert p.num_samples(512) == 225_351
    assert p.width_for(225_351) == 512
    c = converter(p)
    assert c.mel.fb.shape == (8821, 512)
    assert converter(p) is c  # built once per (params, device)


@pytest.mark.parametrize("channels", [1, 2])
def test_image_mapping_is_pixel_identical_to_riffusions(channels: int):
    gen = torch.Generator().manual_seed(channels)
    spec = torch.rand(channels, 512, 300, generator=gen) ** 6 * 3e7
    ours = pixels_from_spectrogram(spec, 0.25).numpy()
    assert ours.shape == (512, 300, 3)
    np.testing.assert_array_equal(ours, riffusion_image(spec.numpy()))


def test_image_carries_params_and_max_value_in_riffusions_exif_tags(tmp_path):
    params = SpectrogramParams(sample_rate=22050, max_frequency=8000, num_frequencies=128)
    spec = torch.rand(1, 128, 64) * 1e6
    path = tmp_path / "spec.png"
    path.write_bytes(png_bytes(image_from_spectrogram(spec, params)))
    image = Image.open(path)
    exif = image.getexif()
    assert exif[ExifTag.SAMPLE_RATE] == 22050
    assert exif[ExifTag.MAX_FREQUENCY] == 8000
    assert exif[ExifTag.NUM_FREQUENCIES] == 128
    assert exif[ExifTag.MAX_VALUE] == pytest.approx(float(spec.max()))
    assert params_from_image(image) == params
    back = spectrogram_from_image(image, params)
    # 8-bit quantisation of S**0.25: relative error per bin is bounded by one grey level
    np.testing.assert_allclose(back**0.25, spec**0.25, atol=float(spec.max()) ** 0.25 / 255 * 1.01)


def test_reading_an_image_of_the_wrong_height_is_a_clear_error():
    image = Image.new("RGB", (512, 100))
    with pytest.raises(ValueError, match=r"100 px tall.*need 512"):
        spectrogram_from_image(image, SpectrogramParams())


def test_mel_pseudo_inverse_matches_a_correct_least_squares_solve():
    c = converter(TINY_PARAMS)
    mel = c.spectrogram_from_audio(chord(TINY_PARAMS.sample_rate, 1.0))[0]
    lstsq = torch.linalg.lstsq(c.mel.fb.T.double(), mel.double(), driver="gels").solution
    np.testing.assert_allclose(
        c.linear_from_mel(mel).double(),
        lstsq.clamp(min=0),
        rtol=1e-3,
        atol=1e-3 * float(lstsq.max()),
    )


@pytest.mark.parametrize("signal", [sweep, chord, drums])
def test_round_trip_through_griffin_lim_keeps_the_spectrum(signal):
    """audio -> mel -> audio -> mel stays close: spectral convergence on real signals."""
    params = TINY_PARAMS
    c = converter(params)
    audio = signal(params.sample_rate, 3.0)
    mel = c.spectrogram_from_audio(audio)
    again = c.spectrogram_from_audio(c.audio_from_spectrogram(mel))
    assert spectral_convergence(mel, again) < 0.25


def test_round_trip_at_riffusion_params_keeps_the_spectrum():
    c = converter(SpectrogramParams())
    audio = chord(SR, 1.0) + drums(SR, 1.0)
    mel = c.spectrogram_from_audio(audio)
    out = c.audio_from_spectrogram(mel)
    assert out.shape[-1] == (mel.shape[-1] - 1) * 441
    assert spectral_convergence(mel, c.spectrogram_from_audio(out)) < 0.25


@pytest.mark.parametrize(
    "params, seconds", [(TINY_PARAMS, 1.0), (SpectrogramParams(), 0.5)], ids=["tiny", "riffusion"]
)
def test_griffin_lim_from_a_tones_own_phase_converges_further_than_from_random(params, seconds):
    """The converter's ``init_phase`` path, at a small FFT and at Riffusion's 17640 points: from
    the tone's own STFT phase, Griffin-Lim gets closer to the magnitude it inverts and gives the
    tone back, in phase (from random phase, the waveform is unrelated to it)."""
    c = converter(params)
    tone = sweep(params.sample_rate, seconds)
    mel = c.spectrogram_from_audio(tone)
    target = c.linear_from_mel(mel)  # what Griffin-Lim inverts

    def figures(out: torch.Tensor) -> tuple[float, float]:
        sc = phase_sc(
            target, out * INT16_SCALE, c.griffin_lim.window, params.n_fft, params.hop_length
        )
        n = min(out.shape[-1], tone.shape[-1])
        corr = float(
            (out[..., :n] * tone[..., :n]).sum() / (out[..., :n].norm() * tone[..., :n].norm())
        )
        return sc, corr

    torch.manual_seed(0)
    cold_sc, cold_corr = figures(c.audio_from_spectrogram(mel))
    warm_sc, warm_corr = figures(c.audio_from_spectrogram(mel, init_phase=c.stft(tone)))
    assert warm_sc < cold_sc - 2, (warm_sc, cold_sc)
    assert warm_corr > 0.95 > abs(cold_corr), (warm_corr, cold_corr)


def test_without_init_phase_the_converter_is_torchaudios_griffin_lim_as_before():
    c = converter(TINY_PARAMS)
    mel = c.spectrogram_from_audio(drums(TINY_PARAMS.sample_rate, 1.0))
    torch.manual_seed(7)
    ours = c.audio_from_spectrogram(mel)
    torch.manual_seed(7)
    again = c.audio_from_spectrogram(mel)
    p = TINY_PARAMS
    stock = torchaudio.transforms.GriffinLim(
        n_fft=p.n_fft, n_iter=p.num_griffin_lim_iters, win_length=p.win_length,
        hop_length=p.hop_length, window_fn=torch.hann_window, power=1.0,
        momentum=p.griffin_lim_momentum,
    )  # fmt: skip
    torch.manual_seed(7)
    theirs = stock(c.linear_from_mel(mel)) / INT16_SCALE
    assert torch.equal(ours, again) and torch.equal(ours, theirs)


def reference_riffusion_spectrogram(samples: np.ndarray) -> np.ndarray:
    """Riffusion's SpectrogramConverter.spectrogram_from_audio, from its settings."""
    waveform = torch.from_numpy(samples.astype(np.float32))[None]
    stft = torchaudio.transforms.Spectrogram(
        n_fft=17640,
        hop_length=441,
        win_length=4410,
        pad=0,
        window_fn=torch.hann_window,
        power=None,
        normalized=False,
        wkwargs=None,
        center=True,
        pad_mode="reflect",
        onesided=True,
    )
    mel = torchaudio.transforms.MelScale(
        n_mels=512, sample_rate=44100, f_min=0, f_max=10000, n_stft=8821, norm=None, mel_scale="htk"
    )
    return mel(stft(waveform).abs()).numpy()


def test_audio_to_image_command_writes_riffusions_exact_pixels(tmp_path):
    gen = np.random.default_rng(0)
    audio = (chord(SR, 2.0) + drums(SR, 2.0)).numpy()[0]
    samples = np.clip(audio * 32767 + gen.normal(0, 30, audio.shape), -32768, 32767).astype(
        np.int16
    )
    wav = tmp_path / "in.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(samples.tobytes())
    png = tmp_path / "out.png"
    subprocess.run(
        [sys.executable, "-m", "jam.cli", "audio-to-image", str(wav), str(png)], check=True
    )
    ours = np.asarray(Image.open(png).convert("RGB"))
    expected = riffusion_image(reference_riffusion_spectrogram(samples))
    assert ours.shape == (512, samples.size // 441 + 1, 3)
    np.testing.assert_array_equal(ours, expected)


def test_image_to_audio_command_rejects_a_file_that_is_not_an_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    result = subprocess.run(
        [sys.executable, "-m", "jam.cli", "image-to-audio", str(bad), str(tmp_path / "o.wav")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "could not read" in result.stderr
