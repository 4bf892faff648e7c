"""An edge: the page and websockets for sessions that live in Redis.

Any edge admits a join to any session (the record says the token's hash, the state and the
stream clock). While one of its clients listens, the edge reads the session's frame stream from
the live edge and fans it out with the same bounded queues as a local session
(:class:`~jam.serve.fanout.Fanout`); control messages go to the session's control stream, for
whichever worker owns it. Each edge says how many of its clients listen (a count that lapses
unless renewed), so ``welcome``, ``listeners`` and ``/status`` show everyone on every edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Protocol

from jam.cluster.record import (
    AudioEntry,
    ClockEntry,
    ClusterSettings,
    EndEntry,
    Entry,
    ImageEntry,
    SessionRecord,
    TextEntry,
    parse_entry,
)
from jam.cluster.store import Store, StoreUnavailable
from jam.cluster.tasks import stop, wait_event
from jam.serve import protocol
from jam.serve.admission import Admission
from jam.serve.clock import StreamClock
from jam.serve.fanout import Fanout
from jam.serve.listener import Listener
from jam.serve.recording import Recording
from jam.serve.session import SessionContext, welcome_message
from jam.stream.controls import SessionState

log = logging.getLogger(__name__)

PRIME_SECONDS = 10.0  # frames read at subscription: the tile images and audio a joiner needs
UNAVAILABLE = "the session store is unreachable; try again in a moment"


class StateSource(Protocol):
    """How a new session's first state is made (``jam.app.App`` is one)."""

    def new_state(self, prompt: str | None, seed_image: str | None) -> SessionState: ...


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def notice(level: str, message: str) -> str:
    return protocol.encode_message("notice", level=level, message=message)


class RemoteSession:
    """A session in Redis as one edge serves it: its listeners here, fed from its frames."""

    def __init__(self, edge: EdgeHub, record: SessionRecord, token: str | None = None) -> None:
        self.edge = edge
        self.id = record.id
        self.record = record
        self.context = edge.context
        state = SessionState(record.controls, seed=record.seed, steps=record.steps)
        self.snapshot = state.snapshot()  # updated by every `state` message the worker sends
        self.token = token  # known here only on the edge that created the session
        self.clock = StreamClock(self.context.sample_rate, 0.0, 0.0)
        self._set_t0(record.t0)
        self.fanout = Fanout(
            self.context.settings,
            self.context.sample_rate,
            self.context.channels,
            edge.codecs,
            self.playhead,
            edge.clock.now,
            self.context.listener_ids,
        )
        self.total = 0  # listening on every edge
        self.ended = False
        self.last_id = "0-0"  # the frame stream entry read last
        self._counted = -1  # our count as Redis last heard it
        self._presence = asyncio.Event()
        self._away = False
        self.tasks: list[asyncio.Task[None]] = []

    # -- what the server needs -----------------------------------------------------------------

    @property
    def listeners(self) -> dict[int, Listener]:
        return self.fanout.listeners

    @property
    def recording(self) -> Recording:
        return self.fanout.recording

    def playhead(self) -> int:
        return self.clock.playhead(self.edge.clock.now())

    def check_token(self, token: str) -> bool:
        return hmac.compare_digest(digest(token), self.record.token_digest)

    def join(
        self, control: bool, codecs: tuple[str, ...] = (), token: str | None = None
    ) -> Listener:
        token = token if token is not None else self.token
        listener = self.fanout.add(
            control,
            codecs,
            lambda li: welcome_message(
                self.context,
                self.id,
                li,
                self.playhead(),
                self.total + 1,  # (this one is counted at its edge's next renewal)
                self.snapshot,
                token,
            ),
        )
        self._presence.set()
        log.info(
            "session %s: listener %d joined here (%d on this edge)",
            self.id,
            listener.id,
            len(self.listeners),
        )
        return listener

    def leave(self, listener: Listener) -> None:
        if self.fanout.remove(listener):
            self._presence.set()

    async def steer(self, message: protocol.ClientMessage, raw: str, listener: Listener) -> None:
        """Pass a control on to the session's worker: acknowledged once Redis holds it (the
        worker's ``state`` message follows; its refusal comes back to this listener)."""
        try:
            await self.edge.store.send_control(self.id, raw, self.edge.name, listener.id)
        except StoreUnavailable as e:
            log.warning("session %s: a control was refused: %s", self.id, e)
            raise protocol.ProtocolError("unavailable", UNAVAILABLE) from None

    def state_message(self) -> str:
        return protocol.encode_message("state", state=self.snapshot)

    # -- the frame stream ----------------------------------------------------------------------

    def _set_t0(self, wall: float | None) -> None:
        now = self.edge.clock.now()
        self.clock.t0 = None if wall is None else wall - (time.time() - now)

    def apply(self, entry: Entry) -> None:
        """One frame stream entry, to this edge's listeners."""
        match entry:
            case AudioEntry(encoded, splice):
                pcm = protocol.decode_frame(bytes(encoded["pcm"].data))
                assert isinstance(pcm, protocol.AudioFrame)
                self.fanout.audio(encoded, pcm.pcm / 32768.0, splice)
            case ImageEntry(item):
                self.fanout.image(item)
            case TextEntry(message, controllers, edge, listener):
                if listener is not None:
                    if edge == self.edge.name:
                        self.fanout.text(message, to=listener)
                    return
                said = json.loads(message)  # what a welcome must repeat: the state, the count
                if said.get("type") == "state":
                    self.snapshot = said["state"]
                elif said.get("type") == "listeners":
                    self.total = int(said["count"])
                self.fanout.text(message, controllers=controllers)
            case ClockEntry(t0):
                self._set_t0(t0)
            case EndEntry(code, reason):
                self.end(code, reason)

    def end(self, code: int, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.fanout.close_all(code, reason)
        log.info("session %s ended: %s", self.id, reason)

    async def prime(self) -> None:
        """Read the last seconds of frames, so a joiner starts with the tile images and the
        audio from the playhead on, then follow from there."""
        recent = await self.edge.store.recent_frames(self.id, PRIME_SECONDS)
        for entry_id, raw in recent:
            self._apply_raw(entry_id, raw)
        if not recent:  # quiet for a while (or new): from its newest entry on
            self.last_id = await self.edge.store.last_frame_id(self.id)

    def _apply_raw(self, entry_id: str, raw: dict[bytes, bytes]) -> None:
        self.last_id = entry_id
        try:
            entry = parse_entry(raw, self.context.sample_rate, self.edge.codecs)
        except (KeyError, ValueError) as e:
            log.warning("session %s: skipping an unreadable frame entry (%s)", self.id, e)
            return
        self.apply(entry)

    async def follow(self) -> None:
        """Read the frame stream as it grows, until the session ends; Redis away is a notice
        to the listeners and a retry, never an end."""
        store = self.edge.store
        while not self.ended:
            try:
                got = await store.read_frames(self.id, self.last_id)
            except StoreUnavailable as e:
                if not self._away:
                    log.warning("session %s: %s", self.id, e)
                    self.fanout.text(
                        notice("warn", "The jam's server lost its session store; reconnecting…")
                    )
                self._away = True
                await self.edge.clock.sleep(0.5)
                continue
            if self._away:
                self._away = False
                self.fanout.text(notice("info", "Reconnected to the session store."))
                if await store.load(self.id) is None:
                    self.end(protocol.CLOSE_SESSION_ENDED, "the session's record is gone")
            for entry_id, raw in got:
                self._apply_raw(entry_id, raw)

    async def count(self) -> None:
        """Tell Redis how many listen here (on a change at once, else every
        ``presence_every``), and tell everyone the new total when it moved."""
        store, settings = self.edge.store, self.edge.settings
        while True:
            await wait_event(self._presence, settings.presence_every)
            self._presence.clear()
            here = len(self.listeners)
            try:
                total = await store.set_listeners(self.id, self.edge.name, here)
                if here != self._counted or total != self.total:
                    self.total = total
                    message = protocol.encode_message("listeners", count=total)
                    await store.publish(self.id, [TextEntry(message)])  # the worker trims
                self._counted = here
            except StoreUnavailable:
                await self.edge.clock.sleep(0.5)


class EdgeHub:
    """The sessions an edge serves: the same calls as :class:`jam.serve.hub.Hub`, on Redis."""

    def __init__(
        self,
        store: Store,
        source: StateSource,
        context: SessionContext,
        settings: ClusterSettings | None = None,
        *,
        admission: Admission | None = None,
        name: str | None = None,
        linger: float = 10.0,
    ) -> None:
        self.store = store
        self.source = source
        self.context = context
        self.clock = context.clock
        self.settings = settings or ClusterSettings()
        self.admission = admission or Admission()
        self.name = name or f"edge-{secrets.token_hex(4)}"
        self.codecs: tuple[str, ...] = ("opus", "pcm") if context.opus_bitrate else ("pcm",)
        self.linger = linger  # seconds a session nobody here listens to stays subscribed
        self.sessions: dict[str, RemoteSession] = {}
        self.owners: dict[str, str] = {}  # session id -> the client that created it here
        self._empty: dict[str, float] = {}
        self._pending: dict[str, asyncio.Future[RemoteSession]] = {}
        self._cluster = {"sessions": 0, "listeners": 0}
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.create_task(self._tend(), name=f"{self.name}-tend")

    async def close(self) -> None:
        """Unsubscribe everything (listeners are closed by the server); records stay."""
        if self._loop is not None:
            await stop([self._loop])
            self._loop = None
        for sid in list(self.sessions):
            await self._unsubscribe(sid)

    # -- the server's calls --------------------------------------------------------------------

    async def open(self, request: protocol.Create, client: str = "") -> RemoteSession:
        """A new session in Redis (a worker picks it up); ProtocolError when refused."""
        self.admission.check(
            live=self._cluster["sessions"],
            generating=0,
            client_live=sum(1 for owner in self.owners.values() if owner == client),
        )
        try:
            state = self.source.new_state(request.prompt, request.seed_image)
        except (KeyError, ValueError) as e:
            raise protocol.ProtocolError("bad_value", str(e).strip("'\"")) from None
        token, now = secrets.token_urlsafe(16), time.time()
        record = SessionRecord(
            secrets.token_urlsafe(16),
            digest(token),
            state.controls,
            state.seed,
            state.steps,
            now,
            now,
        )
        try:
            await self.store.create(record)
            session = await self._subscribe(record, token)
            await self.store.set_listeners(record.id, self.name, 1)  # its creator, joining now
            await self.store.announce(record.id)
        except StoreUnavailable:
            raise protocol.ProtocolError("unavailable", UNAVAILABLE) from None
        self.owners[record.id] = client
        log.info("session %s created in Redis: %s", record.id, state.snapshot())
        return session

    async def find(self, session_id: str) -> RemoteSession | None:
        if (session := self.sessions.get(session_id)) is not None and not session.ended:
            return session
        try:
            record = await self.store.load(session_id)
            return None if record is None else await self._subscribe(record)
        except StoreUnavailable:
            raise protocol.ProtocolError("unavailable", UNAVAILABLE) from None

    def get(self, session_id: str) -> RemoteSession | None:
        return self.sessions.get(session_id)

    def stats(self, detail: bool = False) -> dict[str, object]:
        out: dict[str, object] = {
            **self._cluster,
            "edge": self.name,
            "here": {
                "sessions": len(self.sessions),
                "listeners": sum(len(s.listeners) for s in self.sessions.values()),
            },
            "real_time_factor": None,
            "device_utilization": None,
            "behind": False,
        }
        if detail:
            out["detail"] = [
                {"id": s.id, "listeners": len(s.listeners), "total": s.total}
                for s in self.sessions.values()
            ]
        return out

    # -- subscriptions -------------------------------------------------------------------------

    async def _subscribe(self, record: SessionRecord, token: str | None = None) -> RemoteSession:
        """Follow a session's frames here (once, however many join at the same moment)."""
        if (live := self.sessions.get(record.id)) is not None and not live.ended:
            return live
        if (pending := self._pending.get(record.id)) is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[RemoteSession] = asyncio.get_running_loop().create_future()
        self._pending[record.id] = future
        try:
            session = await self._start(record, token)
            future.set_result(session)
            return session
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: a failure is raised to every waiter, not logged
            raise
        finally:
            del self._pending[record.id]

    async def _start(self, record: SessionRecord, token: str | None) -> RemoteSession:
        session = RemoteSession(self, record, token)
        await session.prime()
        session.total = await self.store.listeners(record.id)
        old = self.sessions.pop(record.id, None)
        if old is not None:  # it had ended
            await self._cancel(old)
        self.sessions[record.id] = session
        for name, job in (("follow", session.follow()), ("count", session.count())):
            task = asyncio.create_task(job, name=f"{name}-{record.id[:8]}")
            task.add_done_callback(lambda t, s=session: self._task_done(s, t))
            session.tasks.append(task)
        return session

    def _task_done(self, session: RemoteSession, task: asyncio.Task[None]) -> None:
        """Owner of a subscription's tasks: log a failure; the tend loop drops it."""
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("session %s: %s failed", session.id, task.get_name(), exc_info=error)
            session.end(protocol.CLOSE_SESSION_ENDED, "the edge lost the stream")

    async def _cancel(self, session: RemoteSession) -> None:
        await stop(session.tasks)

    async def _unsubscribe(self, sid: str) -> None:
        session = self.sessions.pop(sid, None)
        self.owners.pop(sid, None)
        self._empty.pop(sid, None)
        if session is None:
            return
        await self._cancel(session)
        with contextlib.suppress(StoreUnavailable):
            await self.store.set_listeners(sid, self.name, 0)

    async def _tend(self) -> None:
        """Drop subscriptions nobody here listens to (after ``linger``) or that ended; keep
        the cluster-wide figures for ``/status``."""
        while True:
            now = self.clock.now()
            for sid, session in list(self.sessions.items()):
                if session.ended:
                    await self._unsubscribe(sid)
                elif session.listeners:
                    self._empty.pop(sid, None)
                elif now - self._empty.setdefault(sid, now) >= self.linger:
                    await self._unsubscribe(sid)
            try:
                sids = await self.store.sessions()
                totals = await self.store.totals(sids)
                self._cluster = {"sessions": len(sids), "listeners": sum(totals)}
            except StoreUnavailable:
                pass
            await self.clock.sleep(1.0)
