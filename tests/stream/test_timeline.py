"""The beat-grid timeline (pure): slots, switches on beats and bars, crossfades (equal power at
cold seams, shaped for the tiles' correlation at warm ones), and spans mixed again after a
switch."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from jam.model.types import Endpoint, RenderedTile, TileRequest, blend
from jam.sound.mixing import coherent_weights, equal_power_weights
from jam.stream.timeline import Placed, Timeline, mix_meta

BEATS = 8
BEAT = 100  # samples per beat
LENGTH = BEATS * BEAT
GRID = ("four_on_floor", 94.0)


def tile(
    tile_id: int,
    level: float | torch.Tensor,
    start: int,
    prompt: str = "p",
    bpm: float = 94.0,
    beat: int = BEAT,
    warm: bool = False,
) -> Placed:
    """A placed tile of constant ``level``, or of the given audio ``(1, samples)``."""
    end = Endpoint(blend(prompt), tile_id, 0.75, 7.0)
    request = TileRequest(end, end, 0.0, "four_on_floor", 10, bpm)
    audio = level if isinstance(level, torch.Tensor) else torch.full((1, BEATS * beat), level)
    rendered = RenderedTile(request, audio, Image.new("L", (1, 1)), warm=warm)
    return Placed(tile_id, rendered, audio, start, BEATS)


def test_a_successor_slot_overlaps_the_last_beats_and_crossfades_at_equal_power():
    first = tile(0, 1.0, 0)
    timeline = Timeline(first, overlap_beats=1)
    assert timeline.slot_start(first) == LENGTH - BEAT
    timeline.add_successor(tile(1, 1.0, timeline.slot_start(first)))
    audio, mix = timeline.mix(0, LENGTH + BEAT)
    body, fade = audio[0, : LENGTH - BEAT], audio[0, LENGTH - BEAT : LENGTH]
    assert torch.equal(body, torch.ones_like(body))
    # two equal levels under cos/sin gains: sum cos+sin, peaking sqrt(2) mid-fade
    assert fade.max().item() == pytest.approx(math.sqrt(2), abs=1e-3)
    assert fade.min().item() >= 1.0 - 1e-2
    again, _ = timeline.mix(0, LENGTH + BEAT)
    assert torch.equal(audio, again)  # mixing changes nothing: a span can be mixed again
    meta = mix_meta(0, mix, sample_rate=2 * BEAT)
    assert sum(m["weight"] for m in meta["mix"]) == pytest.approx(1.0, abs=1e-3)
    assert meta["tile"] == 0  # the first tile dominates this span


def test_a_warm_successor_of_the_same_signal_fades_at_equal_gain_and_a_cold_one_at_equal_power():
    for warm, peak in ((True, 1.0), (False, math.sqrt(2))):
        first = tile(0, 1.0, 0)
        timeline = Timeline(first, overlap_beats=1)
        added = timeline.add_successor(tile(1, 1.0, timeline.slot_start(first), warm=warm))
        assert added.correlation == (1.0 if warm else 0.0)
        fade = timeline.mix(LENGTH - BEAT, LENGTH)[0][0]
        assert fade.max().item() == pytest.approx(peak, abs=1e-3)
        assert fade.min().item() >= 1.0 - 1e-2  # equal gain: flat at 1 (the gains sum to 1)


def noise(seed: int, n: int) -> torch.Tensor:
    return torch.randn(1, n, generator=torch.Generator().manual_seed(seed))


def test_a_warm_seam_of_partly_coherent_tiles_keeps_their_level_where_neither_fixed_law_would():
    """Noise tiles correlated 0.5 over the overlap, as a warm start leaves them partly coherent:
    the fade is shaped for that and the level stays flat, where an equal-gain fade would dip
    mid-fade and an equal-power one swell."""
    beat = 3000
    first = tile(0, noise(0, BEATS * beat), 0, beat=beat)
    start = (BEATS - 1) * beat
    audio = noise(1, BEATS * beat)
    audio[:, :beat] = 0.5 * first.audio[:, start:] + math.sqrt(0.75) * audio[:, :beat]
    timeline = Timeline(first, overlap_beats=1)
    added = timeline.add_successor(tile(1, audio, start, beat=beat, warm=True))
    assert added.correlation == pytest.approx(0.5, abs=0.05)

    def thirds_db(mixed: torch.Tensor) -> list[float]:
        return [10 * math.log10(float(p.square().mean())) for p in mixed.chunk(3, dim=-1)]

    assert thirds_db(timeline.mix(start, start + beat)[0]) == pytest.approx([0, 0, 0], abs=0.3)
    pos = (torch.arange(beat) + 0.5) / beat
    x, y = first.audio[:, start:], audio[:, :beat]
    w_out, w_in = equal_power_weights(pos)
    assert thirds_db(x * (1 - pos) + y * pos)[1] < -1.0
    assert thirds_db(x * w_out + y * w_in)[1] > 1.0


def test_coherent_weights_span_equal_power_to_equal_gain():
    pos = torch.linspace(0, 1, 11)
    cos, sin = equal_power_weights(pos)
    assert all(
        torch.equal(a, b) for a, b in zip(coherent_weights(pos, 0.0), (cos, sin), strict=True)
    )
    w_out, w_in = coherent_weights(pos, 1.0)
    torch.testing.assert_close(w_out + w_in, torch.ones(11))
    with pytest.raises(ValueError, match="correlation"):
        coherent_weights(pos, -0.2)


def test_a_switch_comes_in_on_the_next_beat_with_its_glide_cut_to_the_room_in_the_slot():
    first = tile(0, 1.0, 0)
    timeline = Timeline(first, overlap_beats=1)
    plan = timeline.plan_switch(3 * BEAT + 40, GRID, fade_beats=2)
    assert (plan.start, plan.fade_start, plan.fade_len) == (0, 4 * BEAT, 2 * BEAT)
    # beat 6: one beat is left before the successor's slot (beat 7), so the glide shrinks
    plan = timeline.plan_switch(5 * BEAT + 1, GRID, fade_beats=2)
    assert (plan.fade_start, plan.fade_len) == (6 * BEAT, BEAT)
    # past that, not a beat fits: the switch takes over the successor's slot
    plan = timeline.plan_switch(6 * BEAT + 1, GRID, fade_beats=2)
    assert (plan.start, plan.fade_start, plan.fade_len) == (7 * BEAT, 7 * BEAT, BEAT)


def test_a_new_grid_comes_in_on_a_bar_line_with_its_own_downbeat_there():
    first = tile(0, 1.0, 0)
    timeline = Timeline(first, overlap_beats=1)
    plan = timeline.plan_switch(BEAT + 5, ("four_on_floor", 120.0), fade_beats=4)
    assert (plan.start, plan.fade_start, plan.fade_len) == (4 * BEAT, 4 * BEAT, BEAT)


def test_a_switch_replaces_what_it_supersedes_and_only_from_where_the_mix_changes():
    first = tile(0, 1.0, 0)
    timeline = Timeline(first, overlap_beats=1)
    timeline.add_successor(tile(1, 1.0, timeline.slot_start(first)))
    before, _ = timeline.mix(0, 2 * LENGTH)
    plan = timeline.plan_switch(2 * BEAT + 10, GRID, fade_beats=1)
    changed = timeline.switch_in(tile(2, 0.0, plan.start, prompt="new"), plan)
    assert changed == 3 * BEAT
    assert [t.tile.id for t in timeline.entries] == [0, 2]  # the old successor is gone
    after, _ = timeline.mix(0, 2 * LENGTH)
    assert torch.equal(after[:, :changed], before[:, :changed])
    assert after[0, 4 * BEAT : LENGTH].abs().max() == 0  # the new (silent) tile alone


def test_a_switch_never_lands_inside_a_fade_in_progress():
    first = tile(0, 1.0, 0)
    timeline = Timeline(first, overlap_beats=1)
    plan = timeline.plan_switch(0, GRID, fade_beats=4)
    timeline.switch_in(tile(1, 0.5, plan.start), plan)
    assert (plan.fade_start, plan.fade_len) == (0, 4 * BEAT)
    later = timeline.plan_switch(BEAT, GRID, fade_beats=1)
    assert later.fade_start == 4 * BEAT and later.keep == 2


def test_forget_keeps_every_tile_that_can_still_be_heard():
    first = tile(0, 1.0, 0)
    timeline = Timeline(first, overlap_beats=1)
    second = tile(1, 1.0, timeline.slot_start(first))
    timeline.add_successor(second)
    timeline.forget(LENGTH - 1)  # the crossfade's last sample still needs the first tile
    assert len(timeline.entries) == 2
    timeline.forget(LENGTH)
    assert [t.tile for t in timeline.entries] == [second]


def test_a_tile_at_another_tempo_keeps_its_beats_on_its_own_grid():
    fast = tile(0, 1.0, 0, bpm=120.0, beat=80)
    assert fast.beat_len == 80 and fast.next_beat(81) == 160 and fast.next_beat(81, 4) == 320


def test_chunk_metadata_names_its_main_tile_and_the_weights_of_every_source():
    first = tile(0, 1.0, 0)
    timeline = Timeline(first, overlap_beats=1)
    plan = timeline.plan_switch(2 * BEAT, GRID, fade_beats=1)
    timeline.switch_in(tile(1, 1.0, plan.start, prompt="new"), plan)
    _, mix = timeline.mix(2 * BEAT, 3 * BEAT)  # exactly the fade
    meta = mix_meta(2 * BEAT, mix, sample_rate=BEAT * 2)  # 2 beats a second: 120 bpm
    weights = {m["prompt"]: m["weight"] for m in meta["mix"]}
    assert weights == pytest.approx({"p": 0.5, "new": 0.5}, abs=0.01)
    assert meta["bpm"] == 120.0
    assert meta["beat"] == 2.0
