"""Time as an input: the clock the serving code reads, and a session's stream clock (pure).

Nothing under ``jam.serve`` calls ``time`` or ``asyncio.sleep`` directly; it asks a
:class:`Clock`, so tests drive pacing, drop/kick and idle reaping with a fake one in virtual
time. :class:`StreamClock` is the pure mapping between stream samples and wall time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real monotonic clock."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class StreamClock:
    """Which stream sample is playing at a given moment, for one session.

    It starts when the first chunk is published; the *playhead* is the sample listeners hear
    now. A chunk is published ``lead`` seconds before it plays, so listeners hold that much
    buffer. A chunk that comes after its start (generation fell behind) restarts the clock so
    the stream resumes from it with ``resume_buffer`` of lead instead of staying late forever.
    """

    def __init__(self, sample_rate: int, lead: float, resume_buffer: float) -> None:
        self.sample_rate = sample_rate
        self.lead = lead
        self.resume_buffer = resume_buffer
        self.t0: float | None = None

    @property
    def started(self) -> bool:
        return self.t0 is not None

    def reset(self) -> None:
        """Forget the clock: the next chunk starts it afresh (a session nobody heard)."""
        self.t0 = None

    def playhead(self, now: float) -> int:
        """The stream sample listeners are hearing at ``now`` (0 before the first chunk)."""
        return 0 if self.t0 is None else int((now - self.t0) * self.sample_rate)

    def publish_delay(self, offset: int, now: float) -> float:
        """Seconds to wait before publishing the chunk at ``offset`` (starts the clock)."""
        start = offset / self.sample_rate
        if self.t0 is None:
            self.t0 = now - start
        return max(0.0, self.t0 + start - self.lead - now)

    def is_late(self, offset: int, now: float) -> bool:
        """Whether the chunk at ``offset`` should already be playing: listeners ran dry."""
        return offset < self.playhead(now)

    def resume(self, offset: int, now: float) -> None:
        """Restart the clock so ``offset`` plays ``resume_buffer`` seconds from now."""
        self.t0 = now - offset / self.sample_rate + self.resume_buffer
