"""The beat-grid timeline of one stream (pure: no I/O, no clock, no async).

Stream positions are *stream samples* from the session's start. A placed tile's sample 0 plays
at ``start`` (its downbeat); consecutive tiles overlap by whole beats and are crossfaded there:
at equal power, right for tiles whose phases are unrelated, or, where the new tile was inverted
from the previous one's phase (a *warm* seam: the two are partly coherent, and equal power would
swell), with gains that keep the level for the two tiles' measured correlation (equal gain if
they were identical). A change comes in as a *switch*: a tile that fades in on a beat (a bar
line when it moves the grid) and replaces everything scheduled after that point, even audio
already sent, as long as listeners have not reached it (the producer re-sends that span).
:class:`Timeline` keeps every transition listeners may still hear, and mixes any span of them
without changing them, so a span can be mixed again after a switch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from jam.model.types import RenderedTile
from jam.sound.mixing import coherent_weights, correlation
from jam.sound.tempo import BAR_BEATS

# (tile, share of a span's power it contributed): what a chunk's metadata reports
Mix = list[tuple["Placed", float]]
# what each source in a chunk's ``mix`` repeats of its tile (the rest is in the tile's image
# frame and in the chunk's own fields): every listener gets it 4 times a second
MIX_FIELDS = ("tile", "prompt", "prompt_to", "alpha", "seed", "seed_to")


@dataclass
class Placed:
    """A rendered, levelled tile placed on the stream: its sample 0 plays at ``start``."""

    id: int
    tile: RenderedTile
    audio: torch.Tensor
    start: int
    beats: int
    fade_start: int = 0  # where it begins to be heard (mid-tile for a switch)
    _meta: dict[str, object] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def length(self) -> int:
        return self.audio.shape[-1]

    @property
    def beat_len(self) -> float:
        return (self.length - self.tile.tail_samples) / self.beats

    @property
    def tail_beats(self) -> int:
        """Beats its audio plays on past its bars (its last bar again), for the next tile's
        fade: that tile's downbeat then falls on this one's bar line."""
        return self.tile.request.tail_beats

    @property
    def end(self) -> int:
        return self.start + self.length

    @property
    def grid(self) -> tuple[str, float | None]:
        """What decides its beat grid: the seed loop and the tempo."""
        return self.tile.request.seed_image, self.tile.request.bpm

    def next_beat(self, pos: int, every: int = 1) -> int:
        """The first beat of this tile's grid at or after ``pos`` (every ``every`` beats)."""
        span = self.beat_len * every
        k = math.ceil((pos - self.start) / span - 1e-9)
        return self.start + round(k * span)

    def segment(self, a: int, b: int) -> torch.Tensor:
        """Samples [a, b) of the stream from this tile, zero outside it."""
        out = torch.zeros(self.audio.shape[0], b - a)
        lo, hi = max(a, self.start), min(b, self.end)
        if hi > lo:
            out[:, lo - a : hi - a] = self.audio[:, lo - self.start : hi - self.start]
        return out

    def meta(self) -> dict[str, object]:
        """What the wire says about this tile (built once: every chunk it sounds in repeats it)."""
        if self._meta is None:
            self._meta = self._describe()
        return self._meta

    def _describe(self) -> dict[str, object]:
        r = self.tile.request
        return {
            "tile": self.id,
            "prompt": r.start.prompt,
            "prompt_to": r.end.prompt,
            "prompts": [[p.text, p.weight] for p in r.start.prompts],
            "prompts_to": [[p.text, p.weight] for p in r.end.prompts],
            "alpha": round(r.alpha, 4),
            "seed": r.start.seed,
            "seed_to": r.end.seed,
            "seed_image": r.seed_image,
            "strength": round(r.strength, 4),
            "guidance": round(r.guidance, 4),
            "bpm_to": None if r.bpm is None else round(r.bpm, 3),  # the tempo asked for
        }


@dataclass(frozen=True)
class Transition:
    """``tile`` fades in over ``[fade_start, fade_start + fade_len)``, then plays alone."""

    tile: Placed
    fade_start: int
    fade_len: int
    correlation: float = 0.0  # with the tile it fades in under, that the fade is shaped for

    @property
    def fade_end(self) -> int:
        return self.fade_start + self.fade_len


@dataclass(frozen=True)
class SwitchPlan:
    """Where a switch tile goes: its ``start``, its fade, and how many transitions stay."""

    start: int
    fade_start: int
    fade_len: int
    keep: int  # transitions before it that stay scheduled


class Timeline:
    """Every transition listeners may still hear, in order, on one beat grid.

    Fades never overlap: each transition begins once the one before it has faded in.
    """

    def __init__(self, first: Placed, overlap_beats: int) -> None:
        first.fade_start = first.start
        self.entries: list[Transition] = [Transition(first, first.start, 0)]
        self.overlap_beats = overlap_beats

    @property
    def last(self) -> Placed:
        """The tile that plays last of all scheduled: the base of the next slot."""
        return self.entries[-1].tile

    def slot_start(self, tile: Placed) -> int:
        """Where ``tile``'s successor begins: overlapping its last ``overlap_beats`` beats
        (a tile whose tail covers the overlap is followed on its next bar line)."""
        return tile.start + round(
            (tile.beats + tile.tail_beats - self.overlap_beats) * tile.beat_len
        )

    def all_started(self, pos: int) -> bool:
        """Whether the last tile's slot has begun (then the next one may be asked for)."""
        return self.last.start <= pos

    def index_at(self, pos: int) -> int:
        """The transition heard at ``pos`` (alone, or still fading in)."""
        i = 0
        while i + 1 < len(self.entries) and self.entries[i + 1].fade_start <= pos:
            i += 1
        return i

    def playing_at(self, pos: int) -> Placed:
        return self.entries[self.index_at(pos)].tile

    def forget(self, before: int) -> None:
        """Drop tiles nobody can hear any more: superseded before stream sample ``before``."""
        while len(self.entries) > 1 and self.entries[1].fade_end <= before:
            self.entries.pop(0)

    def add_successor(self, tile: Placed) -> Transition:
        """``tile`` (placed at ``slot_start(last)``) crossfades in over the overlap beats.

        A warm tile (inverted from ``last``'s audio there: the producer asks for a slot's tile
        once ``last`` is placed) gets a fade for the two tiles' correlation over it; a cold one
        equal power (their correlation is about 0, and so as not to boost tiles that cancel).
        """
        base = self.last
        fade = round(self.overlap_beats * base.beat_len)
        r = 0.0
        if tile.tile.warm:
            span = (tile.start, tile.start + fade)
            r = min(1.0, max(0.0, correlation(base.segment(*span), tile.segment(*span))))
        transition = Transition(tile, tile.start, fade, r)
        tile.fade_start = tile.start
        self.entries.append(transition)
        return transition

    def plan_switch(
        self, after: int, grid: tuple[str, float | None], fade_beats: int
    ) -> SwitchPlan:
        """Where a switch tile with beat grid ``grid`` comes in, not before ``after``.

        On the next beat of the tile heard then (after any fade in progress), or the next bar
        line when the grid moves. It keeps that tile's position in the pattern (same grid) or
        starts on its own downbeat there. The fade lasts up to ``fade_beats`` (one beat for a
        new grid) and must end before that tile's own successor is due; when not even a beat
        fits, the switch takes over that successor's slot instead.
        """
        i = self.index_at(after)
        here = self.entries[i]
        base = here.tile
        after = max(after, here.fade_end)
        same = grid == base.grid
        x = base.next_beat(after, 1 if same else BAR_BEATS)
        slot = self.slot_start(base)
        room = math.floor((slot - x) / base.beat_len + 1e-9)
        if room >= 1:
            beats = min(fade_beats, room) if same else 1
            start = base.start if same else x
            return SwitchPlan(start, x, round(beats * base.beat_len), i + 1)
        # (``after`` is past ``slot`` only while that successor is not yet placed, so its slot
        # has not been sent yet either)
        return SwitchPlan(slot, slot, round(self.overlap_beats * base.beat_len), i + 1)

    def switch_in(self, tile: Placed, plan: SwitchPlan) -> int:
        """Schedule ``tile`` by ``plan``, dropping what it supersedes; returns the first stream
        sample whose mix changed (where re-sent audio must start)."""
        dropped = self.entries[plan.keep :]
        del self.entries[plan.keep :]
        tile.fade_start = plan.fade_start
        self.entries.append(Transition(tile, plan.fade_start, plan.fade_len))
        return min([plan.fade_start] + [t.fade_start for t in dropped])

    def mix(self, a: int, b: int) -> tuple[torch.Tensor, Mix]:
        """Samples [a, b) of the stream, and each tile's share in them (changes nothing)."""
        out = torch.zeros(self.entries[0].tile.audio.shape[0], b - a)
        mix: Mix = []
        i = self.index_at(a)
        t = a
        while t < b:
            here = self.entries[i]
            nxt = self.entries[i + 1] if i + 1 < len(self.entries) else None
            if i > 0 and t < here.fade_end:
                prev = self.entries[i - 1].tile
                stop = min(b, here.fade_end)
                pos = (torch.arange(t, stop) - here.fade_start + 0.5) / here.fade_len
                w_out, w_in = coherent_weights(pos, here.correlation)
                out[:, t - a : stop - a] = (
                    prev.segment(t, stop) * w_out + here.tile.segment(t, stop) * w_in
                )
                share = (stop - t) / (b - a)
                mix += [
                    (prev, share * float(w_out.mean() ** 2)),
                    (here.tile, share * float(w_in.mean() ** 2)),
                ]
            else:
                stop = b if nxt is None else min(b, nxt.fade_start)
                out[:, t - a : stop - a] = here.tile.segment(t, stop)
                mix.append((here.tile, (stop - t) / (b - a)))
            t = stop
            if nxt is not None and t >= nxt.fade_start:
                i += 1
        return out, mix


def mix_meta(a: int, mix: Mix, sample_rate: int) -> dict[str, object]:
    """A chunk's metadata: its main tile's fields, every source's weight, beat and tempo."""
    weights: dict[int, tuple[Placed, float]] = {}
    for tile, w in mix:
        weights[tile.id] = (tile, weights.get(tile.id, (tile, 0.0))[1] + w)
    total = sum(w for _, w in weights.values()) or 1.0
    sources = [
        {k: v for k, v in t.meta().items() if k in MIX_FIELDS} | {"weight": round(w / total, 4)}
        for t, w in weights.values()
    ]
    main = max(weights.values(), key=lambda tw: tw[1])[0]
    beat = (a - main.start) / main.beat_len
    bpm = 60.0 * sample_rate / main.beat_len
    return main.meta() | {"mix": sources, "beat": round(beat, 3), "bpm": round(bpm, 3)}
