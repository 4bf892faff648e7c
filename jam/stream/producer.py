"""A session's endless stream: tiles rendered ahead, joined on the beat grid, levelled.

Every tile of a session is img2img'd from the same seed loop, a whole number of beats long, so
all tiles share one beat grid (:mod:`jam.stream.timeline`). A prompt change renders a fresh tile
for the *current* slot and crossfades into it at the next beat, mid-tile, instead of waiting for
the buffered tile to play out. The producer yields as fast as it is pulled: pacing against the
playhead is the consumer's job (the server), which keeps it a bounded lead ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from jam.model.types import RenderedTile, Renderer, TileRequest
from jam.seeds.library import SeedLibrary
from jam.sound.mixing import follow_gain_db, level_and_limit, rms_db
from jam.stream.controls import SessionState, first_request, next_request
from jam.stream.timeline import Placed, Timeline, mix_meta

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamSettings:
    """How a stream is cut and how it moves (the same for every session of a server)."""

    chunk_seconds: float = 0.25  # audio per frame on the wire
    overlap_beats: int = 1  # crossfade between successive tiles
    evolve: float = 0.25  # alpha step per tile toward the next noise seed, prompt unchanged
    glide_tiles: int = 2  # tiles from a change to the new controls at full weight
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


@dataclass(frozen=True)
class RenderFailure:
    """A render failed and its slot plays the last good tile (or the seed loop) instead."""

    reason: str
    in_a_row: int


@dataclass(frozen=True)
class TileImage:
    tile: int
    offset: int  # stream sample index where the tile's first frame plays
    png: bytes
    meta: dict[str, object] = field(default_factory=dict)


class Producer:
    """Turns a session's state into an endless stream of :class:`Chunk` and :class:`TileImage`."""

    def __init__(
        self,
        state: SessionState,
        renderer: Renderer,
        seeds: SeedLibrary,
        settings: StreamSettings = StreamSettings(),
    ) -> None:
        self.state = state
        self.renderer = renderer
        self.seeds = seeds
        self.settings = settings
        self.sample_rate = seeds.params.sample_rate
        self.chunk = max(1, round(settings.chunk_seconds * self.sample_rate))
        self.pos = 0  # next stream sample to emit
        self.timeline: Timeline | None = None
        self.pending: asyncio.Task[RenderedTile] | None = None
        self.pending_base: Placed | None = None
        self.pending_request: TileRequest | None = None
        self.pending_is_switch = False
        self.seen_version = state.version
        self.gain_db: float | None = None
        self.failures_in_row = 0
        self._failures: list[RenderFailure] = []  # to announce with the next events
        self._ids = itertools.count()
        self._seq = itertools.count()

    # --- the stream -------------------------------------------------------------------------

    async def stream(self) -> AsyncIterator[Chunk | TileImage | RenderFailure]:
        try:
            request = first_request(self.state)
            first = self._place(await self._rendered(self.renderer(request), request), start=0)
            self.timeline = Timeline(first, self.settings.overlap_beats)
            yield await self._tile_image(first)
            for failure in self._failures:
                yield failure
            self._failures.clear()
            while True:
                for event in await self._advance():
                    yield event
                yield self._emit()
        finally:
            await self._cancel_pending()

    async def _rendered(
        self, render: Awaitable[RenderedTile], request: TileRequest, base: Placed | None = None
    ) -> RenderedTile:
        """The tile, or, when its render fails, the last good one (the seed loop for the
        first): the stream keeps playing. Only ``max_failures`` in a row end it."""
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
            self._failures.append(RenderFailure(reason, self.failures_in_row))
            if base is not None:
                return RenderedTile(base.tile.request, base.tile.audio, base.tile.image)
            seed = self.seeds.get(request.seed_image)
            return RenderedTile(request, seed.audio, seed.image)
        self.failures_in_row = 0
        return tile

    async def _advance(self) -> list[TileImage | RenderFailure]:
        """Handle changes, finished renders and tile boundaries before the next chunk."""
        timeline = self.timeline
        assert timeline is not None
        events: list[TileImage | RenderFailure] = []
        if self.state.version != self.seen_version:
            self.seen_version = self.state.version
            self.state.changed.clear()
            await self._cancel_pending()
            timeline.drop_unstarted(self.pos)
            self._request(switch=True)
        end = self.pos + self.chunk
        while True:
            placed = None
            pending = self.pending
            # done, or due before this chunk ends (the renderer is behind: wait for it)
            if pending is not None and (pending.done() or self._needs_successor_by() < end):
                base = self.pending_base or timeline.last
                assert self.pending_request is not None
                placed = self._place_finished(
                    await self._rendered(pending, self.pending_request, base)
                )
            if placed is not None:
                events += self._failures
                self._failures.clear()
                events.append(await self._tile_image(placed))
            # Render one tile ahead: ask once every queued tile's slot has begun. A switch
            # shares the current slot (its start is past), so its successor is asked for at
            # once: the switch may be heard late in the slot, leaving little time.
            if self.pending is None and timeline.all_started(self.pos):
                self._request(switch=False)
                continue
            return events

    def _emit(self) -> Chunk:
        assert self.timeline is not None
        a, b = self.pos, self.pos + self.chunk
        audio, mix = self.timeline.mix(a, b)
        self.pos = b
        meta = mix_meta(a, mix, self.sample_rate)
        return Chunk(next(self._seq), a, self.sample_rate, audio.numpy(), meta)

    # --- renders ----------------------------------------------------------------------------

    def _needs_successor_by(self) -> int:
        """The stream sample by which the pending render must be placed."""
        assert self.timeline is not None
        return self.timeline.slot_start(self.pending_base or self.timeline.last)

    def _request(self, switch: bool) -> None:
        assert self.timeline is not None
        base = self.timeline.last
        s = self.settings
        req = next_request(
            base.tile.request,
            self.state.controls,
            self.state.steps,
            switch,
            s.evolve,
            s.glide_tiles,
        )
        self.pending_base = base
        self.pending_is_switch = switch
        self.pending_request = req
        self.pending = asyncio.create_task(
            self.renderer(req), name=f"render tile for {req.end.prompt!r}"
        )

    async def _cancel_pending(self) -> None:
        if self.pending is not None and not self.pending.done():
            self.pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.pending
        self.pending = None

    def _place_finished(self, rendered: RenderedTile) -> Placed:
        timeline = self.timeline
        assert timeline is not None
        base = self.pending_base or timeline.last
        self.pending = None
        if self.pending_is_switch:
            fade_start = timeline.switch_point(base, self.pos)
            if fade_start is not None:
                # the same seed keeps the same grid: the switch tile shares base's slot
                same_grid = rendered.request.seed_image == base.tile.request.seed_image
                placed = self._place(rendered, base.start if same_grid else fade_start)
                timeline.schedule_switch(base, placed, fade_start)
                return placed
        placed = self._place(rendered, timeline.slot_start(base))
        timeline.schedule_successor(base, placed)
        return placed

    def _place(self, rendered: RenderedTile, start: int) -> Placed:
        audio = rendered.audio.to(torch.float32)
        self.gain_db = follow_gain_db(self.gain_db, rms_db(audio))
        levelled = level_and_limit(audio, self.gain_db)
        beats = self.seeds.get(rendered.request.seed_image).beats
        return Placed(next(self._ids), rendered, levelled, start, beats)

    async def _tile_image(self, placed: Placed) -> TileImage:
        png = await asyncio.to_thread(_grey_png, placed.tile.image)
        meta = placed.meta() | {
            "seconds": round(placed.tile.seconds, 3),
            "beats": placed.beats,
            "fade_start": placed.fade_start,
            "samples": placed.length,
        }
        return TileImage(placed.id, placed.start, png, meta)


def _grey_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("L").save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()
