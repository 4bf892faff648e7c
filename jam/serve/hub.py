"""The registry of live sessions: creates them, owns their tasks, frees the idle ones.

No sockets here: sessions deal in already-encoded frames, so each chunk is encoded once however
many listen, and the server only moves frames between queues and sockets. What a new session
streams comes from a :class:`StreamSource` (the composition root, :mod:`jam.app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from jam.model.device_queue import MeteredRenderer
from jam.model.types import Renderer
from jam.serve import protocol
from jam.serve.admission import Admission
from jam.serve.listener import Outgoing
from jam.serve.session import Session, SessionContext
from jam.stream.controls import SessionState
from jam.stream.producer import Audience, Chunk, RenderFailure, TileImage

log = logging.getLogger(__name__)


class StreamSource(Protocol):
    """How a session's state and endless stream are made (``jam.app.App`` is one)."""

    def new_state(self, prompt: str | None, seed_image: str | None) -> SessionState:
        """The starting state; ValueError for an unknown seed image."""
        ...

    def stream(
        self, state: SessionState, renderer: Renderer, audience: Audience
    ) -> AsyncIterator[Chunk | TileImage | RenderFailure]: ...


class Hub:
    """All live sessions; owns their producer tasks and the reaper that frees idle sessions."""

    def __init__(
        self,
        source: StreamSource,
        renderer: Renderer,
        context: SessionContext,
        *,
        admission: Admission | None = None,
        idle_seconds: float = 10.0,
        device_load: Callable[[float], float] | None = None,
    ) -> None:
        self.source = source
        self.renderer = renderer
        self.context = context
        self.clock = context.clock
        self.admission = admission or Admission()
        self.idle_seconds = idle_seconds
        self.device_load = device_load  # busy share of the device at a time (None: unknown)
        self.sessions: dict[str, Session] = {}
        self.owners: dict[str, str] = {}  # session id -> the client address that created it
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._reaper: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_forever(), name="hub-reaper")

    def create(self, request: protocol.Create, client: str = "") -> Session:
        """A new session with its producer task running; ProtocolError when refused.

        ``client`` (the peer's address) is held to the admission policy's per-client limit.
        """
        generating = [s for s in self.sessions.values() if s.listeners]
        speeds = [f for s in generating if (f := s.meter.factor) is not None]
        self.admission.check(
            live=len(self.sessions),
            generating=len(generating),
            client_live=sum(1 for owner in self.owners.values() if owner == client),
            speed=min(speeds) if speeds else None,
            measured=len(speeds),
        )
        try:
            state = self.source.new_state(request.prompt, request.seed_image)
        except (KeyError, ValueError) as e:
            raise protocol.ProtocolError("bad_value", str(e).strip("'\"")) from None
        metered = MeteredRenderer(self.renderer, self.context.sample_rate, self.clock.now)
        session = Session(self.context, state, metered.meter)
        stream = self.source.stream(state, metered, session)
        self.sessions[session.id] = session
        self.owners[session.id] = client
        task = asyncio.create_task(session.run(stream), name=f"session-{session.id}")
        task.add_done_callback(lambda t, s=session: self._session_done(s, t))
        self._tasks[session.id] = task
        log.info("session %s created: %s", session.id, state.snapshot())
        return session

    def get(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    async def open(self, request: protocol.Create, client: str = "") -> Session:
        return self.create(request, client)

    async def find(self, session_id: str) -> Session | None:
        return self.get(session_id)

    def _session_done(self, session: Session, task: asyncio.Task[None]) -> None:
        """Owner of every session task: log how it ended and tell its listeners."""
        self.sessions.pop(session.id, None)
        self.owners.pop(session.id, None)
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
            listener.close(code, reason, drain=True)
        log.info("session %s ended: %s", session.id, reason)

    async def stop_session(self, session_id: str) -> None:
        task = self._tasks.get(session_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def reap(self, now: float) -> list[str]:
        """Stop every session nobody has listened to for ``idle_seconds``; their ids."""
        idle = [
            s
            for s in self.sessions.values()
            if s.empty_since is not None and now - s.empty_since >= self.idle_seconds
        ]
        for session in idle:
            log.info("session %s idle for %.0f s: stopping", session.id, now - session.empty_since)
            await self.stop_session(session.id)
        return [s.id for s in idle]

    async def _reap_forever(self) -> None:
        while True:
            await self.clock.sleep(min(1.0, self.idle_seconds / 2))
            await self.reap(self.clock.now())

    async def close(self) -> None:
        """Stop the reaper and every producer; idempotent."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        for session_id in list(self._tasks):
            await self.stop_session(session_id)

    def stats(self, detail: bool = False) -> dict[str, object]:
        """Aggregates for anyone; per-session detail (ids included) only for the operator."""
        sessions = [s.describe() for s in self.sessions.values()]
        rtfs = [float(s["rtf"]) for s in sessions if s["rtf"] is not None]  # type: ignore[arg-type]
        load = None if self.device_load is None else self.device_load(self.clock.now())
        out: dict[str, object] = {
            "sessions": len(sessions),
            "listeners": sum(len(s.listeners) for s in self.sessions.values()),
            "real_time_factor": min(rtfs) if rtfs else None,
            "device_utilization": None if load is None else round(load, 3),
            "behind": any(s["behind"] for s in sessions),
        }
        if detail:
            out["detail"] = sessions
        return out
