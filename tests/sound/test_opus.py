"""The Opus packetiser: 20 ms packets on exact stream offsets, decoded in time with the input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio

from jam.sound.opus import CODEC_RATE, OpusEncoder, decode


def chord(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    tones = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 1760.0))
    return (0.15 * tones * np.minimum(1, t / 0.01)).astype(np.float32)[None, :]


@pytest.mark.parametrize("rate", [16000, 22050, 44100])
def test_packets_are_20_ms_apart_and_decode_in_time_with_the_input(rate):
    audio = chord(rate, 3.0)
    encoder = OpusEncoder(rate, 1, 48_000)
    packets = []
    for start in range(0, audio.shape[-1], round(0.25 * rate)):  # the stream's 0.25 s chunks
        packets += encoder.encode(audio[:, start : start + round(0.25 * rate)])
    step = rate // 50
    assert [p.offset for p in packets] == [i * step for i in range(len(packets))]
    decoded = decode([p.data for p in packets], channels=1)
    back = torchaudio.functional.resample(torch.from_numpy(decoded), CODEC_RATE, rate).numpy()
    n = min(back.shape[-1], audio.shape[-1]) - 2000
    ref, got = audio[0, 1000:n], back[0, 1000:n]
    lags = list(range(-8, 9))
    match = [float(np.dot(ref[8:-8], got[8 + lag : len(got) - 8 + lag])) for lag in lags]
    assert lags[int(np.argmax(match))] == 0, "decoded audio sits at the input's stream offsets"
    snr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - got) ** 2))
    assert snr > 20, f"SNR {snr:.1f} dB"


def test_a_rate_that_does_not_split_into_20_ms_packets_is_refused():
    with pytest.raises(ValueError, match="20 ms"):
        OpusEncoder(11025, 1, 32_000)
