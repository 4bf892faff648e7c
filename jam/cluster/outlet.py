"""A worker's side of a session's frame stream: what its session emits, queued for Redis.

The session (:class:`jam.serve.session.Session`) calls an outlet synchronously as it publishes;
the worker's publishing task moves what queued here to Redis, and puts it back when Redis is
away (the oldest go first past ``limit``). What the record must remember so another worker can
continue the stream (the stream clock as wall time, the beat grid, the noise seed at the live
edge) is queued beside the entries.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from jam.cluster.record import (
    AudioEntry,
    ClockEntry,
    Entry,
    Grid,
    ImageEntry,
    TextEntry,
    grid_fields,
)
from jam.serve import protocol
from jam.serve.listener import Outgoing


def wall_offset(now: Callable[[], float]) -> float:
    """Add to a time on the session clock to get wall time (what other machines share)."""
    return time.time() - now()


class RedisOutlet:
    """A generating session's output, queued for its frame stream; what the record must
    remember (the stream clock, the grid, the seed at the live edge) queued beside it."""

    def __init__(self, sid: str, now: Callable[[], float], limit: int) -> None:
        self.sid = sid
        self.now = now
        self.limit = limit  # entries held while Redis is away; the oldest go first
        self.entries: deque[Entry] = deque()
        self.fields: dict[str, str] = {}
        self.dropped = 0
        self.ready = asyncio.Event()

    def _put(self, entry: Entry) -> None:
        self.entries.append(entry)
        while len(self.entries) > self.limit:
            self.entries.popleft()
            self.dropped += 1
        self.ready.set()

    def audio(self, encoded: dict[str, Outgoing], audio: np.ndarray, splice: int | None) -> None:
        self._put(AudioEntry(encoded, splice))

    def image(self, item: Outgoing) -> None:
        self._put(ImageEntry(item))
        frame = protocol.decode_frame(bytes(item.data))
        m = frame.meta
        if isinstance(frame, protocol.ImageFrame) and m.get("beats") and m.get("samples"):
            grid = Grid(frame.offset, float(m["samples"]) / int(m["beats"]))
            near = m["seed_to"] if float(m.get("alpha", 0)) >= 0.5 else m["seed"]
            self.fields |= grid_fields(grid) | {"seed": str(int(near))}
            self.ready.set()

    def text(self, message: str, *, controllers: bool = False, to: int | None = None) -> None:
        self._put(TextEntry(message, controllers))

    def reply(self, edge: str, listener: int, message: str) -> None:
        self._put(TextEntry(message, edge=edge, listener=listener))

    def clock(self, t0: float | None) -> None:
        wall = None if t0 is None else t0 + wall_offset(self.now)
        self._put(ClockEntry(wall))
        self.fields["t0"] = "" if wall is None else repr(wall)
        self.ready.set()

    def take(self) -> tuple[list[Entry], dict[str, str]]:
        entries, fields = list(self.entries), self.fields
        self.entries.clear()
        self.fields = {}
        self.ready.clear()
        return entries, fields

    def put_back(self, entries: list[Entry], fields: dict[str, str]) -> None:
        """Redis was away: keep them (oldest first) for the next try."""
        self.entries.extendleft(reversed(entries))
        self.fields = fields | self.fields
        while len(self.entries) > self.limit:
            self.entries.popleft()
            self.dropped += 1
