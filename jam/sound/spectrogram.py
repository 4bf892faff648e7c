"""Audio <-> mel magnitude spectrogram <-> 8-bit image, in Riffusion's exact format.

Audio is a float tensor ``(channels, samples)`` in [-1, 1]. Spectrograms are computed on the
audio scaled to int16 range, as Riffusion did (it fed raw int16 samples to the STFT), so that
magnitudes and the stored max value mean the same thing in both tools.

The transforms (STFT, mel filterbank, the mel pseudo-inverse, Griffin-Lim windows) are built
once per (params, device) by :func:`converter` and stay on that device.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import torch
import torchaudio
from PIL import Image

from jam.sound.params import DEFAULT_MAX_VALUE, ExifTag, SpectrogramParams
from jam.sound.phase import griffin_lim

INT16_SCALE = 32768.0


class SpectrogramConverter:
    """The audio <-> mel spectrogram transforms for one ``SpectrogramParams`` on one device."""

    def __init__(self, params: SpectrogramParams, device: torch.device | str = "cpu") -> None:
        self.params = p = params
        self.device = torch.device(device)
        self.stft = torchaudio.transforms.Spectrogram(
            n_fft=p.n_fft,
            hop_length=p.hop_length,
            win_length=p.win_length,
            window_fn=torch.hann_window,
            power=None,
            center=True,
            pad_mode="reflect",
        ).to(self.device)
        self.mel = torchaudio.transforms.MelScale(
            n_mels=p.num_frequencies,
            sample_rate=p.sample_rate,
            f_min=p.min_frequency,
            f_max=p.max_frequency,
            n_stft=p.n_fft // 2 + 1,
            norm=p.mel_scale_norm,
            mel_scale=p.mel_scale_type,
        ).to(self.device)
        # mel = fb^T @ linear. The minimum-norm solution of that underdetermined system is the
        # pseudo-inverse; solve it once in float64 instead of a least-squares solve per tile
        # (torchaudio's InverseMelScale re-solves every call, and CPU's default gelsy driver
        # returns zeros for this system).
        fb = self.mel.fb.detach().to("cpu", torch.float64)
        self.mel_pinv = torch.linalg.pinv(fb.T).to(self.device, torch.float32)
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=p.n_fft,
            n_iter=p.num_griffin_lim_iters,
            win_length=p.win_length,
            hop_length=p.hop_length,
            window_fn=torch.hann_window,
            power=1.0,
            momentum=p.griffin_lim_momentum,
            rand_init=True,
        ).to(self.device)

    @torch.inference_mode()
    def spectrogram_from_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Mel magnitude spectrogram ``(..., channels, mels, frames)`` of float audio."""
        x = audio.to(self.device, torch.float32) * INT16_SCALE
        return self.mel(self.stft(x).abs())

    @torch.inference_mode()
    def linear_from_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """Non-negative linear magnitude from a mel spectrogram, via the cached pseudo-inverse."""
        pinv = self.mel_pinv.to(mel.dtype)
        return torch.relu(torch.matmul(pinv, mel))

    @torch.inference_mode()
    def audio_from_spectrogram(
        self, mel: torch.Tensor, init_phase: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Float audio from a mel magnitude spectrogram ``(..., mels, frames)``.

        Griffin-Lim from random phase (torchaudio's), or, with ``init_phase`` (complex,
        ``(..., n_fft // 2 + 1, frames)``; zero entries start at random), from that phase: the
        same algorithm (:func:`jam.sound.phase.griffin_lim`), so a tile can continue the one
        it fades in under.
        """
        linear = self.linear_from_mel(mel.to(self.device, torch.float32))
        if init_phase is None:
            return self.griffin_lim(linear) / INT16_SCALE
        p = self.params
        audio = griffin_lim(
            linear, self.griffin_lim.window, p.n_fft, p.hop_length,
            p.num_griffin_lim_iters, p.griffin_lim_momentum, init_phase.to(self.device),
        )  # fmt: skip
        return audio / INT16_SCALE


@functools.lru_cache(maxsize=8)
def _cached_converter(params: SpectrogramParams, device: torch.device) -> SpectrogramConverter:
    return SpectrogramConverter(params, device)


def converter(
    params: SpectrogramParams, device: torch.device | str = "cpu"
) -> SpectrogramConverter:
    """The shared converter for (params, device), built on first use."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _cached_converter(params, device)


# --- image mapping (pure functions; device and dtype follow the input) ---------------------


def pixels_from_spectrogram(
    spectrogram: torch.Tensor, power: float, max_value: float | None = None
) -> torch.Tensor:
    """Riffusion's image mapping: ``255 - 255 * (S / max) ** power``, truncated to uint8.

    Input ``(channels, mels, frames)``; output ``(mels, frames, 3)`` RGB, low frequencies at
    the bottom. Mono fills R = G = B; stereo is R = 0, G = left, B = right.

    Computed in NumPy float32 with Riffusion's exact operation order: torch's vectorised
    ``pow`` differs from NumPy's by an ulp now and then, which moves a pixel by one grey level
    after truncation, and this mapping must be bit-identical to Riffusion's.
    """
    if spectrogram.dim() != 3 or spectrogram.shape[0] not in (1, 2):
        raise ValueError(
            f"expected (1 or 2 channels, mels, frames), got {tuple(spectrogram.shape)}"
        )
    s = spectrogram.detach().to("cpu", torch.float32).numpy()
    peak = np.max(s) if max_value is None else np.float32(max_value)
    data = (255 - np.power(s / peak, power) * 255).astype(np.uint8)
    if data.shape[0] == 1:
        rgb = np.repeat(data[0][..., None], 3, axis=-1)
    else:
        rgb = np.stack([np.zeros_like(data[0]), data[0], data[1]], axis=-1)
    return torch.from_numpy(np.ascontiguousarray(rgb[::-1]))


def spectrogram_from_pixels(
    pixels: torch.Tensor, power: float, max_value: float, stereo: bool = False
) -> torch.Tensor:
    """Inverse image mapping. ``pixels`` is ``(..., H, W, 3)`` in 0..255 (uint8 or float).

    Float pixels are used as they are, so a diffusion output can be read without the 8-bit
    rounding that saving it as a PNG would add.
    """
    if pixels.shape[-1] != 3:
        raise ValueError(f"expected RGB pixels (..., H, W, 3), got {tuple(pixels.shape)}")
    p = pixels.flip(-3).to(torch.float32)
    channels = p[..., 1:3] if stereo else p[..., 0:1]
    data = ((255 - channels) / 255).clamp(min=0) ** (1 / power) * max_value
    return data.movedim(-1, -3)  # (..., channels, H, W)


def image_from_spectrogram(
    spectrogram: torch.Tensor, params: SpectrogramParams, max_value: float | None = None
) -> Image.Image:
    """A spectrogram PNG-ready image carrying the params and max value in its EXIF."""
    peak = float(spectrogram.max()) if max_value is None else float(max_value)
    pixels = pixels_from_spectrogram(spectrogram, params.power_for_image, peak)
    image = Image.fromarray(pixels.numpy(), mode="RGB")
    exif = image.getexif()
    exif.update(params.to_exif().items())
    exif[ExifTag.MAX_VALUE] = peak
    return image


def check_image(image: Image.Image, params: SpectrogramParams) -> None:
    """Raise a clear error for an image this model cannot read."""
    if image.height != params.num_frequencies:
        raise ValueError(
            f"spectrogram image is {image.height} px tall; this model's params need "
            f"{params.num_frequencies} (one row per mel bin)"
        )
    if image.mode not in ("RGB", "RGBA", "L"):
        raise ValueError(f"spectrogram image mode {image.mode!r} is not RGB or L")


def params_from_image(
    image: Image.Image, default: SpectrogramParams | None = None
) -> SpectrogramParams:
    return SpectrogramParams.from_exif(dict(image.getexif()), default)


def max_value_from_image(image: Image.Image) -> float:
    return float(image.getexif().get(ExifTag.MAX_VALUE, DEFAULT_MAX_VALUE))


def spectrogram_from_image(
    image: Image.Image, params: SpectrogramParams, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Mel magnitude spectrogram ``(channels, mels, frames)`` read from a spectrogram image."""
    check_image(image, params)
    pixels = torch.from_numpy(np.array(image.convert("RGB"))).to(device)
    return spectrogram_from_pixels(
        pixels, params.power_for_image, max_value_from_image(image), params.stereo
    )


def png_bytes(image: Image.Image) -> bytes:
    """PNG encoding that keeps the EXIF (Pillow drops it unless asked)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", exif=image.getexif())
    return buf.getvalue()
