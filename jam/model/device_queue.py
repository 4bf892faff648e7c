"""One render queue per device: sessions submit tile requests, one worker thread renders them.

The GPU (or CPU) runs one pipeline call at a time anyway; funnelling every session through one
queue makes that explicit, lets requests that arrive together share a batched call, and keeps
torch off the event loop. A request cancelled before its batch starts is dropped unrendered; a
batch whose requesters have all gone (a prompt changed) stops at the next denoising step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from jam.model.types import RenderCancelled, RenderedTile, Renderer, TileRequest

log = logging.getLogger(__name__)

# (requests, cancelled) -> tiles; ``cancelled()`` turns True once every requester has gone
RenderBatch = Callable[[Sequence[TileRequest], Callable[[], bool]], list[RenderedTile]]


class RealTimeMeter:
    """Seconds of audio made per second of wall time over recent tiles (> 1 keeps up).

    The one real-time-factor convention of jam: the server's health messages, ``/status`` and
    the benchmarks all report this ratio.
    """

    def __init__(self, window: int = 8) -> None:
        self.recent: deque[tuple[float, float]] = deque(maxlen=window)

    def add(self, audio_seconds: float, wall_seconds: float) -> None:
        self.recent.append((audio_seconds, wall_seconds))

    @property
    def factor(self) -> float | None:
        """None before the first tile."""
        if not self.recent:
            return None
        audio = sum(a for a, _ in self.recent)
        wall = sum(w for _, w in self.recent)
        return audio / wall if wall > 0 else float("inf")


class MeteredRenderer:
    """A renderer whose caller's real-time factor is measured (queueing included).

    Each session wraps the shared queue in one, so its health says whether *it* keeps up.
    """

    def __init__(
        self,
        renderer: Renderer,
        sample_rate: int,
        clock: Callable[[], float] = time.monotonic,
        window: int = 8,
    ) -> None:
        self.renderer = renderer
        self.sample_rate = sample_rate
        self.clock = clock
        self.meter = RealTimeMeter(window)

    async def __call__(self, request: TileRequest) -> RenderedTile:
        start = self.clock()
        tile = await self.renderer(request)
        self.meter.add(tile.audio.shape[-1] / self.sample_rate, self.clock() - start)
        return tile


@dataclass
class _Job:
    request: TileRequest
    future: asyncio.Future[RenderedTile]


class DeviceQueue:
    """An async ``Renderer`` over a blocking batch renderer such as ``Engine.render``."""

    def __init__(self, render_batch: RenderBatch, sample_rate: int, max_batch: int = 8) -> None:
        self.render_batch = render_batch
        self.sample_rate = sample_rate
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jam-render")
        self.busy_seconds = 0.0
        self.tiles = 0
        self.batches = 0
        self.cancelled = 0  # batches stopped part-way because every requester had gone
        self.meter = RealTimeMeter()  # the device's own speed: audio per second of rendering
        self.failures = 0  # requests that failed alone (after their batch was retried)
        self._busy: deque[tuple[float, float]] = deque()  # (finished at, seconds rendering)

    async def __call__(self, request: TileRequest) -> RenderedTile:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="jam device queue")
        future: asyncio.Future[RenderedTile] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(request, future))
        return await future

    async def _run(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            while len(jobs) < self.max_batch and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            jobs = [j for j in jobs if not j.future.done()]  # cancelled while waiting
            if jobs:
                await self._render(jobs)

    async def _render(self, jobs: list[_Job]) -> None:
        """Render a batch; when it raises, render each request alone, so that only the one at
        fault fails and every other session still gets its tile."""
        futures = [j.future for j in jobs]

        def abandoned() -> bool:  # polled from the render thread
            return all(f.done() for f in futures)

        t0 = time.perf_counter()
        try:
            tiles = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.render_batch, [j.request for j in jobs], abandoned
            )
        except RenderCancelled:
            self.cancelled += 1
            return
        except Exception as e:  # one bad request must not fail the others, nor the queue
            if len(jobs) > 1:
                log.warning("a batch of %d failed (%s); rendering each alone", len(jobs), e)
                for job in jobs:
                    if not job.future.done():
                        await self._render([job])
                return
            log.error("render failed: %s: %s", type(e).__name__, e, exc_info=e)
            self.failures += 1
            if not jobs[0].future.done():
                jobs[0].future.set_exception(e)
            return
        busy = time.perf_counter() - t0
        self.busy_seconds += busy
        self._busy.append((time.monotonic(), busy))
        self.meter.add(sum(t.audio.shape[-1] for t in tiles) / self.sample_rate, busy)
        self.tiles += len(jobs)
        self.batches += 1
        for j, tile in zip(jobs, tiles, strict=True):
            if not j.future.done():
                j.future.set_result(tile)

    def utilization(self, now: float, window: float = 20.0) -> float:
        """Share of the last ``window`` seconds the device spent rendering (0 when idle)."""
        while self._busy and self._busy[0][0] < now - window:
            self._busy.popleft()
        return min(1.0, sum(b for _, b in self._busy) / window)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=True, cancel_futures=True)
