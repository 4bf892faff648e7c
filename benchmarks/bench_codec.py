"""What Opus costs and saves: bytes per second per listener for each codec, encode time per
session-second, quality of the decoded audio against the PCM it came from, and added latency.

    python benchmarks/bench_codec.py                  # 30 s of the embedded model + 44.1 kHz loops
    python benchmarks/bench_codec.py --seconds 10 --bitrate 32000

The stream is the real producer's (chunks with their metadata), framed by the real wire encoders.
Quality: log-spectral distance (dB, RMS over mel bins and frames, floored 60 dB under the peak)
in the model's own mel domain, and SNR, after resampling the 48 kHz decode to the stream rate.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchaudio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jam.app import App
from jam.cli import quiet_libraries
from jam.seeds.library import SeedLibrary
from jam.serve import protocol
from jam.sound.opus import CODEC_RATE, PRE_SKIP, OpusEncoder, decode, default_bitrate
from jam.sound.params import SpectrogramParams
from jam.sound.spectrogram import converter
from jam.stream.controls import Controls, SessionState
from jam.stream.producer import Chunk, Producer


async def stream_chunks(app: App, seconds: float) -> list[Chunk]:
    state = SessionState(
        Controls.start("deep house with warm pads", app.defaults), seed=1, steps=app.defaults.steps
    )
    chunks: list[Chunk] = []
    async for item in Producer(state, app.renderer, app.seeds, app.stream_settings).stream():
        if isinstance(item, Chunk):
            chunks.append(item)
            if len(chunks) * item.audio.shape[-1] >= seconds * app.sample_rate:
                break
    return chunks


def loop_chunks(params: SpectrogramParams, seconds: float) -> list[Chunk]:
    """Seed loops at Riffusion's 44.1 kHz, cut like a stream (for the 44.1 kHz bitrate)."""
    seeds = SeedLibrary(params, width=512)
    audio = np.concatenate([seeds.get(n).audio.numpy() for n in seeds.names()], axis=-1) * 0.7
    audio = np.tile(audio, (1, int(np.ceil(seconds * params.sample_rate / audio.shape[-1]))))
    step = params.sample_rate // 4
    meta = {"prompt": "seed loops", "mix": [{"tile": 0, "weight": 1.0}]}
    return [
        Chunk(i, i * step, params.sample_rate, audio[:, i * step : (i + 1) * step], meta)
        for i in range(int(seconds * 4))
    ]


def measure(chunks: list[Chunk], bitrate: int, params: SpectrogramParams) -> dict[str, float]:
    rate, channels = chunks[0].sample_rate, chunks[0].audio.shape[0]
    seconds = sum(c.audio.shape[-1] for c in chunks) / rate
    pcm_bytes = sum(
        len(protocol.encode_audio_frame(c.seq, c.offset, rate, c.audio, c.meta)) for c in chunks
    )
    encoder = OpusEncoder(rate, channels, bitrate)
    opus_bytes, packets, held = 0, [], []
    t0 = time.process_time()
    for c in chunks:
        out = encoder.encode(c.audio)
        frame = protocol.encode_opus_frame(
            c.seq, out[0].offset, rate, channels, [p.data for p in out], rate // 50, c.meta
        )
        opus_bytes += len(frame)
        packets += out
        held.append(c.offset + c.audio.shape[-1] - (out[-1].offset + rate // 50))
    encode_s = time.process_time() - t0
    audio = np.concatenate([c.audio for c in chunks], axis=-1)
    decoded = decode([p.data for p in packets], channels)
    back = torchaudio.functional.resample(torch.from_numpy(decoded), CODEC_RATE, rate)
    n = min(back.shape[-1], audio.shape[-1])
    ref, got = torch.from_numpy(audio[:, :n]), back[:, :n].to(torch.float32)
    conv = converter(params)
    mel_ref = conv.spectrogram_from_audio(ref)
    floor = float(mel_ref.max()) * 1e-3  # -60 dB: below that nobody hears the difference
    mel_ref, mel_got = mel_ref.clamp(min=floor), conv.spectrogram_from_audio(got).clamp(min=floor)
    lsd = float(torch.sqrt(torch.mean((20 * torch.log10(mel_ref / mel_got)) ** 2)))
    snr = float(10 * torch.log10(torch.sum(ref**2) / torch.sum((ref - got) ** 2)))
    return {
        "seconds": seconds,
        "pcm_kbps": pcm_bytes * 8 / seconds / 1000,
        "opus_kbps": opus_bytes * 8 / seconds / 1000,
        "core_share": encode_s / seconds,
        "lsd_db": lsd,
        "snr_db": snr,
        "held_ms": 1000 * max(held) / rate,
    }


def report(name: str, bitrate: int, r: dict[str, float]) -> None:
    print(
        f"{name}: {r['seconds']:.0f} s, Opus at {bitrate / 1000:.0f} kbit/s\n"
        f"  per listener: PCM {r['pcm_kbps']:.1f} kbit/s, Opus {r['opus_kbps']:.1f} kbit/s "
        f"(frames, metadata and packet lengths included; {r['pcm_kbps'] / r['opus_kbps']:.1f}x "
        f"less)\n"
        f"  encode: {100 * r['core_share']:.2f}% of one core per live session\n"
        f"  quality vs PCM: log-spectral distance {r['lsd_db']:.2f} dB in the model's mel domain, "
        f"SNR {r['snr_db']:.1f} dB\n"
        f"  latency added: decoder delay {1000 * PRE_SKIP / CODEC_RATE:.1f} ms (placed ahead, so "
        f"none is heard); audio held in the encoder up to {r['held_ms']:.0f} ms"
    )


async def main() -> None:
    quiet_libraries()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--bitrate", type=int, help="Opus bits/s (default: jam serve's for the rate)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    app = App.load(None, "cpu")
    try:
        chunks = await stream_chunks(app, args.seconds)
    finally:
        await app.close()
    p = app.seeds.params
    bitrate = args.bitrate or default_bitrate(p.sample_rate, p.channels)
    report(f"embedded model stream ({p.sample_rate} Hz)", bitrate, measure(chunks, bitrate, p))
    riffusion = SpectrogramParams()
    loops = loop_chunks(riffusion, args.seconds)
    bitrate = args.bitrate or default_bitrate(riffusion.sample_rate, riffusion.channels)
    report(f"seed loops at {riffusion.sample_rate} Hz", bitrate, measure(loops, bitrate, riffusion))


if __name__ == "__main__":
    asyncio.run(main())
