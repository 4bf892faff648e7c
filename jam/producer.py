"""A session's endless stream: tiles rendered ahead, joined on the beat grid, levelled.

Every tile of a session is img2img'd from the same seed loop, a whole number of beats long, so
all tiles share one beat grid. Consecutive tiles overlap by a whole number of beats and are
joined with an equal-power crossfade; a prompt change renders a fresh tile for the *current*
slot and crossfades into it at the next beat, mid-tile, instead of waiting for the buffered
tile to play out. The producer yields as fast as it is pulled: pacing against the playhead is
the consumer's job (the server), which keeps it about a tile ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import itertools
import logging
import math
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from jam.audio import equal_power_weights, follow_gain_db, level_and_limit, rms_db

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    """One end of an interpolation: what to make and with which noise."""

    prompt: str
    seed: int
    strength: float = 0.75
    guidance: float = 7.0
    negative_prompt: str = ""


@dataclass(frozen=True)
class TileRequest:
    """One tile to render: a point ``alpha`` of the way from ``start`` to ``end``."""

    start: Endpoint
    end: Endpoint
    alpha: float
    seed_image: str
    steps: int


@dataclass
class RenderedTile:
    request: TileRequest
    audio: torch.Tensor  # (channels, samples) float32 on the CPU
    image: Image.Image  # the tile's spectrogram, for display
    seconds: float = 0.0  # compute time spent on it


class Renderer(Protocol):
    """Anything that turns a request into a tile: the device queue, or a test stand-in."""

    async def __call__(self, request: TileRequest) -> RenderedTile: ...


@dataclass(frozen=True)
class Chunk:
    seq: int
    offset: int  # stream sample index of audio[:, 0]
    sample_rate: int
    audio: np.ndarray  # (channels, n) float32 in [-1, 1]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TileImage:
    tile: int
    offset: int  # stream sample index where the tile's first frame plays
    png: bytes
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Controls:
    """What a session's controller can change; a snapshot is taken per tile request."""

    prompt: str
    seed_image: str = "four_on_floor"
    strength: float = 0.75
    guidance: float = 7.0
    negative_prompt: str = ""


class SessionState:
    """The live controls of one session. The server writes; the producer reads per tile."""

    def __init__(self, controls: Controls, *, seed: int = 0, steps: int = 50) -> None:
        self.controls = controls
        self.seed = seed
        self.steps = steps
        self.version = 0
        self.changed = asyncio.Event()

    def update(self, **changes: Any) -> None:
        new = dataclasses.replace(self.controls, **changes)
        if new != self.controls:
            self.controls = new
            self.version += 1
            self.changed.set()

    def set_prompt(self, prompt: str) -> None:
        self.update(prompt=prompt)

    def set_seed_image(self, name: str) -> None:
        self.update(seed_image=name)

    def set_strength(self, strength: float) -> None:
        self.update(strength=float(strength))

    def set_guidance(self, guidance: float) -> None:
        self.update(guidance=float(guidance))

    def snapshot(self) -> dict[str, Any]:
        return dataclasses.asdict(self.controls) | {"seed": self.seed, "steps": self.steps}


# --- the alpha walk (pure) ------------------------------------------------------------------


def first_request(state: SessionState) -> TileRequest:
    c = state.controls
    here = Endpoint(c.prompt, state.seed, c.strength, c.guidance, c.negative_prompt)
    return TileRequest(here, here, 0.0, c.seed_image, state.steps)


def next_request(
    prev: TileRequest,
    controls: Controls,
    steps: int,
    changed: bool,
    evolve: float,
    glide_tiles: int,
) -> TileRequest:
    """The request after ``prev``: glide toward changed controls, else drift to a new seed.

    A change starts a new walk from the endpoint nearest to where ``prev`` was, toward the new
    controls with the same noise, reaching them in ``glide_tiles`` tiles. A steady prompt
    walks alpha by ``evolve`` per tile toward the next seed, so the music keeps evolving.
    """
    c = controls
    if changed:
        here = prev.start if prev.alpha < 0.5 else prev.end
        there = Endpoint(c.prompt, here.seed, c.strength, c.guidance, c.negative_prompt)
        return TileRequest(here, there, 1.0 / glide_tiles, c.seed_image, steps)
    if prev.start == prev.end or prev.alpha >= 1.0 - 1e-6:
        here = prev.end  # arrived: drift from here toward the next seed
        return TileRequest(
            here, dataclasses.replace(here, seed=here.seed + 1), evolve, prev.seed_image, steps
        )
    gliding = dataclasses.replace(prev.start, seed=prev.end.seed) != prev.end
    step = 1.0 / glide_tiles if gliding else evolve
    return dataclasses.replace(prev, alpha=min(1.0, prev.alpha + step), steps=steps)


# --- placement on the stream timeline ---------------------------------------------------------


@dataclass
class _Placed:
    """A rendered, levelled tile placed on the stream: its sample 0 plays at ``start``."""

    id: int
    tile: RenderedTile
    audio: torch.Tensor
    start: int
    beats: int
    fade_start: int = 0  # where it begins to be heard (mid-tile for a prompt switch)

    @property
    def length(self) -> int:
        return self.audio.shape[-1]

    @property
    def beat_len(self) -> float:
        return self.length / self.beats

    @property
    def end(self) -> int:
        return self.start + self.length

    def next_beat(self, pos: int) -> int:
        k = math.ceil((pos - self.start) / self.beat_len - 1e-9)
        return self.start + round(k * self.beat_len)

    def segment(self, a: int, b: int) -> torch.Tensor:
        """Samples [a, b) of the stream from this tile, zero outside it."""
        out = torch.zeros(self.audio.shape[0], b - a)
        lo, hi = max(a, self.start), min(b, self.end)
        if hi > lo:
            out[:, lo - a : hi - a] = self.audio[:, lo - self.start : hi - self.start]
        return out

    def meta(self) -> dict[str, Any]:
        r = self.tile.request
        return {
            "tile": self.id,
            "prompt": r.start.prompt,
            "prompt_to": r.end.prompt,
            "alpha": round(r.alpha, 4),
            "seed": r.start.seed,
            "seed_to": r.end.seed,
            "seed_image": r.seed_image,
            "strength": round(r.start.strength + (r.end.strength - r.start.strength) * r.alpha, 4),
        }


@dataclass
class _Transition:
    tile: _Placed
    fade_start: int
    fade_len: int


class Producer:
    """Turns a session's state into an endless stream of :class:`Chunk` and :class:`TileImage`."""

    def __init__(
        self,
        state: SessionState,
        renderer: Renderer,
        seeds: Any,  # jam.seeds.SeedLibrary: beats per seed loop
        sample_rate: int,
        *,
        chunk_seconds: float = 0.25,
        overlap_beats: int = 1,
        evolve: float = 0.25,
        glide_tiles: int = 2,
    ) -> None:
        self.state = state
        self.renderer = renderer
        self.seeds = seeds
        self.sample_rate = sample_rate
        self.chunk = max(1, round(chunk_seconds * sample_rate))
        self.overlap_beats = overlap_beats
        self.evolve = evolve
        self.glide_tiles = glide_tiles
        self.pos = 0  # next stream sample to emit
        self.current: _Placed | None = None
        self.scheduled: deque[_Transition] = deque()
        self.pending: asyncio.Task[RenderedTile] | None = None
        self.pending_base: _Placed | None = None
        self.pending_is_switch = False
        self.seen_version = state.version
        self.gain_db: float | None = None
        self._ids = itertools.count()
        self._seq = itertools.count()
        self.render_seconds: deque[float] = deque(maxlen=8)

    # --- the stream -------------------------------------------------------------------------

    async def stream(self) -> AsyncIterator[Chunk | TileImage]:
        try:
            first = await self.renderer(first_request(self.state))
            self.current = self._place(first, start=0)
            yield await self._tile_image(self.current)
            while True:
                for event in await self._advance():
                    yield event
                yield self._emit()
        finally:
            await self._cancel_pending()

    async def _advance(self) -> list[TileImage]:
        """Handle changes, finished renders and tile boundaries before the next chunk."""
        events: list[TileImage] = []
        if self.state.version != self.seen_version:
            self.seen_version = self.state.version
            self.state.changed.clear()
            await self._cancel_pending()
            # drop tiles queued to play that have not begun; keep a fade in progress
            while self.scheduled and self.scheduled[-1].fade_start >= self.pos:
                self.scheduled.pop()
            self._request(switch=True)
        end = self.pos + self.chunk
        while True:
            placed = None
            if self.pending is not None and self.pending.done():
                placed = self._place_finished(self.pending.result())
            elif self.pending is not None and self._needs_successor_by() < end:
                placed = self._place_finished(await self.pending)  # renderer is behind: wait
            if placed is not None:
                events.append(await self._tile_image(placed))
            if self.pending is None and self._wants_request():
                self._request(switch=False)
                continue
            return events

    def _emit(self) -> Chunk:
        a, b = self.pos, self.pos + self.chunk
        out = torch.zeros(self._channels(), b - a)
        mix: list[tuple[_Placed, float]] = []
        t = a
        while t < b:
            cur = self.current
            assert cur is not None
            nxt = self.scheduled[0] if self.scheduled else None
            if nxt is None or t < nxt.fade_start:
                stop = b if nxt is None else min(b, nxt.fade_start)
                out[:, t - a : stop - a] = cur.segment(t, stop)
                mix.append((cur, (stop - t) / self.chunk))
                t = stop
                continue
            stop = min(b, nxt.fade_start + nxt.fade_len)
            pos = (torch.arange(t, stop) - nxt.fade_start + 0.5) / nxt.fade_len
            w_out, w_in = equal_power_weights(pos)
            out[:, t - a : stop - a] = (
                cur.segment(t, stop) * w_out + nxt.tile.segment(t, stop) * w_in
            )
            share = (stop - t) / self.chunk
            mix += [
                (cur, share * float(w_out.mean() ** 2)),
                (nxt.tile, share * float(w_in.mean() ** 2)),
            ]
            t = stop
            if stop == nxt.fade_start + nxt.fade_len:
                self.current = self.scheduled.popleft().tile
        self.pos = b
        return Chunk(next(self._seq), a, self.sample_rate, out.numpy(), self._chunk_meta(a, mix))

    # --- renders ----------------------------------------------------------------------------

    def _last(self) -> _Placed:
        return self.scheduled[-1].tile if self.scheduled else self.current  # type: ignore[return-value]

    def _slot_start(self, tile: _Placed) -> int:
        """Where ``tile``'s successor begins: overlapping its last ``overlap_beats`` beats."""
        return tile.start + round((tile.beats - self.overlap_beats) * tile.beat_len)

    def _wants_request(self) -> bool:
        """Render one tile ahead: ask once every queued tile's slot has begun.

        A prompt switch shares the current slot (its start is in the past), so its successor
        is asked for at once: the switch may be heard late in the slot, leaving little time.
        """
        return all(t.tile.start <= self.pos for t in self.scheduled)

    def _needs_successor_by(self) -> int:
        """The stream sample by which the pending render must be placed."""
        return self._slot_start(self.pending_base or self._last())

    def _request(self, switch: bool) -> None:
        base = self._last()
        changed = switch
        req = next_request(
            base.tile.request,
            self.state.controls,
            self.state.steps,
            changed,
            self.evolve,
            self.glide_tiles,
        )
        self.pending_base = base
        self.pending_is_switch = switch
        self.pending = asyncio.create_task(
            self.renderer(req), name=f"render tile for {req.end.prompt!r}"
        )

    async def _cancel_pending(self) -> None:
        if self.pending is not None and not self.pending.done():
            self.pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.pending
        self.pending = None

    def _place_finished(self, rendered: RenderedTile) -> _Placed:
        base = self.pending_base or self._last()
        is_switch = self.pending_is_switch
        self.pending = None
        self.render_seconds.append(rendered.seconds)
        slot = self._slot_start(base)
        beats = self._beats(rendered.request.seed_image)
        overlap = round(self.overlap_beats * base.beat_len)
        same_grid = rendered.request.seed_image == base.tile.request.seed_image
        if is_switch:
            after = max([self.pos] + [t.fade_start + t.fade_len for t in self.scheduled])
            fade_start = base.next_beat(after)
            fade_len = round(base.beat_len)
            if fade_start + fade_len <= slot:
                start = base.start if same_grid else fade_start
                placed = self._place(rendered, start, beats)
                placed.fade_start = fade_start
                self.scheduled.append(_Transition(placed, fade_start, fade_len))
                return placed
        placed = self._place(rendered, slot, beats)
        placed.fade_start = slot
        self.scheduled.append(_Transition(placed, slot, overlap))
        return placed

    def _place(self, rendered: RenderedTile, start: int, beats: int | None = None) -> _Placed:
        audio = rendered.audio.to(torch.float32)
        self.gain_db = follow_gain_db(self.gain_db, rms_db(audio))
        levelled = level_and_limit(audio, self.gain_db)
        beats = beats or self._beats(rendered.request.seed_image)
        return _Placed(next(self._ids), rendered, levelled, start, beats)

    def _beats(self, seed_image: str) -> int:
        return self.seeds.get(seed_image).beats

    def _channels(self) -> int:
        return self.current.audio.shape[0] if self.current is not None else 1

    # --- metadata ---------------------------------------------------------------------------

    def _chunk_meta(self, a: int, mix: list[tuple[_Placed, float]]) -> dict[str, Any]:
        weights: dict[int, tuple[_Placed, float]] = {}
        for tile, w in mix:
            weights[tile.id] = (tile, weights.get(tile.id, (tile, 0.0))[1] + w)
        total = sum(w for _, w in weights.values()) or 1.0
        sources = [t.meta() | {"weight": round(w / total, 4)} for t, w in weights.values()]
        main = max(weights.values(), key=lambda tw: tw[1])[0]
        beat = (a - main.start) / main.beat_len
        bpm = 60.0 * self.sample_rate / main.beat_len
        return main.meta() | {"mix": sources, "beat": round(beat, 3), "bpm": round(bpm, 3)}

    async def _tile_image(self, placed: _Placed) -> TileImage:
        png = await asyncio.to_thread(_grey_png, placed.tile.image)
        meta = placed.meta() | {
            "seconds": round(placed.tile.seconds, 3),
            "beats": placed.beats,
            "fade_start": placed.fade_start,
            "samples": placed.length,
        }
        return TileImage(placed.id, placed.start, png, meta)

    def realtime_factor(self) -> float | None:
        """Compute seconds per second of new audio, over recent tiles (< 1 keeps up)."""
        if not self.render_seconds or self.current is None:
            return None
        advance = (self.current.beats - self.overlap_beats) * self.current.beat_len
        return (sum(self.render_seconds) / len(self.render_seconds)) / (advance / self.sample_rate)


def _grey_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("L").save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()
