"""Files between audio and Riffusion's spectrogram PNG format (``jam audio-to-image`` and back)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from jam.sound.files import read_audio, write_wav
from jam.sound.params import SpectrogramParams
from jam.sound.pcm import conform
from jam.sound.spectrogram import (
    converter,
    image_from_spectrogram,
    params_from_image,
    spectrogram_from_image,
)


def audio_to_image(
    audio_path: str | Path, image_path: str | Path, params: SpectrogramParams, device: str = "cpu"
) -> Image.Image:
    """Write the audio file's spectrogram as a PNG with the params in its EXIF."""
    audio, rate = read_audio(audio_path)
    audio = conform(audio, rate, params.channels, params.sample_rate)
    image = image_from_spectrogram(converter(params, device).spectrogram_from_audio(audio), params)
    image.save(image_path, exif=image.getexif(), format="PNG")
    return image


def image_to_audio(
    image_path: str | Path,
    audio_path: str | Path,
    default: SpectrogramParams,
    device: str = "cpu",
) -> float:
    """Invert a spectrogram PNG (its EXIF params, else ``default``) to WAV; seconds written."""
    try:
        image = Image.open(image_path)
        image.load()
    except OSError as e:
        raise ValueError(f"could not read {image_path} as an image: {e}") from e
    params = params_from_image(image, default)
    audio = converter(params, device).audio_from_spectrogram(
        spectrogram_from_image(image, params, device)
    )
    write_wav(audio_path, audio.cpu(), params.sample_rate)
    return audio.shape[-1] / params.sample_rate
