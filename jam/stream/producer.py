"""A session's endless stream: tiles rendered ahead, joined on the beat grid, levelled.

Every tile of a session is img2img'd from the same seed loop, a whole number of beats long, so
all tiles share one beat grid (:mod:`jam.stream.timeline`). A change renders a fresh tile and
*splices* it in on the first beat listeners can still reach (their playhead plus a margin, as
the session, its :class:`Audience`, says), even inside audio already sent: that span is mixed
again and re-sent as a replacement (:attr:`Chunk.splice`). The producer yields as fast as it
is pulled: pacing against the playhead is the consumer's job (the server), which keeps it a
bounded lead ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from jam.model.types import Continuation, RenderedTile, Renderer, TileRequest
from jam.seeds.library import SeedLibrary
from jam.sound.mixing import follow_gain_db, level_and_limit, rms_db
from jam.sound.tempo import loop_audio
from jam.stream.controls import (
    Controls,
    SessionState,
    first_request,
    glide_steps,
    next_request,
    switch_request,
)
from jam.stream.timeline import Placed, Timeline, mix_meta

log = logging.getLogger(__name__)


class Audience(Protocol):
    """The listeners, as the producer needs them (a session is one)."""

    def reachable(self) -> int | None:
        """The earliest stream sample a change may still alter (None: nobody hears yet)."""
        ...

    def nudge(self) -> None:
        """A render finished: pull the producer now rather than at the next chunk's time."""
        ...


@dataclass(frozen=True)
class StreamSettings:
    """How a stream is cut and how it moves (the same for every session of a server)."""

    chunk_seconds: float = 0.25  # audio per frame on the wire
    overlap_beats: int = 1  # crossfade between successive tiles
    evolve: float = 0.25  # alpha step per tile toward the next noise seed, prompt unchanged
    max_failures: int = 3  # renders failing in a row before the stream gives up


class GenerationFailed(RuntimeError):
    """Renders kept failing: the stream ends (the hub tells its listeners why)."""


@dataclass(frozen=True)
class Chunk:
    seq: int
    offset: int  # stream sample index of audio[:, 0]
    sample_rate: int
    audio: np.ndarray  # (channels, n) float32 in [-1, 1]
    meta: dict[str, object] = field(default_factory=dict)
    splice: bool = False  # replaces everything sent from ``offset`` on (the chunks after it too)


@dataclass(frozen=True)
class RenderFailure:
    """A render failed: its slot plays the last good tile (or the seed loop) instead, or, for
    a change, the change is taken back (``reverted``: the state now says what plays)."""

    reason: str
    in_a_row: int
    reverted: bool = False


@dataclass(frozen=True)
class TileImage:
    tile: int
    offset: int  # stream sample index where the tile's first frame plays
    png: bytes
    meta: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    """What the render in flight is for."""

    request: TileRequest
    switch: bool = False  # a change (spliced in on a beat), else the next slot's tile
    step: int = 1  # of a glide's ``steps``
    steps: int = 1
    fade_beats: int = 1
    not_before: int = 0  # a later glide step waits for the one before it to fade in
    version: int = 0  # the state version a change answers
    heard: Controls | None = None  # what played before the change (to take it back)
    target: Controls | None = None


class Producer:
    """Turns a session's state into an endless stream of :class:`Chunk` and :class:`TileImage`."""

    def __init__(
        self,
        state: SessionState,
        renderer: Renderer,
        seeds: SeedLibrary,
        settings: StreamSettings = StreamSettings(),
        audience: Audience | None = None,
        start_at: Callable[[int], int] | None = None,
    ) -> None:
        self.state = state
        self.renderer = renderer
        self.seeds = seeds
        self.settings = settings
        self.audience = audience  # None: offline, nothing is heard before it is made
        # where the first tile goes, given the first sample listeners can still hear (a stream
        # continued by another worker: the next beat of its grid); None: at sample 0
        self.start_at = start_at
        self.sample_rate = seeds.params.sample_rate
        self.chunk = max(1, round(settings.chunk_seconds * self.sample_rate))
        self.pos = 0  # next stream sample to emit
        self.timeline: Timeline | None = None
        self.pending: asyncio.Task[RenderedTile] | None = None
        self.plan: _Plan | None = None
        self.next_step: _Plan | None = None  # the glide step to ask for next
        self.seen_version = state.version
        self.heard = state.controls  # the controls of the last change that came in
        self.gain_db: float | None = None
        self.failures_in_row = 0
        self.render_samples = 0  # stream samples the last render took (to aim changes)
        self._asked_at = 0.0
        self.splices = 0
        self._failures: list[RenderFailure] = []  # to announce with the next events
        self._ids = itertools.count()
        self._seq = itertools.count()

    # --- the stream -------------------------------------------------------------------------

    async def stream(self) -> AsyncIterator[Chunk | TileImage | RenderFailure]:
        try:
            self._ask(_Plan(first_request(self.state)))
            assert self.pending is not None and self.plan is not None
            render, self.pending = self.pending, None
            tile = await self._rendered(render, self.plan)
            first = self._place(tile, start=self._first_start())
            self.pos = first.start
            self.timeline = Timeline(first, self.settings.overlap_beats)
            yield await self._tile_image(first)
            for failure in self._failures:
                yield failure
            self._failures.clear()
            while True:
                async for event in self._advance():
                    yield event
                yield self._emit(self.pos, self.pos + self.chunk)
                self.pos += self.chunk
        finally:
            await self._cancel_pending()

    def _first_start(self) -> int:
        return 0 if self.start_at is None else self.start_at(self._reach())

    def _reach(self) -> int:
        """The first stream sample a change may alter now."""
        r = self.audience.reachable() if self.audience is not None else None
        return self.pos if r is None else r

    async def _advance(self) -> AsyncIterator[Chunk | TileImage | RenderFailure]:
        """Handle changes, finished renders and slots due before the next chunk; what they
        produce goes out at once (a splice is never held back by a render still running)."""
        timeline = self.timeline
        assert timeline is not None
        timeline.forget(min(self.pos, self._reach()))
        if self.state.version != self.seen_version:
            self.seen_version = self.state.version
            self.state.changed.clear()
            if self._moves_music():
                await self._cancel_pending()
                self.next_step = None
                self._ask(self._switch_plan())
        end = self.pos + self.chunk
        while True:
            pending, plan = self.pending, self.plan
            # done, or due before this chunk ends (the renderer is behind: wait for it)
            due = pending is not None and (
                pending.done() or timeline.slot_start(timeline.last) < end
            )
            if due and pending is not None and plan is not None:
                self.pending = None
                tile = await self._rendered(pending, plan)
                for failure in self._failures:
                    yield failure
                self._failures.clear()
                if tile is not None:
                    for event in await self._put(tile, plan):
                        yield event
            if self.pending is None:
                if self.next_step is not None:
                    plan, self.next_step = self.next_step, None
                    self._ask(plan)
                    continue
                # Render one tile ahead: ask once the last tile's slot has begun. A switch
                # shares the slot playing now, so its successor is asked for at once.
                if timeline.all_started(self.pos):
                    prev = timeline.last
                    s = self.settings
                    after = self._continuation(prev)
                    request = next_request(prev.tile.request, self.state.steps, s.evolve, after)
                    self._ask(_Plan(request))
                    continue
            return

    def _continuation(self, tile: Placed) -> Continuation:
        """What the tile for the slot after ``tile`` fades in under: ``tile``'s unlevelled
        audio from there on. Only a slot's successor knows where it lands before it renders;
        a switch lands where its render time lets it, so it starts cold."""
        assert self.timeline is not None
        start = self.timeline.slot_start(tile) - tile.start
        return Continuation.after(tile.tile.audio, start, self.seeds.params.n_fft)

    def _emit(self, a: int, b: int, splice: bool = False) -> Chunk:
        assert self.timeline is not None
        audio, mix = self.timeline.mix(a, b)
        meta = mix_meta(a, mix, self.sample_rate)
        return Chunk(next(self._seq), a, self.sample_rate, audio.numpy(), meta, splice)

    def _resend(self, start: int) -> list[Chunk]:
        """Audio from ``start`` up to what was sent, mixed again: the replacement."""
        chunks = []
        a = start
        while a < self.pos:
            b = min(self.pos, (a // self.chunk + 1) * self.chunk)
            chunks.append(self._emit(a, b, splice=a == start))
            a = b
        return chunks

    # --- renders ----------------------------------------------------------------------------

    def _moves_music(self) -> bool:
        """Whether the state now differs from where the music is going in more than the glide
        (which only shapes later changes)."""
        plan = self.plan if self.pending is not None else None
        going = plan.target if plan is not None and plan.target is not None else self.heard
        return dataclasses.replace(self.state.controls, glide=going.glide) != going

    def _switch_plan(self) -> _Plan:
        """The first step toward the state's new controls, from the tile likely to be heard
        where it will land (now, plus about one render)."""
        assert self.timeline is not None
        c = self.state.controls
        prev = self.timeline.playing_at(self._reach() + self.render_samples).tile.request
        steps, fade = glide_steps(c.glide)
        request = switch_request(prev, c, self.state.steps, 1.0 / steps)
        return _Plan(request, True, 1, steps, fade, 0, self.state.version, self.heard, target=c)

    def _ask(self, plan: _Plan) -> None:
        # every tile plays on over the fade into the next one, so that one starts on a bar line
        tail = self.settings.overlap_beats
        if plan.request.tail_beats != tail:
            plan = dataclasses.replace(
                plan, request=dataclasses.replace(plan.request, tail_beats=tail)
            )
        self.plan = plan
        self._asked_at = asyncio.get_running_loop().time()
        self.pending = asyncio.create_task(
            self.renderer(plan.request), name=f"render tile for {plan.request.end.prompt!r}"
        )
        if plan.switch and self.audience is not None:  # a change: heard as soon as it can be
            self.pending.add_done_callback(lambda _: self.audience and self.audience.nudge())

    async def _cancel_pending(self) -> None:
        if self.pending is not None and not self.pending.done():
            self.pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.pending
        self.pending = None

    async def _rendered(
        self, render: asyncio.Future[RenderedTile] | asyncio.Task[RenderedTile], plan: _Plan
    ) -> RenderedTile | None:
        """The tile; when its render fails, a stand-in so the stream keeps playing (the last
        good tile; the seed loop for the first), or None for a change, which is taken back.
        Only ``max_failures`` in a row end the stream."""
        try:
            tile = await render
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.failures_in_row += 1
            reason = f"{type(e).__name__}: {e}"
            log.warning("render failed (%d in a row): %s", self.failures_in_row, reason)
            if self.failures_in_row >= self.settings.max_failures:
                message = f"{self.failures_in_row} renders failed in a row; last: {reason}"
                raise GenerationFailed(message) from e
            return self._failed(plan, reason)
        took = asyncio.get_running_loop().time() - self._asked_at
        self.render_samples = round(took * self.sample_rate)
        self.failures_in_row = 0
        return tile

    def _failed(self, plan: _Plan, reason: str) -> RenderedTile | None:
        if plan.switch:
            if plan.step < plan.steps:  # the glide goes on from the next step
                self.next_step = dataclasses.replace(
                    plan,
                    request=dataclasses.replace(plan.request, alpha=(plan.step + 1) / plan.steps),
                    step=plan.step + 1,
                )
            reverted = (
                plan.step == 1
                and plan.heard is not None
                and self.state.revert(plan.heard, plan.version)
            )
            self._failures.append(RenderFailure(reason, self.failures_in_row, reverted))
            return None
        self._failures.append(RenderFailure(reason, self.failures_in_row))
        if self.timeline is not None:
            last = self.timeline.last.tile
            return RenderedTile(
                plan.request, last.audio, last.image, tail_samples=last.tail_samples
            )
        seed = self.seeds.get(plan.request.seed_image)
        audio = loop_audio(seed.audio, seed.beats, plan.request.tail_beats)
        tail = audio.shape[-1] - seed.audio.shape[-1]
        return RenderedTile(plan.request, audio, seed.image, tail_samples=tail)

    async def _put(self, rendered: RenderedTile, plan: _Plan) -> list[Chunk | TileImage]:
        """Place a finished tile; a change is spliced in, re-sending what it alters."""
        timeline = self.timeline
        assert timeline is not None
        if not plan.switch:
            placed = self._place(rendered, timeline.slot_start(timeline.last))
            timeline.add_successor(placed)
            return [await self._tile_image(placed)]
        after = max(self._reach(), plan.not_before)
        r = rendered.request
        where = timeline.plan_switch(after, (r.seed_image, r.bpm), plan.fade_beats)
        placed = self._place(rendered, where.start)
        changed = timeline.switch_in(placed, where)
        images = [await self._tile_image(placed, splice=changed)]
        if timeline.slot_start(placed) < self.pos + self.chunk:
            # Its slot is over (in audio already sent) before a successor could be rendered:
            # the switch tile plays again from its downbeat there, as a failed render would,
            # and the successor after that is asked for as usual.
            again = self._place(rendered, timeline.slot_start(placed))
            timeline.add_successor(again)
            images.append(await self._tile_image(again))
        if plan.step == 1 and plan.target is not None:
            self.heard = plan.target
        if plan.step < plan.steps:
            self.next_step = dataclasses.replace(
                plan,
                request=dataclasses.replace(r, alpha=(plan.step + 1) / plan.steps),
                step=plan.step + 1,
                not_before=where.fade_start + where.fade_len,
            )
        events: list[Chunk | TileImage] = list(images)
        if changed < self.pos:
            self.splices += 1
            events += self._resend(changed)
        return events

    def _place(self, rendered: RenderedTile, start: int) -> Placed:
        audio = rendered.audio.to(torch.float32)
        self.gain_db = follow_gain_db(self.gain_db, rms_db(audio))
        levelled = level_and_limit(audio, self.gain_db)
        beats = self.seeds.get(rendered.request.seed_image).beats
        return Placed(next(self._ids), rendered, levelled, start, beats)

    async def _tile_image(self, placed: Placed, splice: int | None = None) -> TileImage:
        png = await asyncio.to_thread(_grey_png, placed.tile.image)
        meta = placed.meta() | {
            "seconds": round(placed.tile.seconds, 3),
            "beats": placed.beats,
            "fade_start": placed.fade_start,
            "samples": placed.length - placed.tile.tail_samples,  # what the image spans
        }
        if splice is not None and splice < self.pos:
            meta["splice"] = splice
        return TileImage(placed.id, placed.start, png, meta)


def _grey_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("L").save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()
