"""A render that fails costs one slot, not the stream: the last good tile (or the seed loop)
plays in its place, and only repeated failures in a row end the stream."""

from __future__ import annotations

import numpy as np
import pytest

from jam.model.blank import TINY_PARAMS
from jam.model.folder import ModelDefaults
from jam.seeds.library import SeedLibrary
from jam.stream.controls import Controls, SessionState
from jam.stream.producer import Chunk, GenerationFailed, Producer, RenderFailure, StreamSettings
from tests.standin import PoisonedRenderer


@pytest.fixture(scope="module")
def seeds() -> SeedLibrary:
    return SeedLibrary(TINY_PARAMS, width=256)


def producer(seeds: SeedLibrary, prompt: str) -> tuple[Producer, SessionState]:
    controls = Controls.start(prompt, ModelDefaults(), "four_on_floor", 94.0)
    state = SessionState(controls, seed=1, steps=10)
    settings = StreamSettings(max_failures=3)
    return Producer(state, PoisonedRenderer(seeds), seeds, settings), state


async def test_a_failed_switch_keeps_the_music_playing_and_is_taken_back(seeds):
    stream, state = producer(seeds, "mellow keys")
    chunks, failures = [], []
    async for item in stream.stream():
        if isinstance(item, RenderFailure):
            failures.append(item)
        elif isinstance(item, Chunk):
            chunks.append(item)
            if len(chunks) == 4:
                state.set_prompt("poison pill")
            if len(chunks) >= 60:  # 15 s: several slots past the failure
                break
    assert [(f.in_a_row, f.reverted) for f in failures] == [(1, True)]
    assert "poison pill" in failures[0].reason
    assert state.controls.prompt == "mellow keys", "the state says what plays"
    audio = np.concatenate([c.audio for c in chunks], axis=-1)[0]
    win = TINY_PARAMS.sample_rate // 20
    rms = np.sqrt((audio[: audio.size // win * win].reshape(-1, win) ** 2).mean(1))
    assert rms.min() > 0.01, "no silent gap where the failed tile would have been"
    assert all(c.meta["prompt"] == "mellow keys" for c in chunks), "the last good prompt plays"


async def test_a_stream_whose_renders_keep_failing_ends_after_max_failures_in_a_row(seeds):
    stream, _ = producer(seeds, "poison from the start")
    events = []
    with pytest.raises(GenerationFailed, match="3 renders failed in a row"):
        async for item in stream.stream():
            events.append(item)
            assert len(events) < 400, "it should have given up"
    failures = [e for e in events if isinstance(e, RenderFailure)]
    assert [f.in_a_row for f in failures] == [1, 2]
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert chunks and np.abs(chunks[0].audio).max() > 0.05, "the seed loop played meanwhile"
