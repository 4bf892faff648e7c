"""Session pacing, stalls, pausing and idle reaping in virtual time (a fake clock, no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from jam.model.device_queue import RealTimeMeter
from jam.model.folder import ModelDefaults
from jam.serve import protocol
from jam.serve.clock import StreamClock
from jam.serve.session import Session, SessionContext
from jam.serve.settings import SessionSettings
from jam.stream.controls import Controls, SessionState
from jam.stream.producer import Chunk, TileImage
from tests.fakeclock import FakeClock, settle

RATE = 16000
CHUNK = RATE // 4  # 0.25 s
SETTINGS = SessionSettings(lead=1.0, resume_buffer=0.5)


def test_stream_clock_publishes_lead_seconds_ahead_and_resumes_after_a_stall():
    clock = StreamClock(RATE, lead=1.0, resume_buffer=0.5)
    assert clock.playhead(50.0) == 0 and not clock.started
    assert clock.publish_delay(0, now=100.0) == 0.0  # the first chunk starts the clock
    assert clock.publish_delay(4 * CHUNK, now=100.0) == 0.0  # 1.0 s ahead: due now
    assert clock.publish_delay(8 * CHUNK, now=100.0) == pytest.approx(1.0)
    assert clock.playhead(101.5) == int(1.5 * RATE)
    assert clock.is_late(6 * CHUNK, now=101.6) and not clock.is_late(7 * CHUNK, now=101.6)
    clock.resume(6 * CHUNK, now=101.6)
    assert clock.playhead(101.6) == 6 * CHUNK - int(0.5 * RATE)


class Gate:
    """A stream of silent chunks that the test lets through a number at a time."""

    def __init__(self) -> None:
        self.allowed = 0
        self.opened = asyncio.Event()
        self.pulled = 0

    def allow(self, n: int) -> None:
        self.allowed += n
        self.opened.set()

    async def stream(self) -> AsyncIterator[Chunk | TileImage]:
        seq = 0
        while True:
            while self.allowed <= 0:
                self.opened.clear()
                await self.opened.wait()
            self.allowed -= 1
            self.pulled += 1
            yield Chunk(seq, seq * CHUNK, RATE, np.zeros((1, CHUNK), np.float32), {"tile": 0})
            seq += 1


def session(clock: FakeClock) -> Session:
    context = SessionContext(SETTINGS, clock, RATE, 1, seed_names=("four_on_floor", "drone"))
    controls = Controls.start("lofi", ModelDefaults(), "four_on_floor", 94.0)
    state = SessionState(controls, seed=0, steps=10)
    return Session(context, state, RealTimeMeter())


async def test_a_session_publishes_only_lead_seconds_ahead_of_the_playhead():
    clock, gate = FakeClock(), Gate()
    s = session(clock)
    gate.allow(10_000)  # generation is instant: only pacing holds it back
    task = asyncio.create_task(s.run(gate.stream()))
    try:
        await settle()
        assert s.chunks == 0, "nobody listens yet: nothing is pulled"
        s.join(control=True)
        await settle()
        assert s.chunks == 5  # offsets 0 .. 1.0 s: the lead
        await clock.advance(1.0)
        assert s.chunks == 9
        assert 0.75 <= s.lead_seconds() <= 1.25
        await clock.advance(10.0)
        assert s.chunks == 49 and s.stalls == 0
    finally:
        task.cancel()


async def test_a_late_chunk_restarts_the_clock_with_the_resume_buffer_and_counts_a_stall():
    clock, gate = FakeClock(), Gate()
    s = session(clock)
    task = asyncio.create_task(s.run(gate.stream()))
    try:
        s.join(control=True)
        gate.allow(8)
        await settle()
        assert s.chunks == 5
        await clock.advance(1.0)
        assert s.chunks == 8  # then generation stalls
        await clock.advance(5.0)  # far past the end of what was sent
        assert s.chunks == 8
        gate.allow(1)
        await settle()
        assert (s.chunks, s.stalls, s.behind) == (9, 1, True)
        assert s.playhead() == 8 * CHUNK - int(SETTINGS.resume_buffer * RATE)
    finally:
        task.cancel()


async def test_nobody_listening_pauses_pulling_and_a_new_listener_starts_at_the_live_edge():
    clock, gate = FakeClock(), Gate()
    s = session(clock)
    gate.allow(10_000)
    task = asyncio.create_task(s.run(gate.stream()))
    try:
        listener = s.join(control=False)
        await clock.advance(2.0)
        published = s.chunks
        s.leave(listener)
        assert s.empty_since == clock.now()
        await clock.advance(30.0)
        assert s.chunks <= published + 1, "an empty session publishes at most the chunk in hand"
        assert gate.pulled <= s.chunks + 1, "and holds one more, unpublished"
        s.join(control=False)
        await settle()
        assert s.chunks > published
        assert s.playhead() == s.stream_clock.playhead(clock.now())
    finally:
        task.cancel()


async def test_a_seed_change_is_checked_against_the_seed_names_the_session_was_given():
    clock = FakeClock()
    s = session(clock)
    listener = s.join(control=True)
    s.apply(protocol.SetSeedImage("drone"))
    assert s.state.controls.seed_image == "drone"
    with pytest.raises(protocol.ProtocolError, match="choose one of: four_on_floor, drone"):
        s.apply(protocol.SetSeedImage("half_time"))
    assert s.state.controls.seed_image == "drone"
    assert listener.queued_seconds == 0  # state echoes are text, not audio


async def test_change_rate_limit_opens_again_after_its_window_on_the_sessions_clock():
    clock = FakeClock()
    s = session(clock)
    for i in range(protocol.PROMPT_CHANGES_PER_WINDOW):
        s.apply(protocol.SetPrompt(f"prompt {i}"))
    with pytest.raises(protocol.ProtocolError, match="try again"):
        s.apply(protocol.SetPrompt("one too many"))
    await clock.advance(protocol.PROMPT_WINDOW_SECONDS)
    s.apply(protocol.SetPrompt("allowed again"))
    assert s.state.controls.prompt == "allowed again"


class Sent:
    """An outlet that keeps the Opus frames a session sends (as a Redis outlet would)."""

    def __init__(self) -> None:
        self.opus: list[protocol.OpusFrame] = []

    def audio(self, encoded, audio, splice) -> None:
        frame = protocol.decode_frame(bytes(encoded["opus"].data))
        assert isinstance(frame, protocol.OpusFrame)
        self.opus.append(frame)

    def image(self, item) -> None:
        pass

    def text(self, message, *, controllers=False, to=None) -> None:
        pass

    def clock(self, t0) -> None:
        pass


async def test_opus_packets_of_a_continued_stream_carry_its_offsets_not_ones_from_zero():
    """A worker that continues another's stream starts at a beat far from sample 0, with no
    splice: its Opus packets must still say where they play (else a page drops them all)."""
    pytest.importorskip("av")
    from jam.sound.opus import CODEC_RATE, PRE_ROLL_PACKETS, decode

    clock, sent = FakeClock(), Sent()
    context = SessionContext(
        SETTINGS, clock, RATE, 1, seed_names=("four_on_floor",), opus_bitrate=32_000
    )
    controls = Controls.start("lofi", ModelDefaults(), "four_on_floor", 94.0)
    state = SessionState(controls, seed=0, steps=10)
    s = Session(context, state, RealTimeMeter(), session_id="continued", outlets=(sent,))
    start = 123_457  # the next beat of the grid it inherits: not on a packet boundary
    t = np.arange(8 * CHUNK) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]

    async def continued() -> AsyncIterator[Chunk | TileImage]:
        for i in range(8):
            audio = tone[:, i * CHUNK : (i + 1) * CHUNK]
            yield Chunk(i, start + i * CHUNK, RATE, audio, {"tile": 0})

    s.hear(True)
    task = asyncio.create_task(s.run(continued()))
    try:
        await clock.advance(5.0)
    finally:
        task.cancel()
    step = RATE // 50
    first = sent.opus[0].offset
    assert start - (PRE_ROLL_PACKETS + 1) * step < first <= start
    assert [f.offset for f in sent.opus[1:]] == [
        f.offset + len(f.packets) * step for f in sent.opus[:-1]
    ], "one run of packets, back to back"
    audio = decode([p for f in sent.opus for p in f.packets], 1)[0]
    at = round((start - first) * CODEC_RATE / RATE)  # where the tone starts in what was decoded
    pad = CODEC_RATE // 100
    before, after = audio[: at - pad], audio[at + pad : at + CODEC_RATE]
    assert np.sqrt(np.mean(before**2)) < 0.02 and np.sqrt(np.mean(after**2)) > 0.25
