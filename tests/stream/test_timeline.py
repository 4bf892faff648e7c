"""The beat-grid timeline (pure): slots, switch points on beats, equal-power crossfades."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from jam.model.types import Endpoint, RenderedTile, TileRequest
from jam.stream.timeline import Placed, Timeline, mix_meta

BEATS = 8
BEAT = 100  # samples per beat
LENGTH = BEATS * BEAT


def tile(tile_id: int, level: float, start: int, prompt: str = "p") -> Placed:
    end = Endpoint(prompt, tile_id, 0.75, 7.0)
    request = TileRequest(end, end, 0.0, "four_on_floor", 10)
    audio = torch.full((1, LENGTH), level)
    rendered = RenderedTile(request, audio, Image.new("L", (1, 1)))
    return Placed(tile_id, rendered, audio, start, BEATS)


def test_a_successor_slot_overlaps_the_last_beats_and_crossfades_at_equal_power():
    first = tile(0, 1.0, 0)
    timeline = Timeline(first, overlap_beats=1)
    assert timeline.slot_start(first) == LENGTH - BEAT
    second = tile(1, 1.0, timeline.slot_start(first))
    timeline.schedule_successor(first, second)
    audio, mix = timeline.mix(0, LENGTH + BEAT)
    body, fade = audio[0, : LENGTH - BEAT], audio[0, LENGTH - BEAT : LENGTH]
    assert torch.equal(body, torch.ones_like(body))
    # two equal levels under cos/sin gains: sum cos+sin, peaking sqrt(2) mid-fade
    assert fade.max().item() == pytest.approx(math.sqrt(2), abs=1e-3)
    assert fade.min().item() >= 1.0 - 1e-2
    assert timeline.current is second and not timeline.scheduled
    meta = mix_meta(0, mix, sample_rate=2 * BEAT)
    assert sum(m["weight"] for m in meta["mix"]) == pytest.approx(1.0, abs=1e-3)
    assert meta["tile"] == 0  # the first tile dominates this span


def test_a_switch_fades_in_on_the_next_beat_and_only_while_a_beat_fits_in_the_slot():
    first = tile(0, 1.0, 0)
    timeline = Timeline(first, overlap_beats=1)
    assert timeline.switch_point(first, 0) == 0
    assert timeline.switch_point(first, 1) == BEAT
    assert timeline.switch_point(first, 3 * BEAT + 40) == 4 * BEAT
    assert timeline.switch_point(first, 6 * BEAT) == 6 * BEAT  # ends exactly at the slot
    assert timeline.switch_point(first, 6 * BEAT + 1) is None  # its fade would overrun the slot

    switch = tile(1, 0.0, 0, prompt="new")
    timeline.schedule_switch(first, switch, 4 * BEAT)
    audio, _ = timeline.mix(0, LENGTH)
    assert torch.equal(audio[0, : 4 * BEAT], torch.ones(4 * BEAT))  # old prompt until the beat
    assert audio[0, 5 * BEAT :].abs().max() == 0  # new tile alone after a one-beat fade
    assert timeline.current is switch


def test_dropping_unstarted_tiles_keeps_a_fade_in_progress():
    first = tile(0, 1.0, 0)
    timeline = Timeline(first, overlap_beats=1)
    fading = tile(1, 0.5, 0)
    timeline.schedule_switch(first, fading, 2 * BEAT)
    later = tile(2, 0.5, timeline.slot_start(fading))
    timeline.schedule_successor(fading, later)
    assert not timeline.all_started(2 * BEAT + 10)  # `later`'s slot is still ahead
    timeline.drop_unstarted(2 * BEAT + 10)
    assert [t.tile for t in timeline.scheduled] == [fading]
    assert timeline.last is fading
    # a switch shares the slot that is playing, so its successor may be asked for at once
    assert timeline.all_started(2 * BEAT + 10)


def test_chunk_metadata_names_its_main_tile_and_the_weights_of_every_source():
    first = tile(0, 1.0, 0)
    timeline = Timeline(first, overlap_beats=1)
    timeline.schedule_switch(first, tile(1, 1.0, 0, prompt="new"), 2 * BEAT)
    _, mix = timeline.mix(2 * BEAT, 3 * BEAT)  # exactly the fade
    meta = mix_meta(2 * BEAT, mix, sample_rate=BEAT * 2)  # 2 beats a second: 120 bpm
    weights = {m["prompt"]: m["weight"] for m in meta["mix"]}
    assert weights == pytest.approx({"p": 0.5, "new": 0.5}, abs=0.01)
    assert meta["bpm"] == 120.0
    assert meta["beat"] == 2.0
