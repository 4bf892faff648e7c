"""A model folder's jam.json: its style tempos, read, checked and used where a session starts."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

from jam.app import App, RenderRequest
from jam.model.blank import TINY_PARAMS
from jam.model.folder import DEFAULT_MODEL_DIR, ModelDefaults, ModelError
from jam.model.types import blend
from jam.seeds.library import SeedLibrary
from jam.stream.producer import StreamSettings
from jam.train import listening
from jam.train.captions import style_tempos
from jam.train.composer import STYLES
from tests.standin import StandinRenderer

TEMPOS = (("house", 120.0), ("hip hop", 90.0), ("lo-fi hip hop", 80.0))


def test_style_tempos_round_trip_through_jam_json_and_the_longest_phrase_named_wins(tmp_path):
    d = ModelDefaults(steps=9, tempos=TEMPOS)
    d.save(tmp_path)
    assert json.loads((tmp_path / "jam.json").read_text())["tempos"]["house"] == 120.0
    back = ModelDefaults.load(tmp_path)
    assert back == dataclasses.replace(d, tempos=tuple(sorted(TEMPOS)))
    assert back.tempo_for("Deep HOUSE with warm pads") == 120.0
    assert back.tempo_for("lo-fi hip hop with rhodes") == 80.0  # not hip hop's 90
    assert back.tempo_for("boom bap hip-hop") == 90.0  # words, whatever joins them
    assert back.tempo_for("a household tune") is None  # whole words only
    assert ModelDefaults().tempo_for("house") is None
    ModelDefaults().save(tmp_path)
    assert "tempos" not in json.loads((tmp_path / "jam.json").read_text())


@pytest.mark.parametrize(
    "tempos", [{"house": 500}, {"house": "fast"}, {"   ": 120}, [["house", 120]]]
)
def test_bad_tempos_in_jam_json_are_a_clear_error(tmp_path, tempos):
    (tmp_path / "jam.json").write_text(json.dumps({"steps": 9, "tempos": tempos}))
    with pytest.raises(ModelError, match="tempo"):
        ModelDefaults.load(tmp_path)


def test_style_tempos_are_each_styles_median_for_every_phrase_naming_it():
    records = [{"style": "house", "natural_bpm": b} for b in (118, 122, 126)] + [
        {"style": "funk", "natural_bpm": 100},
        {"style": "funk"},
    ]
    tempos = style_tempos(records)
    assert tempos["house"] == tempos["deep house"] == 122.0
    assert tempos["funky"] == 100.0
    assert "techno" not in tempos


def test_the_embedded_model_plays_each_composed_style_within_its_tempo_range():
    d = ModelDefaults.load(DEFAULT_MODEL_DIR)
    for style in STYLES.values():
        lo, hi = style.bpm
        assert lo <= d.tempo_for(style.name) <= hi, style.name


def standin(tempos) -> App:
    seeds = SeedLibrary(TINY_PARAMS, width=512)
    defaults = ModelDefaults(tile_width=512, tempos=tempos)
    return App(StandinRenderer(seeds), seeds, defaults, StreamSettings())


def test_a_session_and_a_render_play_at_the_tempo_of_the_style_their_prompt_names():
    app = standin(TEMPOS)
    seed_bpm = app.seeds.get(app.defaults.seed_image).bpm
    assert app.new_state("deep house with warm pads", None).controls.bpm == 120.0
    assert app.new_state("warm analog pads", None).controls.bpm == seed_bpm

    async def tempo_heard(prompt: str, bpm: float | None = None) -> float:
        try:
            audio = await app.render(RenderRequest(blend(prompt), seconds=12.0, bpm=bpm))
        finally:
            await app.close()
        return listening.dominant_tempo(audio, app.sample_rate)

    assert asyncio.run(tempo_heard("deep house")) == pytest.approx(120.0, rel=0.02)
    assert asyncio.run(tempo_heard("warm analog pads")) == pytest.approx(seed_bpm, rel=0.02)
    assert asyncio.run(tempo_heard("deep house", bpm=100.0)) == pytest.approx(100.0, rel=0.02)
