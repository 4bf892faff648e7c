"""The alpha walk between endpoints, glides in beats, and the session's control state (pure)."""

from __future__ import annotations

import pytest

from jam.model.folder import ModelDefaults
from jam.model.types import Endpoint, TileRequest, blend
from jam.stream.controls import (
    Controls,
    SessionState,
    first_request,
    glide_steps,
    next_request,
    switch_request,
)


def controls(prompt: str, seed_image: str = "drone", bpm: float = 94.0) -> Controls:
    return Controls(blend(prompt), seed_image, 0.75, 7.0, bpm)


def here(prompt: str, seed: int = 7) -> Endpoint:
    return Endpoint(blend(prompt), seed, 0.75, 7.0)


def test_a_switch_starts_from_the_nearer_endpoint_and_successors_hold_it_then_drift():
    start = TileRequest(here("a"), here("a"), 0.0, "drone", 10, 94.0)
    r1 = next_request(start, 10, 0.25)
    assert (r1.start.seed, r1.end.seed, r1.alpha) == (7, 8, 0.25)
    r2 = switch_request(r1, controls("b"), 10, 0.5)
    assert (r2.start.prompt, r2.end.prompt, r2.alpha, r2.end.seed) == ("a", "b", 0.5, 7)
    assert next_request(r2, 10, 0.25).alpha == 0.5  # mid-glide: the glide's steps move it
    arrived = TileRequest(r2.start, r2.end, 1.0, "drone", 10, 94.0)
    r4 = next_request(arrived, 10, 0.25)
    assert (r4.start.prompt, r4.end.prompt, r4.start.seed, r4.end.seed, r4.alpha) == (
        "b",
        "b",
        7,
        8,
        0.25,
    )


def test_a_switch_carries_the_new_seed_image_and_tempo():
    start = TileRequest(here("a"), here("a"), 0.0, "drone", 10, 94.0)
    r = switch_request(start, controls("a", "breakbeat", 120.0), 10, 1.0)
    assert (r.seed_image, r.bpm) == ("breakbeat", 120.0)
    assert controls("a").grid_changes(controls("a", bpm=120.0))
    assert not controls("a").grid_changes(controls("b"))


@pytest.mark.parametrize(
    ("beats", "steps", "fade"),
    [(0, 1, 1), (1, 1, 1), (2, 1, 2), (4, 1, 4), (5, 2, 2), (8, 2, 4), (16, 4, 4)],
)
def test_a_glide_is_one_crossfade_up_to_a_bar_then_steps_of_about_a_bar(beats, steps, fade):
    assert glide_steps(beats) == (steps, fade)


def test_state_counts_real_changes_only_and_starts_from_the_models_defaults():
    defaults = ModelDefaults(steps=15, strength=0.6, guidance=5.0, seed_image="half_time")
    state = SessionState(Controls.start("lofi", defaults, "half_time", 90.0), seed=4, steps=15)
    assert first_request(state) == TileRequest(
        Endpoint(blend("lofi"), 4, 0.6, 5.0),
        Endpoint(blend("lofi"), 4, 0.6, 5.0),
        0.0,
        "half_time",
        15,
        90.0,
    )
    state.set_prompt("lofi")  # unchanged: no new version, nothing to re-render
    assert (state.version, state.changed.is_set()) == (0, False)
    state.set_strength(0.5)
    state.set_seed_image("shuffle")
    state.set_prompts(blend(("lofi", 3), ("jazz", 1)))
    state.set_bpm(120)
    state.set_glide(4)
    assert state.version == 5 and state.changed.is_set()
    assert state.snapshot() == {
        "prompt": "lofi",
        "prompts": [{"text": "lofi", "weight": 0.75}, {"text": "jazz", "weight": 0.25}],
        "seed_image": "shuffle",
        "strength": 0.5,
        "guidance": 5.0,
        "negative_prompt": "",
        "bpm": 120.0,
        "glide": 4,
        "seed": 4,
        "steps": 15,
    }


def test_revert_takes_a_failed_change_back_only_if_nothing_changed_since():
    state = SessionState(controls("a"), seed=1, steps=10)
    before = state.controls
    state.set_prompt("b")
    assert state.revert(before, state.version) and state.controls == before
    state.set_prompt("c")
    stale = state.version - 1
    assert not state.revert(before, stale) and state.controls.prompt == "c"


@pytest.mark.parametrize(
    "bad",
    [(), (("a", -1.0),), (("a", 0.0),), tuple((f"p{i}", 1.0) for i in range(5)), (("", 1.0),)],
)
def test_a_bad_blend_is_refused_with_a_reason(bad):
    with pytest.raises(ValueError):
        blend(*bad)


def test_a_blend_merges_duplicates_and_normalises_heaviest_first():
    b = blend(("x", 0.2), ("y", 0.4), ("x", 0.2), ("z", 0.0))
    assert [(p.text, p.weight) for p in b] == [("x", 0.5), ("y", 0.5)]  # ties keep their order
    assert sum(p.weight for p in blend(("a", 0.7), ("b", 0.3))) == pytest.approx(1.0)
    assert blend(("a", 0.3), ("b", 0.7))[0].text == "b"
