"""A live session: its steering state, its listeners, and the paced loop that feeds them.

The session pulls from its producer only while the next chunk starts less than ``lead`` seconds
past the playhead (:class:`jam.serve.clock.StreamClock`), so generation runs a bounded amount
ahead: work is not wasted far ahead, and prompt changes take effect soon. Each chunk is encoded
once per codec and handed to the session's outlets: its own :class:`~jam.serve.fanout.Fanout`
(the listeners on this process) and, on a cluster worker, the session's Redis stream. Time
comes from the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from jam.model.device_queue import RealTimeMeter
from jam.serve import protocol
from jam.serve.clock import Clock, StreamClock
from jam.serve.fanout import Fanout, Outlet
from jam.serve.limits import RateLimit
from jam.serve.listener import Listener, Outgoing
from jam.serve.recording import Recording
from jam.serve.settings import SessionSettings
from jam.sound.opus import CODEC_RATE, PRE_ROLL_PACKETS, PRE_SKIP, OpusEncoder
from jam.stream.controls import SessionState
from jam.stream.producer import Chunk, RenderFailure, TileImage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionContext:
    """What every session of one server shares, handed to each session by the hub."""

    settings: SessionSettings
    clock: Clock
    sample_rate: int
    channels: int
    seed_names: tuple[str, ...]  # the seed loops a controller may switch to
    welcome_extra: dict[str, object] = field(default_factory=dict)
    opus_bitrate: int | None = None  # None: PCM only (no libopus here, or switched off)
    listener_ids: Iterator[int] = field(default_factory=lambda: iter(range(1, 2**62)))


class Session:
    """One stream and everyone listening to it.

    ``session_id`` and ``outlets`` are for a session a cluster worker continues: its id from
    the session's record, and the Redis stream its listeners (on other processes) read.
    """

    def __init__(
        self,
        context: SessionContext,
        state: SessionState,
        meter: RealTimeMeter,
        *,
        session_id: str | None = None,
        outlets: Sequence[Outlet] = (),
    ) -> None:
        self.context = context
        self.settings = context.settings
        self.clock = context.clock
        self.id = session_id or secrets.token_urlsafe(16)  # 128 bits: links cannot be guessed
        self.control_token = secrets.token_urlsafe(16)
        self.state = state
        self.meter = meter
        self.chunks = 0
        self.stalls = 0
        self.behind = False
        self.ended = False
        self.stream_clock = StreamClock(
            context.sample_rate, self.settings.lead, self.settings.resume_buffer
        )
        self._published_end = 0
        self.codecs: tuple[str, ...] = ("pcm",)
        self._opus: OpusEncoder | None = None
        self._opus_fed = 0  # the stream sample after the last audio the encoder was given
        if context.opus_bitrate:
            self._opus = self._opus_from(0)
            self.codecs = ("opus", "pcm")
        self.splices = 0
        self.fanout = Fanout(
            self.settings,
            context.sample_rate,
            context.channels,
            self.codecs,
            self.playhead,
            self.clock.now,
            context.listener_ids,
        )
        self.outlets: tuple[Outlet, ...] = (self.fanout, *outlets)
        self._t0: float | None = None  # the stream clock as the outlets last heard it
        self._sent_before: int | None = None  # see continue_after
        self._last_health: float | None = None
        self._listening = asyncio.Event()  # set while anyone listens: the producer runs only then
        self._wake = asyncio.Event()  # a change, or its tile is ready: pull the producer now
        self._prompt_limit = RateLimit()
        self._setting_limit = RateLimit(count=20)

    @property
    def listeners(self) -> dict[int, Listener]:
        return self.fanout.listeners

    @property
    def empty_since(self) -> float | None:
        return self.fanout.empty_since

    @property
    def recording(self) -> Recording:
        return self.fanout.recording

    # -- clock -----------------------------------------------------------------------------

    def playhead(self, now: float | None = None) -> int:
        """The stream sample listeners are hearing now (0 before the first chunk)."""
        return self.stream_clock.playhead(self.clock.now() if now is None else now)

    def reachable(self) -> int | None:
        """The first stream sample a change may still alter: every listener's playhead plus
        the splice margin (the time re-sent frames need to arrive). None before anyone hears."""
        if not self.stream_clock.started:
            return None
        margin = round(self.settings.splice_margin * self.context.sample_rate)
        return self.playhead() + margin

    def nudge(self) -> None:
        self._wake.set()

    def lead_seconds(self, now: float | None = None) -> float:
        """How far published audio runs ahead of the playhead: the listeners' buffer."""
        if not self.stream_clock.started:
            return 0.0
        return (self._published_end - self.playhead(now)) / self.context.sample_rate

    # -- listeners -------------------------------------------------------------------------

    def join(
        self, control: bool, codecs: tuple[str, ...] = (), token: str | None = None
    ) -> Listener:
        """Add a listener at the live edge: welcome, recent tile images, then audio from now on,
        in the first of ``codecs`` this session encodes (PCM when none). (A controller's
        welcome carries this session's token; ``token`` is the one it joined with.)"""
        now = self.clock.now()
        listener = self.fanout.add(control, codecs, lambda li: self.welcome(li, now))
        self.hear(True)
        self._broadcast_listeners(now)
        log.info(
            "session %s: listener %d joined (%s), %d listening",
            self.id,
            listener.id,
            "control" if control else "listen",
            len(self.listeners),
        )
        return listener

    def leave(self, listener: Listener) -> None:
        if not self.fanout.remove(listener):
            return
        now = self.clock.now()
        self.hear(bool(self.listeners))
        self._broadcast_listeners(now)
        log.info(
            "session %s: listener %d left (sent %d, dropped %d), %d listening",
            self.id,
            listener.id,
            listener.sent,
            listener.dropped,
            len(self.listeners),
        )

    def continue_after(self, sent: int | None) -> None:
        """This session continues a stream others sent up to sample ``sent``: a first chunk
        before that goes out at once, as a splice replacing the rest of what was sent."""
        self._sent_before = sent

    def hear(self, listening: bool) -> None:
        """Whether anyone listens (here, or on a cluster's edges): the producer runs only then."""
        if listening:
            self._listening.set()
        else:
            self._listening.clear()

    def welcome(self, listener: Listener, now: float) -> str:
        return welcome_message(
            self.context,
            self.id,
            listener,
            self.playhead(now),
            len(self.listeners),
            self.state.snapshot(),
            self.control_token,
        )

    def broadcast(self, item: Outgoing, now: float | None = None) -> None:
        """Local listeners only (the hub's last words when a session ends)."""
        self.fanout.broadcast(item)

    def _say(self, message: str, *, controllers: bool = False, to: int | None = None) -> None:
        for outlet in self.outlets:
            outlet.text(message, controllers=controllers, to=to)

    def _broadcast_listeners(self, now: float) -> None:
        self.broadcast(Outgoing(protocol.encode_message("listeners", count=len(self.listeners))))

    def check_token(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.control_token.encode())

    async def steer(self, message: protocol.ClientMessage, raw: str, listener: Listener) -> None:
        self.apply(message)

    # -- control ---------------------------------------------------------------------------

    def apply(self, message: protocol.ClientMessage) -> None:
        """Apply a control message to the steering state; ProtocolError explains refusals."""
        now = self.clock.now()
        prompt = isinstance(message, protocol.PROMPT_MESSAGES)
        limit = self._prompt_limit if prompt else self._setting_limit
        if not limit.allow(now):
            raise protocol.ProtocolError(
                "rate_limited", f"too many changes; try again in {limit.retry_after(now):.1f} s"
            )
        match message:
            case protocol.SetPrompt(text):
                self.state.set_prompt(text)
            case protocol.SetPrompts(prompts):
                self.state.set_prompts(prompts)
            case protocol.SetBpm(value):
                self.state.set_bpm(value)
            case protocol.SetGlide(beats):
                self.state.set_glide(beats)
            case protocol.SetSeedImage(name):
                if name not in self.context.seed_names:
                    known = ", ".join(self.context.seed_names)
                    raise protocol.ProtocolError(
                        "bad_value", f"unknown seed image {name!r}; choose one of: {known}"
                    )
                self.state.set_seed_image(name)
            case protocol.SetStrength(value):
                self.state.set_strength(value)
            case protocol.SetGuidance(value):
                self.state.set_guidance(value)
            case _:
                raise protocol.ProtocolError("bad_type", "not a control message")
        self._say(self.state_message())
        self._wake.set()  # the producer starts its tile now, not at the next chunk's time

    def state_message(self) -> str:
        return protocol.encode_message("state", state=self.state.snapshot())

    # -- the paced producer loop -------------------------------------------------------------

    async def run(self, stream: AsyncIterator[Chunk | TileImage | RenderFailure]) -> None:
        """Pull from the producer no further than ``lead`` ahead of the playhead and fan out.

        The producer's audience is this session (:meth:`reachable`, :meth:`nudge`), so its
        splices land where every listener can still hear them, as soon as they are ready."""
        try:
            async for item in stream:
                if isinstance(item, TileImage):
                    self._publish_image(item)
                    continue
                if isinstance(item, RenderFailure):
                    if item.reverted:  # the change did not take: say what plays
                        self._say(self.state_message())
                    self._say(
                        protocol.error_message(
                            "generation_failed",
                            f"a tile failed to render ({item.reason}); "
                            + (
                                "the change was taken back"
                                if item.reverted
                                else "the last good one plays in its place"
                            ),
                            in_a_row=item.in_a_row,
                        ),
                        controllers=True,
                    )
                    continue
                if not self._listening.is_set():
                    # nobody listens: stop pulling, so the producer stops rendering; whoever
                    # joins next starts a fresh clock at the live edge, as at creation
                    await self._listening.wait()
                    self.stream_clock.reset()
                if self._sent_before is not None:
                    if item.offset < self._sent_before:
                        item = dataclasses.replace(item, splice=True)
                    self._sent_before = None
                if item.offset >= self._published_end and not item.splice:
                    await self._wait_until_due(item)  # (re-sent audio goes out at once)
                if self.stream_clock.t0 != self._t0:
                    self._t0 = self.stream_clock.t0
                    for outlet in self.outlets:
                        outlet.clock(self._t0)
                self._publish_chunk(item)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _wait_until_due(self, chunk: Chunk) -> None:
        """Wait for the chunk's time to publish, or less when woken: then it goes out early
        (the lead grows by under a chunk) so the producer gets to a change at once."""
        delay = self.stream_clock.publish_delay(chunk.offset, self.clock.now())
        if delay > 0:
            sleep = asyncio.ensure_future(self.clock.sleep(delay))
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleep, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleep.cancel()
                woken.cancel()
            self._wake.clear()  # (a wake that came while publishing is not lost: it ends this)
            return
        now = self.clock.now()
        if self.stream_clock.is_late(chunk.offset, now):
            self.stalls += 1
            self.behind = True
            self.stream_clock.resume(chunk.offset, now)
            log.warning(
                "session %s fell behind at chunk %d (stall %d)", self.id, chunk.seq, self.stalls
            )

    def _publish_chunk(self, chunk: Chunk) -> None:
        """Encode the chunk once per codec and offer each listener its own encoding.

        A splice (re-sent audio from ``chunk.offset`` on) replaces what was sent from there
        (the outlets withdraw it) and restarts the Opus encoder a few packets earlier: that
        pre-roll lets a fresh decoder settle."""
        now = self.clock.now()
        frames = chunk.audio.shape[-1]
        meta = {**chunk.meta, "seq": chunk.seq, "offset": chunk.offset}
        audio = chunk.audio
        if chunk.splice:
            meta["splice"] = chunk.offset
            self.splices += 1
        if self._opus is not None and (chunk.splice or chunk.offset != self._opus_fed):
            # A splice, or a stream that does not start at 0 (continued from another worker's):
            # restart the encoder a few packets earlier, on a packet boundary, with what is held
            # there (silence where nothing is), so its packets carry this stream's offsets.
            step = self._opus.packet_samples
            held = -(-self.recording.start // step) * step  # the first packet still held
            start = max(held, (chunk.offset // step - PRE_ROLL_PACKETS) * step)
            start = min(start, chunk.offset // step * step)
            self._opus = self._opus_from(start)
            audio = np.concatenate([self.recording.span(start, chunk.offset), audio], axis=-1)
        self._opus_fed = chunk.offset + frames
        encoded = {
            "pcm": Outgoing(
                protocol.encode_audio_frame(
                    chunk.seq, chunk.offset, chunk.sample_rate, chunk.audio, meta
                ),
                seconds=frames / chunk.sample_rate,
                offset=chunk.offset,
                end=chunk.offset + frames,
            )
        }
        if self._opus is not None and (packets := self._opus.encode(audio)):
            step = self._opus.packet_samples
            first, end = packets[0].offset, packets[-1].offset + step
            encoded["opus"] = Outgoing(
                protocol.encode_opus_frame(
                    chunk.seq,
                    first,
                    chunk.sample_rate,
                    chunk.audio.shape[0],
                    [p.data for p in packets],
                    step,
                    meta | {"offset": first},
                ),
                seconds=(end - first) / chunk.sample_rate,
                offset=first,
                end=end,
            )
        self.chunks += 1
        self._published_end = max(self._published_end, chunk.offset + frames)
        splice = chunk.offset if chunk.splice else None
        for outlet in self.outlets:
            outlet.audio(encoded, chunk.audio, splice)
        rtf = self.meter.factor
        if rtf is not None and rtf >= 1.05 and self.lead_seconds(now) > 0:
            self.behind = False
        if self._last_health is None or now - self._last_health >= self.settings.health_interval:
            self._last_health = now
            self._say(protocol.encode_message("health", **self.health(now)))

    def _opus_from(self, start: int) -> OpusEncoder:
        assert self.context.opus_bitrate
        c = self.context
        return OpusEncoder(c.sample_rate, c.channels, c.opus_bitrate, start=start)

    def _publish_image(self, image: TileImage) -> None:
        meta = {**image.meta, "tile": image.tile, "offset": image.offset}
        item = Outgoing(
            protocol.encode_image_frame(image.tile, image.offset, image.png, meta),
            offset=image.offset,
            end=image.offset,
        )
        for outlet in self.outlets:
            outlet.image(item)

    def health(self, now: float | None = None) -> dict[str, object]:
        rtf = self.meter.factor
        return {
            "lead": round(self.lead_seconds(now), 3),
            "rtf": None if rtf is None else round(min(rtf, 1e3), 3),
            "behind": self.behind,
            "stalls": self.stalls,
            "playhead": self.playhead(now),
        }

    def describe(self) -> dict[str, object]:
        return {
            "id": self.id,
            "listeners": len(self.listeners),
            "chunks": self.chunks,
            "dropped": sum(li.dropped for li in self.listeners.values()),
            **self.health(),
        }


def welcome_message(
    context: SessionContext,
    session_id: str,
    listener: Listener,
    playhead: int,
    listeners: int,
    state: dict[str, object],
    token: str | None,
) -> str:
    """What a listener hears first: the stream's format, where it is, who listens, the state
    (and, for a controller, the control token)."""
    fields: dict[str, object] = {
        "protocol": protocol.PROTOCOL_VERSION,
        "session": session_id,
        "listener": listener.id,
        "control": listener.control,
        "sample_rate": context.sample_rate,
        "channels": context.channels,
        "playhead": playhead,
        "listeners": listeners,
        "state": state,
        "codec": listener.codec,
        **context.welcome_extra,
    }
    if listener.codec == "opus":
        fields |= {"codec_rate": CODEC_RATE, "pre_skip": PRE_SKIP}
    if listener.control and token is not None:
        fields["token"] = token
    return protocol.encode_message("welcome", **fields)
