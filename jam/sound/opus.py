"""Opus for the wire: a session's stream cut into 20 ms packets, each at its stream offset.

PyAV's libopus (inside its wheel) encodes in-process. The stream is resampled to 48 kHz (the
codec's own rate) once; packets are 20 ms, which is a whole number of stream samples at every
rate jam uses (16, 22.05, 44.1 kHz), so packet ``k`` starts exactly at stream sample
``k * rate / 50``. Decoders add the encoder's fixed delay (``PRE_SKIP`` samples at 48 kHz), which
clients subtract, so Opus and PCM listeners hear each sample at the same moment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

CODEC_RATE = 48000
PACKET_SECONDS = 0.02
CODEC_PACKET = round(CODEC_RATE * PACKET_SECONDS)  # 960 samples at 48 kHz
PRE_SKIP = 312  # libopus's look-ahead at 48 kHz: a packet's audio is decoded this much late
PRE_ROLL_PACKETS = 4  # 80 ms (RFC 7845's pre-roll): a fresh decoder has settled after them


@dataclass(frozen=True)
class OpusPacket:
    offset: int  # stream sample (at the stream's rate) where this packet's input starts
    data: bytes


def available() -> bool:
    """Whether this machine's PyAV has libopus (its wheels do)."""
    try:
        import av

        return "libopus" in av.codecs_available
    except ImportError:
        return False


def default_bitrate(sample_rate: int, channels: int) -> int:
    """Bits per second for a stream: room for its band (jam's models stop near 10 kHz)."""
    base = 40_000 if sample_rate <= 24_000 else 64_000
    return base * channels


class OpusEncoder:
    """One session's encoder: float audio in stream order -> packets with stream offsets.

    ``start`` is the stream sample of the first audio it is given (a multiple of a packet):
    after a splice the session restarts its encoder a few packets before the splice.
    """

    def __init__(self, sample_rate: int, channels: int, bitrate: int, start: int = 0) -> None:
        import av

        if sample_rate % round(1 / PACKET_SECONDS):
            raise ValueError(f"{sample_rate} Hz does not split into whole 20 ms packets")
        self.sample_rate = sample_rate
        self.channels = channels
        self.packet_samples = round(sample_rate * PACKET_SECONDS)
        if start % self.packet_samples:
            raise ValueError(f"an encoder starts on a packet boundary, not at {start}")
        self.start = start
        layout = "mono" if channels == 1 else "stereo"
        self._codec = av.CodecContext.create("libopus", "w")
        self._codec.sample_rate = CODEC_RATE
        self._codec.layout = layout
        self._codec.format = av.AudioFormat("flt")
        self._codec.bit_rate = bitrate
        # constrained VBR: unconstrained, libopus spends ~60% over the rate on jam's beats
        self._codec.options = {"vbr": "constrained"}
        self._codec.open()
        self._resampler = av.AudioResampler(format="flt", layout=layout, rate=CODEC_RATE)
        self._fifo = av.AudioFifo()
        self._layout = layout
        self.bitrate = bitrate

    def encode(self, audio: np.ndarray) -> list[OpusPacket]:
        """Packets completed by this audio ``(channels, n)``; the rest waits for the next call."""
        import av

        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio.T.reshape(1, -1), dtype=np.float32),
            format="flt",
            layout=self._layout,
        )
        frame.sample_rate = self.sample_rate
        for resampled in self._resampler.resample(frame):
            self._fifo.write(resampled)
        packets = []
        while self._fifo.samples >= CODEC_PACKET:
            for packet in self._codec.encode(self._fifo.read(CODEC_PACKET)):
                index = (int(packet.pts) + PRE_SKIP) // CODEC_PACKET
                offset = self.start + index * self.packet_samples
                packets.append(OpusPacket(offset, bytes(packet)))
        return packets


def decode(packets: list[bytes], channels: int) -> np.ndarray:
    """Decode packets in order to float audio ``(channels, n)`` at 48 kHz, the encoder's delay
    removed (for tests and benchmarks; browsers decode with WebCodecs)."""
    import av

    codec = av.CodecContext.create("libopus", "r")
    codec.sample_rate = CODEC_RATE
    codec.layout = "mono" if channels == 1 else "stereo"
    parts = []
    for data in packets:
        for frame in codec.decode(av.Packet(data)):
            samples = frame.to_ndarray()
            if not frame.format.is_planar:
                samples = samples.reshape(-1, channels).T
            if samples.dtype == np.int16:
                samples = samples / 32768.0
            parts.append(samples)
    audio = np.concatenate(parts, axis=-1) if parts else np.zeros((channels, 0), np.float32)
    return audio[:, PRE_SKIP:].astype(np.float32)
