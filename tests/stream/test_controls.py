"""The alpha walk between endpoints and the session's control state (pure)."""

from __future__ import annotations

from jam.model.folder import ModelDefaults
from jam.model.types import Endpoint, TileRequest
from jam.stream.controls import Controls, SessionState, first_request, next_request


def controls(prompt: str) -> Controls:
    return Controls(prompt, "drone", 0.75, 7.0)


def test_walk_glides_to_a_new_prompt_then_drifts_through_seeds():
    start = TileRequest(Endpoint("a", 7, 0.75, 7.0), Endpoint("a", 7, 0.75, 7.0), 0.0, "drone", 10)
    r1 = next_request(start, controls("a"), 10, False, 0.25, 2)
    assert (r1.start.seed, r1.end.seed, r1.alpha) == (7, 8, 0.25)
    r2 = next_request(r1, controls("b"), 10, True, 0.25, 2)
    assert (r2.start.prompt, r2.end.prompt, r2.alpha, r2.end.seed) == ("a", "b", 0.5, 7)
    r3 = next_request(r2, controls("b"), 10, False, 0.25, 2)
    assert (r3.end.prompt, r3.alpha) == ("b", 1.0)
    r4 = next_request(r3, controls("b"), 10, False, 0.25, 2)
    assert (r4.start.prompt, r4.end.prompt, r4.start.seed, r4.end.seed, r4.alpha) == (
        "b",
        "b",
        7,
        8,
        0.25,
    )


def test_a_changed_seed_image_reaches_the_next_request():
    start = TileRequest(Endpoint("a", 7, 0.75, 7.0), Endpoint("a", 7, 0.75, 7.0), 0.0, "drone", 10)
    changed = Controls("a", "breakbeat", 0.75, 7.0)
    assert next_request(start, changed, 10, True, 0.25, 2).seed_image == "breakbeat"


def test_state_counts_real_changes_only_and_starts_from_the_models_defaults():
    defaults = ModelDefaults(steps=15, strength=0.6, guidance=5.0, seed_image="half_time")
    state = SessionState(Controls.start("lofi", defaults), seed=4, steps=defaults.steps)
    assert first_request(state) == TileRequest(
        Endpoint("lofi", 4, 0.6, 5.0), Endpoint("lofi", 4, 0.6, 5.0), 0.0, "half_time", 15
    )
    state.set_prompt("lofi")  # unchanged: no new version, nothing to re-render
    assert (state.version, state.changed.is_set()) == (0, False)
    state.set_strength(0.5)
    state.set_seed_image("shuffle")
    assert state.version == 2 and state.changed.is_set()
    assert state.snapshot() == {
        "prompt": "lofi",
        "seed_image": "shuffle",
        "strength": 0.5,
        "guidance": 5.0,
        "negative_prompt": "",
        "seed": 4,
        "steps": 15,
    }
