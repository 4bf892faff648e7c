"""Opus and PCM listeners of one session, and recordings, on a real server (127.0.0.1)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import torchaudio
from pydub import AudioSegment

from jam.model.blank import TINY_PARAMS
from jam.seeds.library import SeedLibrary
from jam.serve import protocol
from jam.serve.settings import ServerSettings, SessionSettings
from jam.sound.opus import CODEC_RATE, PRE_SKIP, decode
from tests.serve.client import Client, http_get, running
from tests.standin import standin_app

SETTINGS = ServerSettings(port=0, session=SessionSettings(lead=1.0))
RATE = TINY_PARAMS.sample_rate


@pytest.fixture(scope="module")
def seeds() -> SeedLibrary:
    return SeedLibrary(TINY_PARAMS, width=256)


def seconds_of(c: Client) -> float:
    return sum(f.seconds for _, f, _ in c.audio)


async def test_opus_and_pcm_listeners_get_the_same_stream_at_the_same_offsets(seeds) -> None:
    async with running(standin_app(seeds), SETTINGS) as server:
        host = await Client.open(server, {"type": "create", "codecs": ["opus", "pcm"]})
        welcome = await host.welcome()
        assert (welcome["codec"], welcome["codec_rate"], welcome["pre_skip"]) == (
            "opus",
            CODEC_RATE,
            PRE_SKIP,
        )
        pcm = await Client.open(server, {"type": "join", "session": welcome["session"]})
        assert (await pcm.welcome())["codec"] == "pcm"  # no offer: PCM, as before
        await pcm.until(lambda: seconds_of(pcm) >= 6.0, 20, "6 s of PCM")
        await host.until(lambda: seconds_of(host) >= 6.0, 20, "6 s of Opus")
        opus = [f for _, f, _ in host.audio]
        assert all(isinstance(f, protocol.OpusFrame) for f in opus)
        step = RATE // 50
        packets = [(f.offset + i * step, p) for f in opus for i, p in enumerate(f.packets)]
        assert [o for o, _ in packets] == list(range(0, len(packets) * step, step))

        # decoded Opus, back at the stream rate, is the PCM the other listener got
        audio = decode([p for _, p in packets], channels=1)
        back = torchaudio.functional.resample(torch.from_numpy(audio), CODEC_RATE, RATE)[0]
        frames = [f for _, f, _ in pcm.audio]
        start = frames[0].offset
        ref = np.concatenate([f.pcm[0] for f in frames]).astype(np.float32) / 32768
        lo, hi = max(start, RATE // 2) + 200, min(start + ref.size, back.shape[-1]) - 200
        assert hi - lo > 3 * RATE
        got, want = back[lo:hi].numpy(), ref[lo - start : hi - start]
        snr = 10 * np.log10(np.sum(want**2) / np.sum((want - got) ** 2))
        assert snr > 12, f"decoded Opus vs PCM: {snr:.1f} dB"

        # the same chunks (seq) with the same metadata, and a fraction of the bytes
        assert {f.seq for f in opus} & {f.seq for f in frames}
        by_seq = {f.seq: f for f in frames}
        for f in opus:
            if f.seq in by_seq:
                assert f.meta["prompt"] == by_seq[f.seq].meta["prompt"]
        opus_bps = 8 * sum(len(raw) for _, _, raw in host.audio) / seconds_of(host)
        pcm_bps = 8 * sum(len(raw) for _, _, raw in pcm.audio) / seconds_of(pcm)
        print(f"bitrate per listener: opus {opus_bps / 1000:.1f} kbit/s, pcm {pcm_bps / 1000:.1f}")
        assert opus_bps <= 64_000 < pcm_bps
        for c in (host, pcm):
            await c.close()


async def test_a_late_opus_listener_starts_at_the_packet_playing_now(seeds) -> None:
    async with running(standin_app(seeds), SETTINGS) as server:
        host = await Client.open(server, {"type": "create"})
        session = (await host.welcome())["session"]
        await host.until(lambda: seconds_of(host) >= 4.0, 15, "4 s")
        late = await Client.open(server, {"type": "join", "session": session, "codecs": ["opus"]})
        welcome = await late.welcome()
        first = (await late.until(lambda: late.audio, 5, "late audio"))[0][1]
        assert isinstance(first, protocol.OpusFrame)
        assert first.offset <= welcome["playhead"] < first.offset + first.frames
        for c in (host, late):
            await c.close()


async def test_recordings_download_as_mp3_opus_and_wav_of_the_asked_length(seeds) -> None:
    async with running(standin_app(seeds), SETTINGS) as server:
        host = await Client.open(server, {"type": "create"})
        session = (await host.welcome())["session"]
        await host.until(lambda: seconds_of(host) >= 5.0, 15, "5 s")
        held = server.hub.get(session).recording.seconds
        for fmt, mime in [("mp3", "audio/mpeg"), ("opus", "audio/ogg"), ("wav", "audio/wav")]:
            status, headers, body = await http_get(
                server.port, f"/recording/{session}.{fmt}?seconds=3"
            )
            assert status == 200 and headers["content-type"] == mime, (fmt, status, body[:80])
            assert f"jam-{session}.{fmt}" in headers["content-disposition"]
            decoded = AudioSegment.from_file(io.BytesIO(body))
            assert abs(decoded.duration_seconds - 3.0) < 0.1, (fmt, decoded.duration_seconds)
        before = server.hub.get(session).recording.seconds
        status, _, body = await http_get(server.port, f"/recording/{session}.wav")
        after = server.hub.get(session).recording.seconds
        length = AudioSegment.from_file(io.BytesIO(body)).duration_seconds
        assert held <= before - 0.01 <= length <= after + 0.01, "all there is, by default"
        for path, code in [
            (f"/recording/{session}.flac", 400),
            (f"/recording/{session}.mp3?seconds=0", 400),
            (f"/recording/{session}.mp3?seconds=999", 400),
            (f"/recording/{session}.mp3?seconds=lots", 400),
            ("/recording/no-such-jam.mp3", 404),
        ]:
            assert (await http_get(server.port, path))[0] == code, path
        await host.close()


def opus_as_held(frames: list[protocol.OpusFrame], channels: int) -> protocol.HeldAudio:
    """What a client following docs/protocol.md holds at 48 kHz: a fresh decoder for each
    splice (its first packets are pre-roll), kept from the splice's offset on."""
    held = protocol.HeldAudio(channels)
    runs: list[list[protocol.OpusFrame]] = []
    for f in frames:
        if not runs or "splice" in f.meta:
            runs.append([])
        runs[-1].append(f)
    for run in runs:
        to48 = CODEC_RATE / run[0].sample_rate
        start = round(run[0].offset * to48)
        audio = decode([p for f in run for p in f.packets], channels)  # pre-skip removed
        splice = run[0].meta.get("splice")
        keep = 0 if splice is None else round(splice * to48) - start
        held.write(start + keep, audio[:, keep:], splice is not None)
    return held


async def test_opus_and_pcm_listeners_hold_the_same_music_across_splices(seeds) -> None:
    async with running(standin_app(seeds), SETTINGS) as server:
        host = await Client.open(server, {"type": "create", "prompt": "one", "codecs": ["opus"]})
        welcome = await host.welcome()
        pcm = await Client.open(server, {"type": "join", "session": welcome["session"]})
        await pcm.welcome()
        await host.until(lambda: seconds_of(host) >= 2.0, 10, "2 s")
        for i, prompt in enumerate(["two", "three", "four"]):
            await host.ws.send(json.dumps({"type": "prompt", "text": prompt}))
            await pcm.until(lambda i=i: pcm.held and pcm.held.splices > i, 10, f"splice {i}")
            await host.until(lambda i=i: seconds_of(host) >= 2.0 * (i + 2), 10, "more audio")
        await pcm.until(lambda: pcm.held.end >= 9 * RATE, 15, "9 s")
        opus = [f for _, f, _ in host.audio]
        splices = [f for f in opus if "splice" in f.meta]
        assert len(splices) == 3
        step = RATE // 50
        for f in splices:  # a fresh encoder starts 4 packets (80 ms) before the splice
            assert f.offset % step == 0 and 0 < f.meta["splice"] - f.offset <= 5 * step
        held = opus_as_held(opus, channels=1)
        back = torchaudio.functional.resample(torch.from_numpy(held.audio), CODEC_RATE, RATE)
        back = back[0].numpy()
        ref = pcm.held.audio[0]
        lo = max(pcm.held.start, RATE // 2) + 200
        hi = min(pcm.held.end, held.end * RATE // CODEC_RATE) - 200
        assert hi - lo > 6 * RATE
        for f in splices:  # around every join and over the whole stream
            x = f.meta["splice"]
            for a, b in [(x - RATE // 10, x + RATE // 10), (lo, hi)]:
                want, got = ref[a - pcm.held.start : b - pcm.held.start], back[a:b]
                snr = 10 * np.log10(np.sum(want**2) / np.sum((want - got) ** 2))
                assert snr > 12, f"decoded Opus vs PCM around {a}: {snr:.1f} dB"
        for c in (host, pcm):
            await c.close()
