"""The beat-grid timeline of one stream (pure: no I/O, no clock, no async).

Stream positions are *stream samples* from the session's start. A placed tile's sample 0 plays
at ``start``; consecutive tiles overlap by whole beats and are joined with an equal-power
crossfade; a prompt switch shares the current tile's slot and fades in at a beat mid-tile.
:class:`Timeline` holds the tile playing now and those scheduled to fade in, and mixes any span
of samples from them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import torch

from jam.model.types import RenderedTile
from jam.sound.mixing import equal_power_weights

# (tile, share of a span's power it contributed): what a chunk's metadata reports
Mix = list[tuple["Placed", float]]


@dataclass
class Placed:
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
        """The first beat of this tile's grid at or after ``pos``."""
        k = math.ceil((pos - self.start) / self.beat_len - 1e-9)
        return self.start + round(k * self.beat_len)

    def segment(self, a: int, b: int) -> torch.Tensor:
        """Samples [a, b) of the stream from this tile, zero outside it."""
        out = torch.zeros(self.audio.shape[0], b - a)
        lo, hi = max(a, self.start), min(b, self.end)
        if hi > lo:
            out[:, lo - a : hi - a] = self.audio[:, lo - self.start : hi - self.start]
        return out

    def meta(self) -> dict[str, object]:
        r = self.tile.request
        return {
            "tile": self.id,
            "prompt": r.start.prompt,
            "prompt_to": r.end.prompt,
            "alpha": round(r.alpha, 4),
            "seed": r.start.seed,
            "seed_to": r.end.seed,
            "seed_image": r.seed_image,
            "strength": round(r.strength, 4),
        }


@dataclass(frozen=True)
class Transition:
    """``tile`` fades in over ``[fade_start, fade_start + fade_len)``, then plays alone."""

    tile: Placed
    fade_start: int
    fade_len: int

    @property
    def fade_end(self) -> int:
        return self.fade_start + self.fade_len


class Timeline:
    """The tile playing now plus the tiles scheduled to take over, on one beat grid."""

    def __init__(self, first: Placed, overlap_beats: int) -> None:
        self.current = first
        self.overlap_beats = overlap_beats
        self.scheduled: deque[Transition] = deque()

    @property
    def last(self) -> Placed:
        """The tile that plays last of all scheduled: the base of the next slot."""
        return self.scheduled[-1].tile if self.scheduled else self.current

    def slot_start(self, tile: Placed) -> int:
        """Where ``tile``'s successor begins: overlapping its last ``overlap_beats`` beats."""
        return tile.start + round((tile.beats - self.overlap_beats) * tile.beat_len)

    def all_started(self, pos: int) -> bool:
        """Whether every scheduled tile's slot has begun (then the next one may be asked for)."""
        return all(t.tile.start <= pos for t in self.scheduled)

    def drop_unstarted(self, pos: int) -> None:
        """Forget tiles queued to fade in at or after ``pos``; a fade in progress stays."""
        while self.scheduled and self.scheduled[-1].fade_start >= pos:
            self.scheduled.pop()

    def schedule_successor(self, base: Placed, tile: Placed) -> None:
        """``tile`` (placed at ``slot_start(base)``) crossfades in over the overlap beats."""
        overlap = round(self.overlap_beats * base.beat_len)
        tile.fade_start = tile.start
        self.scheduled.append(Transition(tile, tile.start, overlap))

    def switch_point(self, base: Placed, pos: int) -> int | None:
        """The beat where a switch tile sharing ``base``'s slot fades in, or None if that
        one-beat fade would not end before ``base``'s successor slot begins."""
        after = max([pos] + [t.fade_end for t in self.scheduled])
        fade_start = base.next_beat(after)
        return fade_start if fade_start + round(base.beat_len) <= self.slot_start(base) else None

    def schedule_switch(self, base: Placed, tile: Placed, fade_start: int) -> None:
        """``tile`` fades in over one of ``base``'s beats from ``fade_start``."""
        tile.fade_start = fade_start
        self.scheduled.append(Transition(tile, fade_start, round(base.beat_len)))

    def mix(self, a: int, b: int) -> tuple[torch.Tensor, Mix]:
        """Samples [a, b) of the stream, and each tile's share in them.

        Tiles whose fade-in ends inside the span become current; call with increasing spans.
        """
        out = torch.zeros(self.current.audio.shape[0], b - a)
        mix: Mix = []
        t = a
        while t < b:
            cur = self.current
            nxt = self.scheduled[0] if self.scheduled else None
            if nxt is None or t < nxt.fade_start:
                stop = b if nxt is None else min(b, nxt.fade_start)
                out[:, t - a : stop - a] = cur.segment(t, stop)
                mix.append((cur, (stop - t) / (b - a)))
                t = stop
                continue
            stop = min(b, nxt.fade_end)
            pos = (torch.arange(t, stop) - nxt.fade_start + 0.5) / nxt.fade_len
            w_out, w_in = equal_power_weights(pos)
            out[:, t - a : stop - a] = (
                cur.segment(t, stop) * w_out + nxt.tile.segment(t, stop) * w_in
            )
            share = (stop - t) / (b - a)
            mix += [
                (cur, share * float(w_out.mean() ** 2)),
                (nxt.tile, share * float(w_in.mean() ** 2)),
            ]
            t = stop
            if stop == nxt.fade_end:
                self.current = self.scheduled.popleft().tile
        return out, mix


def mix_meta(a: int, mix: Mix, sample_rate: int) -> dict[str, object]:
    """A chunk's metadata: its main tile's fields, every source's weight, beat and tempo."""
    weights: dict[int, tuple[Placed, float]] = {}
    for tile, w in mix:
        weights[tile.id] = (tile, weights.get(tile.id, (tile, 0.0))[1] + w)
    total = sum(w for _, w in weights.values()) or 1.0
    sources = [t.meta() | {"weight": round(w / total, 4)} for t, w in weights.values()]
    main = max(weights.values(), key=lambda tw: tw[1])[0]
    beat = (a - main.start) / main.beat_len
    bpm = 60.0 * sample_rate / main.beat_len
    return main.meta() | {"mix": sources, "beat": round(beat, 3), "bpm": round(bpm, 3)}
