"""Sessions and their listeners: one paced producer per session, fanned out to bounded queues.

No sockets here: the hub deals in already-encoded frames (``bytes`` or ``str``), so each chunk is
encoded once however many listen, and the server only moves frames between queues and sockets.

Timing model: a session's clock starts when its first chunk arrives; the *playhead* is the stream
sample that listeners are hearing now. The session pulls from its producer only while the next
chunk starts less than ``lead`` seconds past the playhead, so generation runs a bounded amount
ahead (work is not wasted far ahead, and prompt changes take effect soon). If a chunk arrives after
its start time the server fell behind: the clock is moved so the stream resumes from that chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from jam import protocol
from jam.producer import Chunk, RenderedTile, Renderer, TileImage, TileRequest

log = logging.getLogger(__name__)

Frame = bytes | str


class State(Protocol):
    """What the hub needs of a session's steering state (``jam.producer.SessionState``)."""

    def set_prompt(self, prompt: str) -> None: ...
    def set_seed_image(self, name: str) -> None: ...
    def set_strength(self, strength: float) -> None: ...
    def set_guidance(self, guidance: float) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...


StreamFactory = Callable[[Any, Renderer], AsyncIterator[Chunk | TileImage]]
StateFactory = Callable[[protocol.Create], Any]


@dataclass(frozen=True)
class Outgoing:
    """One encoded frame and what the queue policy needs to know about it."""

    data: Frame
    seconds: float = 0.0  # audio duration (0 for text and images)
    offset: int = 0  # stream sample where it starts
    end: int = 0  # stream sample where it ends


class ListenerClosed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Listener:
    """One receiver's bounded queue. ``offer`` never blocks: a full queue drops its oldest frames.

    A listener that keeps dropping for ``kick_after`` seconds is closed with ``CLOSE_TOO_SLOW``;
    the server watches ``closed`` and closes the socket.
    """

    def __init__(
        self, listener_id: int, control: bool, max_seconds: float, kick_after: float
    ) -> None:
        self.id = listener_id
        self.control = control
        self.max_seconds = max_seconds
        self.kick_after = kick_after
        self.dropped = 0
        self.sent = 0
        self.behind_since: float | None = None
        self.closed = asyncio.Event()
        self.close_code = protocol.CLOSE_GOING_AWAY
        self.close_reason = ""
        self._queue: deque[Outgoing] = deque()
        self._queued_seconds = 0.0
        self._wake = asyncio.Event()

    @property
    def queued_seconds(self) -> float:
        return self._queued_seconds

    def offer(self, item: Outgoing, now: float) -> None:
        if self.closed.is_set():
            return
        self._queue.append(item)
        self._queued_seconds += item.seconds
        self._wake.set()
        if self._queued_seconds <= self.max_seconds:
            return
        dropped = 0
        kept: deque[Outgoing] = deque()
        while self._queue and self._queued_seconds > self.max_seconds:
            old = self._queue.popleft()
            if isinstance(old.data, str):
                kept.append(old)  # control messages are tiny and matter; keep them
                continue
            self._queued_seconds -= old.seconds
            dropped += old.seconds > 0
        self._queue.extendleft(reversed(kept))
        self.dropped += dropped
        self._queue.append(
            Outgoing(protocol.encode_message("dropped", count=dropped, total=self.dropped))
        )
        if self.behind_since is None:
            self.behind_since = now
        elif now - self.behind_since >= self.kick_after:
            self.close(protocol.CLOSE_TOO_SLOW, "listener fell behind the live stream")

    async def next(self) -> Frame:
        """The next frame to send; raises ListenerClosed once the listener is closed."""
        while not self._queue:
            if self.closed.is_set():
                raise ListenerClosed(self.close_code, self.close_reason)
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            closer = asyncio.ensure_future(self.closed.wait())
            try:
                await asyncio.wait({waiter, closer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                closer.cancel()
        if self.closed.is_set():
            raise ListenerClosed(self.close_code, self.close_reason)
        item = self._queue.popleft()
        self._queued_seconds -= item.seconds
        if self._queued_seconds <= self.max_seconds / 2:
            self.behind_since = None
        self.sent += 1
        return item.data

    def close(self, code: int, reason: str) -> None:
        if not self.closed.is_set():
            self.close_code, self.close_reason = code, reason
            self.closed.set()


class MeteredRenderer:
    """Wraps the shared renderer to measure this session's generation real-time factor."""

    def __init__(self, renderer: Renderer, sample_rate: int, window: int = 8) -> None:
        self.renderer = renderer
        self.sample_rate = sample_rate
        self.recent: deque[tuple[float, float]] = deque(maxlen=window)

    async def __call__(self, request: TileRequest) -> RenderedTile:
        start = time.monotonic()
        tile = await self.renderer(request)
        wall = time.monotonic() - start
        self.recent.append((tile.audio.shape[-1] / self.sample_rate, wall))
        return tile

    @property
    def real_time_factor(self) -> float | None:
        """Seconds of audio made per second of waiting (>1 keeps up), or None before any tile."""
        if not self.recent:
            return None
        audio = sum(a for a, _ in self.recent)
        wall = sum(w for _, w in self.recent)
        return audio / wall if wall > 0 else float("inf")


class Session:
    """A live stream: its steering state, listeners, paced producer loop and recent frames."""

    def __init__(
        self,
        hub: Hub,
        state: Any,
        stream: AsyncIterator[Chunk | TileImage],
        metered: MeteredRenderer,
    ) -> None:
        self.hub = hub
        self.id = secrets.token_urlsafe(6)
        self.control_token = secrets.token_urlsafe(16)
        self.state = state
        self.metered = metered
        self.listeners: dict[int, Listener] = {}
        self.empty_since: float | None = time.monotonic()
        self.chunks = 0
        self.stalls = 0
        self.behind = False
        self.ended = False
        self._stream = stream
        self._t0: float | None = None
        self._published_end = 0
        self._recent_audio: deque[Outgoing] = deque()
        self._recent_images: deque[Outgoing] = deque(maxlen=3)
        self._last_health = 0.0
        self._listening = asyncio.Event()  # set while anyone listens: the producer runs only then
        self._prompt_limit = protocol.RateLimit()
        self._setting_limit = protocol.RateLimit(count=20)

    # -- clock -----------------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.hub.sample_rate

    def playhead(self, now: float | None = None) -> int:
        """The stream sample listeners are hearing now (0 before the first chunk)."""
        if self._t0 is None:
            return 0
        now = time.monotonic() if now is None else now
        return int((now - self._t0) * self.sample_rate)

    def lead_seconds(self, now: float | None = None) -> float:
        """How far published audio runs ahead of the playhead: the listeners' buffer."""
        if self._t0 is None:
            return 0.0
        return (self._published_end - self.playhead(now)) / self.sample_rate

    # -- listeners -------------------------------------------------------------------------

    def join(self, control: bool) -> Listener:
        """Add a listener at the live edge: welcome, recent tile images, then audio from now on."""
        now = time.monotonic()
        # The queue holds the lead (published ahead of the playhead) plus the allowed lag.
        listener = Listener(
            self.hub.next_listener_id(),
            control,
            self.hub.lead + self.hub.listener_queue_seconds,
            self.hub.kick_after,
        )
        self.listeners[listener.id] = listener
        self.empty_since = None
        self._listening.set()
        listener.offer(Outgoing(self.welcome(listener, now)), now)
        playhead = self.playhead(now)
        for image in self._recent_images:
            listener.offer(image, now)
        for audio in self._recent_audio:
            if audio.end > playhead:
                listener.offer(audio, now)
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
        if self.listeners.pop(listener.id, None) is None:
            return
        listener.close(protocol.CLOSE_GOING_AWAY, "left")
        now = time.monotonic()
        if not self.listeners:
            self.empty_since = now
            self._listening.clear()
        self._broadcast_listeners(now)
        log.info(
            "session %s: listener %d left (sent %d, dropped %d), %d listening",
            self.id,
            listener.id,
            listener.sent,
            listener.dropped,
            len(self.listeners),
        )

    def welcome(self, listener: Listener, now: float) -> str:
        fields: dict[str, Any] = {
            "protocol": protocol.PROTOCOL_VERSION,
            "session": self.id,
            "listener": listener.id,
            "control": listener.control,
            "sample_rate": self.sample_rate,
            "channels": self.hub.channels,
            "playhead": self.playhead(now),
            "listeners": len(self.listeners),
            "state": self.state.snapshot(),
            **self.hub.welcome_extra,
        }
        if listener.control:
            fields["token"] = self.control_token
        return protocol.encode_message("welcome", **fields)

    def broadcast(self, item: Outgoing, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for listener in list(self.listeners.values()):
            listener.offer(item, now)

    def _broadcast_listeners(self, now: float) -> None:
        self.broadcast(
            Outgoing(protocol.encode_message("listeners", count=len(self.listeners))), now
        )

    # -- control ---------------------------------------------------------------------------

    def apply(self, message: protocol.ClientMessage, now: float | None = None) -> None:
        """Apply a control message to the steering state; ProtocolError explains refusals."""
        now = time.monotonic() if now is None else now
        prompt = isinstance(message, protocol.SetPrompt)
        limit = self._prompt_limit if prompt else self._setting_limit
        if not limit.allow(now):
            raise protocol.ProtocolError(
                "rate_limited", f"too many changes; try again in {limit.retry_after(now):.1f} s"
            )
        try:
            match message:
                case protocol.SetPrompt(text):
                    self.state.set_prompt(text)
                case protocol.SetSeedImage(name):
                    known = self.hub.seed_names()
                    if name not in known:
                        raise ValueError(f"unknown seed image {name!r}; choose one of {known}")
                    self.state.set_seed_image(name)
                case protocol.SetStrength(value):
                    self.state.set_strength(value)
                case protocol.SetGuidance(value):
                    self.state.set_guidance(value)
                case _:
                    raise protocol.ProtocolError("bad_type", "not a control message")
        except (KeyError, ValueError) as e:
            if isinstance(e, protocol.ProtocolError):
                raise
            raise protocol.ProtocolError("bad_value", str(e).strip("'\"")) from None
        self.broadcast(Outgoing(protocol.encode_message("state", state=self.state.snapshot())), now)

    # -- the paced producer loop -------------------------------------------------------------

    async def run(self) -> None:
        """Pull from the producer no further than ``lead`` ahead of the playhead and fan out."""
        try:
            async for item in self._stream:
                if isinstance(item, TileImage):
                    self._publish_image(item)
                    continue
                if not self._listening.is_set():
                    # nobody listens: stop pulling, so the producer stops rendering; whoever
                    # joins next starts a fresh clock at the live edge, as at creation
                    await self._listening.wait()
                    self._t0 = None
                await self._wait_until_due(item)
                self._publish_chunk(item)
        finally:
            aclose = getattr(self._stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _wait_until_due(self, chunk: Chunk) -> None:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now - chunk.offset / self.sample_rate
        start = chunk.offset / self.sample_rate
        due = self._t0 + start - self.hub.lead
        if due > now:
            await asyncio.sleep(due - now)
        elif chunk.offset < self.playhead(now):
            # Arrived after it should have started playing: listeners ran dry. Restart the clock
            # here so the stream resumes with a fresh buffer instead of staying late forever.
            self.stalls += 1
            self.behind = True
            self._t0 = now - start + self.hub.resume_buffer
            log.warning(
                "session %s fell behind at chunk %d (stall %d)", self.id, chunk.seq, self.stalls
            )

    def _publish_chunk(self, chunk: Chunk) -> None:
        now = time.monotonic()
        frames = chunk.audio.shape[-1]
        meta = {**chunk.meta, "seq": chunk.seq, "offset": chunk.offset}
        item = Outgoing(
            protocol.encode_audio_frame(
                chunk.seq, chunk.offset, chunk.sample_rate, chunk.audio, meta
            ),
            seconds=frames / chunk.sample_rate,
            offset=chunk.offset,
            end=chunk.offset + frames,
        )
        self.chunks += 1
        self._published_end = item.end
        self._recent_audio.append(item)
        playhead = self.playhead(now)
        while self._recent_audio and self._recent_audio[0].end <= playhead:
            self._recent_audio.popleft()
        self.broadcast(item, now)
        rtf = self.metered.real_time_factor
        if rtf is not None and rtf >= 1.05 and self.lead_seconds(now) > 0:
            self.behind = False
        if now - self._last_health >= self.hub.health_interval:
            self._last_health = now
            self.broadcast(Outgoing(protocol.encode_message("health", **self.health(now))), now)

    def _publish_image(self, image: TileImage) -> None:
        meta = {**image.meta, "tile": image.tile, "offset": image.offset}
        item = Outgoing(
            protocol.encode_image_frame(image.tile, image.offset, image.png, meta),
            offset=image.offset,
            end=image.offset,
        )
        self._recent_images.append(item)
        self.broadcast(item)

    def health(self, now: float | None = None) -> dict[str, Any]:
        rtf = self.metered.real_time_factor
        return {
            "lead": round(self.lead_seconds(now), 3),
            "rtf": None if rtf is None else round(min(rtf, 1e3), 3),
            "behind": self.behind,
            "stalls": self.stalls,
            "playhead": self.playhead(now),
        }

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "listeners": len(self.listeners),
            "chunks": self.chunks,
            "dropped": sum(li.dropped for li in self.listeners.values()),
            **self.health(),
        }


class Hub:
    """All live sessions; owns their producer tasks and the reaper that frees idle sessions."""

    def __init__(
        self,
        make_state: StateFactory,
        make_stream: StreamFactory,
        renderer: Renderer,
        *,
        sample_rate: int,
        channels: int = 1,
        lead: float = 1.5,
        resume_buffer: float = 0.5,
        listener_queue_seconds: float = 6.0,
        kick_after: float = 8.0,
        idle_seconds: float = 30.0,
        max_sessions: int = 16,
        health_interval: float = 1.0,
        welcome_extra: dict[str, Any] | None = None,
        seed_names: Callable[[], list[str]] | None = None,
    ) -> None:
        self.make_state = make_state
        self.make_stream = make_stream
        self.renderer = renderer
        self.sample_rate = sample_rate
        self.channels = channels
        self.lead = lead
        self.resume_buffer = resume_buffer
        self.listener_queue_seconds = listener_queue_seconds
        self.kick_after = kick_after
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self.health_interval = health_interval
        self.welcome_extra = welcome_extra or {}
        self.seed_names = seed_names or (lambda: [])
        self.sessions: dict[str, Session] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._listener_ids = 0
        self._reaper: asyncio.Task[None] | None = None

    def next_listener_id(self) -> int:
        self._listener_ids += 1
        return self._listener_ids

    def start(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_idle(), name="hub-reaper")

    def create(self, request: protocol.Create) -> Session:
        """A new session with its producer task running; ProtocolError when refused."""
        if len(self.sessions) >= self.max_sessions:
            raise protocol.ProtocolError("server_full", "too many sessions; try again later")
        try:
            state = self.make_state(request)
        except (KeyError, ValueError) as e:
            raise protocol.ProtocolError("bad_value", str(e).strip("'\"")) from None
        metered = MeteredRenderer(self.renderer, self.sample_rate)
        session = Session(self, state, self.make_stream(state, metered), metered)
        self.sessions[session.id] = session
        task = asyncio.create_task(session.run(), name=f"session-{session.id}")
        task.add_done_callback(lambda t, s=session: self._session_done(s, t))
        self._tasks[session.id] = task
        log.info("session %s created: %s", session.id, state.snapshot())
        return session

    def get(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    def _session_done(self, session: Session, task: asyncio.Task[None]) -> None:
        """Owner of every session task: log how it ended and tell its listeners."""
        self.sessions.pop(session.id, None)
        self._tasks.pop(session.id, None)
        session.ended = True
        if task.cancelled():
            reason, code = "session stopped", protocol.CLOSE_GOING_AWAY
        elif (error := task.exception()) is not None:
            log.error("session %s generation failed", session.id, exc_info=error)
            session.broadcast(
                Outgoing(
                    protocol.error_message(
                        "generation_failed", f"generation failed: {type(error).__name__}: {error}"
                    )
                )
            )
            reason, code = "generation failed", protocol.CLOSE_SESSION_ENDED
        else:
            reason, code = "stream ended", protocol.CLOSE_SESSION_ENDED
        for listener in list(session.listeners.values()):
            listener.close(code, reason)
        log.info("session %s ended: %s", session.id, reason)

    async def stop_session(self, session_id: str) -> None:
        task = self._tasks.get(session_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.idle_seconds / 2))
            now = time.monotonic()
            for session in list(self.sessions.values()):
                idle = None if session.empty_since is None else now - session.empty_since
                if idle is not None and idle >= self.idle_seconds:
                    log.info("session %s idle for %.0f s: stopping", session.id, idle)
                    await self.stop_session(session.id)

    async def close(self) -> None:
        """Stop the reaper and every producer; idempotent."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        for session_id in list(self._tasks):
            await self.stop_session(session_id)

    def stats(self) -> dict[str, Any]:
        sessions = [s.describe() for s in self.sessions.values()]
        rtfs = [s["rtf"] for s in sessions if s["rtf"] is not None]
        return {
            "sessions": len(sessions),
            "listeners": sum(s["listeners"] for s in sessions),
            "real_time_factor": min(rtfs) if rtfs else None,
            "behind": any(s["behind"] for s in sessions),
            "detail": sessions,
        }
