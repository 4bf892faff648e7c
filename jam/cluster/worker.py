"""A cluster's generation: claim sessions nobody renders, render them, publish their frames.

A worker owns a session while it renews its lease (``SET NX PX``, renewed every
``renew_every``). It looks for sessions that have listeners, no owner and no fresh frames, and
claims what its device sustains (the same projection as admission: every session it renders must
keep ``headroom`` x real time). A claimed session continues from its record: the controls, the
noise seed at the live edge and the stream clock, with its first tile on the next beat of the
session's grid that listeners can still hear. Controls come from the session's control stream
from the last one applied, so a change acknowledged to a controller is never lost: it is applied
by whoever owns the session next if its owner died first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from jam.cluster.outlet import RedisOutlet, wall_offset
from jam.cluster.record import (
    ClusterSettings,
    EndEntry,
    Grid,
    SessionRecord,
    controls_json,
)
from jam.cluster.store import Store, StoreUnavailable
from jam.cluster.tasks import stop
from jam.model.device_queue import MeteredRenderer
from jam.model.types import Renderer
from jam.serve import protocol
from jam.serve.admission import Admission
from jam.serve.session import Session, SessionContext
from jam.stream.controls import SessionState
from jam.stream.producer import Audience, Chunk, RenderFailure, TileImage

log = logging.getLogger(__name__)

Stream = AsyncIterator[Chunk | TileImage | RenderFailure]


class Generator(Protocol):
    """How a worker makes a session's stream (``jam.app.App`` is one)."""

    chunk_seconds: float

    def stream(
        self,
        state: SessionState,
        renderer: Renderer,
        audience: Audience,
        start_at: Callable[[int], int] | None = None,
    ) -> Stream: ...


@dataclass
class Job:
    """One session this worker renders, and the tasks that do it."""

    sid: str
    session: Session
    outlet: RedisOutlet
    applied: str
    listeners: int = 0
    empty_since: float | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class Worker:
    """Claims, renders and publishes sessions of a cluster; see the module docstring."""

    def __init__(
        self,
        store: Store,
        generator: Generator,
        renderer: Renderer,
        context: SessionContext,
        settings: ClusterSettings | None = None,
        *,
        idle_seconds: float = 10.0,
        admission: Admission | None = None,
        name: str | None = None,
    ) -> None:
        self.store = store
        self.generator = generator
        self.renderer = renderer
        self.context = context
        self.clock = context.clock
        self.settings = settings or ClusterSettings()
        self.idle_seconds = idle_seconds
        self.admission = admission or Admission(max_sessions=self.settings.capacity)
        self.name = name or f"worker-{secrets.token_hex(4)}"
        self.jobs: dict[str, Job] = {}
        self.claimed = 0
        self._seen_free: dict[str, float] = {}  # session -> when first seen needing a worker
        self._loop: asyncio.Task[None] | None = None
        self._away = False  # Redis was unreachable at the last try

    # -- lifetime ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.create_task(self._run(), name=f"{self.name}-leases")

    async def close(self) -> None:
        """Stop rendering and hand every session back (its record stays: another worker, or
        this one restarted, continues it)."""
        if self._loop is not None:
            await stop([self._loop])
            self._loop = None
        for sid in list(self.jobs):
            await self._stop(sid)
            with contextlib.suppress(StoreUnavailable):
                await self.store.release(sid, self.name)

    async def _run(self) -> None:
        """A lease round every ``renew_every``, and at once when a session is announced."""
        news = self.store.news()
        try:
            while True:
                try:
                    await self.step()
                    if self._away:
                        log.info("%s: Redis is back", self.name)
                    self._away = False
                except StoreUnavailable as e:
                    if not self._away:
                        log.warning("%s: %s; retrying", self.name, e)
                    self._away = True
                except Exception:  # one bad record must not stop the worker
                    log.exception("%s: lease round failed", self.name)
                if not await news.wait(self.settings.renew_every):
                    await self.clock.sleep(self.settings.renew_every)
        finally:
            await news.close()

    async def step(self) -> None:
        """One round: renew what is ours, count its listeners, end what nobody hears, claim
        what fits."""
        now = self.clock.now()
        for sid, job in list(self.jobs.items()):
            if job.ended.is_set():
                await self._stop(sid)
                continue
            if not await self.store.renew(sid, self.name):
                log.warning("%s: lost the lease of session %s; stopping it", self.name, sid)
                await self._stop(sid)
                continue
            job.listeners = await self.store.listeners(sid)
            job.session.hear(job.listeners > 0)
            if job.listeners:
                job.empty_since = None
            elif job.empty_since is None:
                job.empty_since = now
            elif now - job.empty_since >= self.idle_seconds:
                log.info(
                    "session %s: nobody listened for %.0f s; ending it", sid, self.idle_seconds
                )
                await self._end(sid, protocol.CLOSE_SESSION_ENDED, "nobody listened")
        await self._claim_some()

    # -- claiming ------------------------------------------------------------------------------

    def _fits(self) -> bool:
        """Whether one more session fits, by the hub's rule: sessions nobody hears (they
        render nothing) count toward ``capacity`` but not toward the device's load."""
        live = [j for j in self.jobs.values() if not j.ended.is_set()]
        generating = [j for j in live if j.listeners]
        speeds = [f for j in generating if (f := j.session.meter.factor) is not None]
        try:
            self.admission.check(
                live=len(live),
                generating=len(generating),
                client_live=0,
                speed=min(speeds) if speeds else None,
                measured=len(speeds),
            )
        except protocol.ProtocolError:
            return False
        return True

    async def _claim_some(self) -> None:
        """Claim sessions that need a worker. New ones one a round, so they spread over the
        workers polling (one that already renders some waits a round longer, so an idle one
        gets there first); those whose worker died at once, as many as fit."""
        now = self.clock.now()
        busy = any(j.listeners for j in self.jobs.values())
        wait = self.settings.renew_every if busy else 0.0
        unowned = set()
        for sid in await self.store.unowned():
            if sid in self.jobs or not self._fits():
                continue
            unowned.add(sid)
            age = await self.store.frames_age(sid)
            if age is not None and age < 2 * self.settings.renew_every:
                continue  # its owner is publishing (it takes its lease back in a moment)
            listeners = await self.store.listeners(sid)
            if not listeners and (age is None or age < self.settings.abandon_seconds):
                continue  # nobody listens now: claim it if they come back
            new = age is None
            if new and now - self._seen_free.setdefault(sid, now) < wait:
                continue
            if not await self.store.claim(sid, self.name):
                continue
            record = await self.store.load(sid)
            if record is None:  # ended meanwhile
                await self.store.release(sid, self.name)
                continue
            if not listeners:  # abandoned while nobody owned it: end it properly
                await self.store.end(sid, EndEntry(protocol.CLOSE_SESSION_ENDED, "nobody listened"))
                log.info("session %s: abandoned; ended it", sid)
                continue
            self._continue(record, listeners, await self.store.audio_end(sid))
            if new:
                break
        self._seen_free = {sid: t for sid, t in self._seen_free.items() if sid in unowned}

    def _continue(self, record: SessionRecord, listeners: int, sent: int | None) -> None:
        """Render ``record``'s session from where it is (its audio sent so far ends at
        ``sent``: a first tile that starts before that replaces the rest, as a splice)."""
        sid = record.id
        state = SessionState(record.controls, seed=record.seed, steps=record.steps)
        metered = MeteredRenderer(self.renderer, self.context.sample_rate, self.clock.now)
        maxlen = self.settings.frames_maxlen(self.generator.chunk_seconds)
        outlet = RedisOutlet(sid, self.clock.now, maxlen)
        session = Session(self.context, state, metered.meter, session_id=sid, outlets=(outlet,))
        start_at = None
        if record.t0 is not None:  # it was heard: keep its clock and beat grid
            session.stream_clock.t0 = record.t0 - wall_offset(self.clock.now)
            grid = record.grid or Grid(0, self.context.sample_rate / 2)
            start_at = grid.next_beat
            session.continue_after(sent)
        session.hear(listeners > 0)
        job = Job(sid, session, outlet, record.applied, listeners)
        self.jobs[sid] = job
        self.claimed += 1
        stream = self.generator.stream(state, metered, session, start_at)
        job.tasks = [
            asyncio.create_task(self._render(job, stream), name=f"render-{sid[:8]}"),
            asyncio.create_task(self._publish(job), name=f"publish-{sid[:8]}"),
            asyncio.create_task(self._steer(job), name=f"steer-{sid[:8]}"),
        ]
        for task in job.tasks:
            task.add_done_callback(lambda t, j=job: self._task_done(j, t))
        log.info(
            "%s: continuing session %s at %s (%d listening)",
            self.name,
            sid,
            "its start" if start_at is None else "the next beat",
            listeners,
        )

    # -- a session's tasks ---------------------------------------------------------------------

    async def _render(self, job: Job, stream: Stream) -> None:
        try:
            await job.session.run(stream)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.error("session %s generation failed", job.sid, exc_info=e)
            job.outlet.text(
                protocol.error_message(
                    "generation_failed", f"generation failed: {type(e).__name__}: {e}"
                )
            )
            job.ended.set()
            await self._flush(job)
            with contextlib.suppress(StoreUnavailable):
                await self.store.end(
                    job.sid, EndEntry(protocol.CLOSE_SESSION_ENDED, "generation failed")
                )

    async def _publish(self, job: Job) -> None:
        """Move the outlet's entries (and record fields) to Redis as they come."""
        while True:
            await job.outlet.ready.wait()
            await self._flush(job)

    async def _flush(self, job: Job) -> None:
        entries, fields = job.outlet.take()
        if not entries and not fields:
            return
        try:
            if entries:
                await self.store.publish(job.sid, entries, job.outlet.limit)
            if fields:
                await self.store.update(job.sid, fields)
        except StoreUnavailable:
            job.outlet.put_back(entries, fields)
            await self.clock.sleep(0.2)

    async def _steer(self, job: Job) -> None:
        """Apply the session's controls in order, from the last one applied; a refusal goes
        back to the listener who sent it (with the state, so its page snaps back)."""
        session, outlet = job.session, job.outlet
        while True:
            try:
                got = await self.store.read_controls(job.sid, job.applied)
            except StoreUnavailable:
                await self.clock.sleep(0.2)
                continue
            for cid, raw, edge, listener in got:
                try:
                    session.apply(protocol.parse_client_message(raw))
                except protocol.ProtocolError as e:
                    outlet.reply(edge, listener, e.to_message())
                    outlet.reply(edge, listener, session.state_message())
                job.applied = cid
            if got:
                outlet.fields |= {
                    "controls": controls_json(session.state.controls),
                    "applied": job.applied,
                }
                outlet.ready.set()

    def _task_done(self, job: Job, task: asyncio.Task[None]) -> None:
        """Owner of a session's tasks: one that stops on its own ends the job."""
        if task.cancelled():
            return
        if (error := task.exception()) is not None:
            log.error("session %s: %s failed", job.sid, task.get_name(), exc_info=error)
        job.ended.set()  # the next lease round stops it

    async def _stop(self, sid: str) -> None:
        job = self.jobs.pop(sid, None)
        if job is None:
            return
        await stop(job.tasks)
        await self._flush(job)

    async def _end(self, sid: str, code: int, reason: str) -> None:
        await self._stop(sid)
        await self.store.end(sid, EndEntry(code, reason))

    def stats(self) -> dict[str, object]:
        return {
            "worker": self.name,
            "sessions": len(self.jobs),
            "claimed": self.claimed,
            "rtf": [
                None if (f := j.session.meter.factor) is None else round(f, 3)
                for j in self.jobs.values()
            ],
        }
