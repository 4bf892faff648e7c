"""A clock for tests: time stands still until the test moves it (``jam.serve.clock.Clock``)."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + max(0.0, seconds), next(self._order), future))
        await future

    @property
    def sleepers(self) -> int:
        return sum(not f.done() for *_, f in self._sleepers)

    async def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``, waking each sleeper at its own moment, in order."""
        end = self.t + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= end:
            deadline, _, future = heapq.heappop(self._sleepers)
            self.t = max(self.t, deadline)
            if not future.done():
                future.set_result(None)
            await settle()
        self.t = end
        await settle()


async def settle(rounds: int = 20) -> None:
    """Let every task that is ready run until it waits again."""
    for _ in range(rounds):
        await asyncio.sleep(0)
