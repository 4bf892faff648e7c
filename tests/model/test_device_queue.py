"""The per-device render queue on the real tiny pipeline: batching, cancellation, failures."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from jam.model.device_queue import DeviceQueue
from jam.model.types import Continuation, WeightedPrompt


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


async def all_at_once(engine, reqs):
    """Every request put to one device queue at once: (the queue, the tiles)."""
    queue = DeviceQueue(engine.render, engine.params.sample_rate)
    try:
        return queue, await asyncio.gather(*(queue(r) for r in reqs))
    finally:
        await queue.close()


def test_requests_that_arrive_together_share_one_call_and_each_gets_its_own_tile(tiny_engine):
    reqs = [tiny_engine.request(p, seed=i) for i, p in enumerate(["techno", "jazz", "folk"])]

    queue, tiles = asyncio.run(all_at_once(tiny_engine, reqs))
    assert (queue.batches, queue.tiles) == (1, 3)
    # each caller got the spectrogram of its own request: the one-at-a-time render of it
    # (images, not audio: Griffin-Lim starts from random phase)
    alone = [pixels(tiny_engine.render([r])[0].image) for r in reqs]
    for tile, solo in zip(tiles, alone, strict=True):
        assert np.abs(pixels(tile.image) - solo).max() <= 2
    assert np.abs(alone[0] - alone[1]).mean() > 1, "the prompts render differently"
    # the device's meter counts audio made per second of rendering
    assert queue.meter.factor is not None and queue.meter.factor > 0


def test_requests_carrying_continuations_still_share_one_call_and_each_is_warm_or_not(
    tiny_engine,
):
    before = tiny_engine.render([tiny_engine.request("ambient", seed=9)])[0]
    n_fft = tiny_engine.params.n_fft
    carried = [Continuation.after(before.audio, k * 10_000, n_fft) for k in (3, 5)]
    reqs = [tiny_engine.request(p, seed=i) for i, p in enumerate(["techno", "jazz", "folk"])]
    reqs[0] = dataclasses.replace(reqs[0], continuation=carried[0])
    reqs[2] = dataclasses.replace(reqs[2], continuation=carried[1])

    queue, tiles = asyncio.run(all_at_once(tiny_engine, reqs))
    assert (queue.batches, queue.tiles) == (1, 3)
    assert [t.warm for t in tiles] == [True, False, True]
    assert [t.request.continuation for t in tiles] == [carried[0], None, carried[1]]


def test_an_abandoned_render_stops_part_way_and_frees_the_device(tiny_engine):
    slow = dataclasses.replace(tiny_engine.request("ambient drone", seed=1), steps=400)

    async def run():
        queue = DeviceQueue(tiny_engine.render, tiny_engine.params.sample_rate)
        try:
            task = asyncio.create_task(queue(slow))
            await asyncio.sleep(1.0)  # let it start denoising
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            tile = await asyncio.wait_for(queue(tiny_engine.request("house", seed=2)), 120)
            return queue, tile
        finally:
            await queue.close()

    queue, tile = asyncio.run(run())
    assert queue.cancelled == 1
    assert tile.request.end.prompt == "house"
    assert queue.tiles == 1  # the abandoned one was never finished


def test_a_failing_request_reports_to_its_caller_and_the_queue_keeps_serving(tiny_engine):
    async def run():
        queue = DeviceQueue(tiny_engine.render, tiny_engine.params.sample_rate)
        try:
            bad = dataclasses.replace(tiny_engine.request("x", seed=0), alpha=0.0)
            bad = dataclasses.replace(
                bad, start=dataclasses.replace(bad.start, prompts=(WeightedPrompt(" ", 1.0),))
            )
            with pytest.raises(ValueError, match="prompt is empty"):
                await queue(bad)
            return await queue(tiny_engine.request("disco", seed=3))
        finally:
            await queue.close()

    assert asyncio.run(run()).request.end.prompt == "disco"
