"""The producer on the real tiny pipeline: beat grid, seamless joins, levelling, live prompts."""

from __future__ import annotations

import asyncio
import itertools
import math

import numpy as np
import pytest

from jam.model.device_queue import DeviceQueue
from jam.stream.controls import Controls, SessionState
from jam.stream.producer import Chunk, Producer, StreamSettings, TileImage

PROMPT = "mellow electric piano over a slow beat"
NEW_PROMPT = "distorted metal guitars"


async def collect(producer: Producer, seconds: float, on_chunk=None, speed: float | None = None):
    """Pull ``seconds`` of stream; with ``speed``, paced at that multiple of real time as the
    server paces it (unpaced, the producer runs ahead until it must wait for a render)."""
    chunks: list[Chunk] = []
    tiles: list[TileImage] = []
    total = 0
    async for item in producer.stream():
        if isinstance(item, TileImage):
            tiles.append(item)
            continue
        chunks.append(item)
        total += item.audio.shape[-1]
        if on_chunk is not None:
            on_chunk(item)
        if speed:
            await asyncio.sleep(item.audio.shape[-1] / producer.sample_rate / speed)
        if total >= seconds * producer.sample_rate:
            break
    audio = np.concatenate([c.audio for c in chunks], axis=-1)[0]
    return chunks, tiles, audio


def make_producer(
    engine, settings: StreamSettings | None = None
) -> tuple[Producer, SessionState, DeviceQueue]:
    bpm = engine.seeds.get("four_on_floor").bpm
    controls = Controls.start(PROMPT, engine.defaults, "four_on_floor", bpm)
    state = SessionState(controls, seed=3, steps=engine.defaults.steps)
    queue = DeviceQueue(engine.render, engine.params.sample_rate)
    producer = Producer(state, queue, engine.seeds, settings or StreamSettings())
    return producer, state, queue


@pytest.fixture(scope="module")
def steady(tiny_engine):
    producer, _, queue = make_producer(tiny_engine)

    async def run():
        try:
            return await collect(producer, 26.0)
        finally:
            await queue.close()

    chunks, tiles, audio = asyncio.run(run())
    return tiny_engine, chunks, tiles, audio


def beat_len(engine) -> float:
    return engine.tile_samples / engine.seeds.get("four_on_floor").beats


def test_chunks_are_contiguous_and_numbered(steady):
    _, chunks, _, _ = steady
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    offsets = [c.offset for c in chunks]
    assert offsets == list(np.cumsum([0] + [c.audio.shape[-1] for c in chunks[:-1]]))


def test_every_tile_starts_on_the_first_tiles_beat_grid(steady):
    engine, _, tiles, _ = steady
    assert len(tiles) >= 5
    beat = beat_len(engine)
    for t in tiles:
        beats = t.offset / beat
        assert abs(beats - round(beats)) * beat <= 1.0, f"tile {t.tile} starts off the grid"
    # successive tiles overlap by exactly one beat
    gaps = np.diff([t.offset for t in tiles]) / beat
    np.testing.assert_allclose(gaps, engine.seeds.get("four_on_floor").beats - 1, atol=1 / beat)


def seam_windows(tiles, beat: float, total: int) -> np.ndarray:
    """Samples within the crossfades (one beat from each successor's start), plus a margin."""
    mask = np.zeros(total, dtype=bool)
    for t in tiles[1:]:
        lo, hi = t.offset - 256, int(t.offset + beat) + 256
        mask[max(lo, 0) : min(hi, total)] = True
    return mask


def test_seams_have_no_clicks_or_gaps(steady):
    engine, _, tiles, audio = steady
    beat = beat_len(engine)
    seams = seam_windows(tiles, beat, audio.size)
    jumps = np.abs(np.diff(audio, prepend=audio[0]))
    assert jumps[seams].max() <= 1.25 * jumps[~seams].max()
    win = engine.params.sample_rate // 100  # 10 ms RMS
    frames = audio[: audio.size // win * win].reshape(-1, win)
    rms = np.sqrt((frames**2).mean(1))
    seam_frames = seams[: frames.shape[0] * win].reshape(-1, win).any(1)
    # no gap or dip: the quietest 10 ms in a seam is not quieter than the music's own quiet
    # moments (its 1st percentile elsewhere; the loops have rests between hits)
    assert rms[seam_frames].min() >= 0.75 * np.percentile(rms[~seam_frames], 1)


def test_loudness_moves_at_most_1_db_between_consecutive_tiles(steady):
    engine, _, tiles, audio = steady
    beat = beat_len(engine)
    levels = []
    for t, nxt in itertools.pairwise(tiles):
        body = audio[int(t.offset + beat) : nxt.offset]  # the part heard alone
        levels.append(20 * math.log10(np.sqrt(np.mean(body**2))))
    assert len(levels) >= 4
    assert np.abs(np.diff(levels)).max() <= 1.0, levels


def test_stream_never_clips(steady):
    *_, audio = steady
    assert np.abs(audio).max() < 0.99
    assert np.abs(audio).max() > 0.05


def test_steady_prompt_evolves_through_new_seeds(steady):
    _, chunks, _, _ = steady
    points = {(c.meta["seed"], c.meta["seed_to"], c.meta["alpha"]) for c in chunks}
    assert len(points) >= 4
    assert all(c.meta["prompt"] == PROMPT == c.meta["prompt_to"] for c in chunks)


def test_prompt_change_crossfades_into_a_fresh_tile_at_the_next_beat(tiny_engine):
    producer, state, queue = make_producer(tiny_engine)
    beat = beat_len(tiny_engine)
    sr = tiny_engine.params.sample_rate
    changed_at: list[int] = []

    def on_chunk(chunk: Chunk) -> None:
        if chunk.offset >= 0.5 * sr and not changed_at:
            state.set_prompt(NEW_PROMPT)
            changed_at.append(chunk.offset + chunk.audio.shape[-1])

    async def run():
        try:
            # paced in real time, as the server paces it: the switch then renders while the
            # first tile plays and is heard mid-tile (unpaced, it would land at the next slot)
            return await collect(producer, 15.0, on_chunk, speed=1.0)
        finally:
            await queue.close()

    chunks, tiles, _ = asyncio.run(run())
    first_tile_len = tiles[0].meta["samples"]
    switch = next(t for t in tiles if t.meta["prompt_to"] == NEW_PROMPT)
    # same slot, same grid, heard from a beat boundary inside the first tile
    assert switch.offset == tiles[0].offset
    fade = switch.meta["fade_start"]
    assert changed_at[0] <= fade < first_tile_len - beat
    assert abs(fade / beat - round(fade / beat)) * beat <= 1.0
    assert switch.meta["alpha"] == 1.0  # the default glide: one crossfade of two beats
    heard = [
        c
        for c in chunks
        if any(s["prompt_to"] == NEW_PROMPT and s["weight"] > 0 for s in c.meta["mix"])
    ]
    assert heard[0].offset <= fade < heard[0].offset + heard[0].audio.shape[-1]
    full = [
        c
        for c in chunks
        if all(s["prompt_to"] == NEW_PROMPT and s["alpha"] == 1.0 for s in c.meta["mix"])
    ]
    assert full, "the new prompt never reached full weight"
    assert full[0].offset - fade <= 2 * beat + producer.chunk
