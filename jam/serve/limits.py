"""Rate limits, on the caller's clock: per session (changes) and per connection (traffic)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from jam.serve.protocol import PROMPT_CHANGES_PER_WINDOW, PROMPT_WINDOW_SECONDS


class RateLimit:
    """At most ``count`` events per sliding ``window`` seconds (caller supplies the clock)."""

    def __init__(
        self, count: int = PROMPT_CHANGES_PER_WINDOW, window: float = PROMPT_WINDOW_SECONDS
    ) -> None:
        self.count = count
        self.window = window
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        while self._times and now - self._times[0] >= self.window:
            self._times.popleft()
        if len(self._times) >= self.count:
            return False
        self._times.append(now)
        return True

    def retry_after(self, now: float) -> float:
        return max(0.0, self.window - (now - self._times[0])) if self._times else 0.0


@dataclass(frozen=True)
class TrafficLimits:
    """What one connection may send: messages and bytes per second, with a burst allowance.

    A page sends a handful of messages a minute; past these the connection is closed (1008),
    so a flood costs the server at most a burst's worth of work.
    """

    messages_per_second: float = 10.0
    message_burst: float = 40.0
    bytes_per_second: float = 16 * 1024
    byte_burst: float = 64 * 1024


class TokenBucket:
    """Two buckets (messages, bytes) refilled at their rates; ``take`` says whether it fits."""

    def __init__(self, limits: TrafficLimits, now: float) -> None:
        self.limits = limits
        self.messages = limits.message_burst
        self.bytes = limits.byte_burst
        self.last = now

    def take(self, size: int, now: float) -> bool:
        lim = self.limits
        elapsed = max(0.0, now - self.last)
        self.last = now
        self.messages = min(lim.message_burst, self.messages + elapsed * lim.messages_per_second)
        self.bytes = min(lim.byte_burst, self.bytes + elapsed * lim.bytes_per_second)
        if self.messages < 1 or self.bytes < size:
            return False
        self.messages -= 1
        self.bytes -= size
        return True
