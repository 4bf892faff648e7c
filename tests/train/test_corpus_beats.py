"""Beat-locked by construction: every corpus tile holds exactly 8 beats at the one image tempo,
from a downbeat at sample 0 (column 0 of its spectrogram), with its onsets on the grid.

Measured on real audio rendered through the corpus's own path (`build_corpus`, the FluidR3 GM
SoundFont) with the listener-facing onset detector (`jam.train.listening.strong_onsets`).
Tolerances: the downbeat's onset is found within 30 ms of sample 0 (the detector's frames are
5 ms, the clip fades in over 10 ms and a SoundFont attack takes a few ms more; column 0 of a
tile's image is centred on sample 0 and a column is 10 ms); onsets lie within 25 ms of the grid
the notes were written on (16ths at the image tempo, swung where the style swings).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest

from jam.seeds.library import SeedLibrary
from jam.sound.files import read_audio
from jam.train.captions import TEMPO_WORDS, captions, style_words
from jam.train.composer import DRUM_CHANNEL, KITS, PROGRAMS, STYLES, compose, grid_time
from jam.train.config import JAM_PARAMS, TILE_BEATS, TILE_WIDTH, image_bpm
from jam.train.corpus import build_corpus, corpus_main, read_captions
from jam.train.dataset import tile_audio, tile_pixels
from jam.train.listening import strong_onsets
from jam.train.pieces import Score, bar_starts, piece_clip
from jam.train.soundfont import render_events

SR = JAM_PARAMS.sample_rate  # the model's rate: the file is then exactly one training tile
TILE = JAM_PARAMS.num_samples(TILE_WIDTH)  # 112420 samples, 5.098 s
BPM = image_bpm()
BEAT = 60.0 * SR / BPM  # samples
DOWNBEAT_TOL = 0.030 * SR
GRID_TOL = 0.025 * SR
LEAD_IN = SR // 2


def onsets_of(audio: np.ndarray) -> np.ndarray:
    """Strong onsets (samples from the clip's start), with half a second of silence put first
    so that an attack at sample 0 is a rise the detector can see."""
    x = np.concatenate([np.zeros(LEAD_IN), np.asarray(audio, dtype=np.float64)])
    return strong_onsets(x, SR) - LEAD_IN


def written_grid(swing: float, swing_unit: int, beat_quarters: float = 1.0) -> np.ndarray:
    """Sample positions of the 16th-note grid of one tile (and its end), swung as written;
    sixths of a beat in compound time."""
    if beat_quarters == 1.5:
        return np.arange(6 * TILE_BEATS + 1) * BEAT / 6
    return np.array([grid_time(k, BPM, swing, swing_unit) * SR for k in range(4 * TILE_BEATS + 1)])


@pytest.fixture(scope="module")
def every_style(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """One clip of every composed style (the plan cycles styles evenly), as `jam corpus`."""
    out = tmp_path_factory.mktemp("beats")
    build_corpus(out, n_clips=len(STYLES), seconds=5.2, sample_rate=SR, seed=5,
                 music21_fraction=0.0, progress=False)  # fmt: skip
    records = read_captions(out / "captions.jsonl")
    assert sorted(r["style"] for r in records) == sorted(STYLES)
    return out, records


def test_the_image_tempo_puts_exactly_8_beats_in_a_512_frame_tile_as_the_seed_loops_do() -> None:
    assert abs(TILE_BEATS * 60.0 / BPM * SR - TILE) < 1e-6
    assert round(BPM, 3) == 94.147
    seeds = SeedLibrary(JAM_PARAMS, TILE_WIDTH)
    for name in seeds.names():
        assert seeds.get(name).bpm == pytest.approx(BPM, rel=1e-12), name


def test_every_style_clip_is_one_tile_of_exactly_8_beats_at_the_image_tempo(every_style) -> None:
    root, records = every_style
    for r in records:
        audio, rate = read_audio(root / r["file"])
        assert rate == SR and audio.shape[-1] == TILE, r["style"]
        assert r["bpm"] == BPM and r["tile_beats"] == 8 and r["tiles"] == 1 and r["bars"] == 2
        lo, hi = STYLES[r["style"]].bpm
        assert lo <= r["natural_bpm"] <= hi
        tiles = list(tile_audio(audio, rate, JAM_PARAMS, TILE_WIDTH))
        assert len(tiles) == 1 and tiles[0].equal(audio)  # the file is the training tile
        assert tile_pixels(tiles[0], JAM_PARAMS).shape == (128, TILE_WIDTH)


def test_every_style_clip_starts_with_its_downbeat_onset_at_sample_0(every_style) -> None:
    root, records = every_style
    for r in records:
        audio, _ = read_audio(root / r["file"])
        onsets = onsets_of(audio.numpy()[0])
        assert onsets.size, r["style"]
        assert abs(onsets[0]) <= DOWNBEAT_TOL, (r["style"], onsets[0] / SR)


def test_every_style_clip_has_its_onsets_on_the_written_grid_at_the_image_tempo(
    every_style,
) -> None:
    root, records = every_style
    shares = {}
    for r in records:
        audio, _ = read_audio(root / r["file"])
        onsets = onsets_of(audio.numpy()[0])
        grid = written_grid(r["swing"], r["swing_unit"])
        distance = np.abs(onsets[:, None] - grid[None, :]).min(1)
        shares[r["style"]] = float((distance <= GRID_TOL).mean())
    # Chance is ~31% (50 ms of every 159 ms 16th); trap's 32nd-note hi-hat rolls sit between.
    assert all(s >= 0.85 for s in shares.values()), shares
    assert np.mean(list(shares.values())) >= 0.97, shares


def test_every_beat_of_a_tile_is_played_and_nothing_falls_off_the_16th_grid() -> None:
    """Drums alone, from the four-on-the-floor styles: a kick on each of the 8 beats."""
    for style in ("house", "techno", "disco"):
        clip = compose(style, random.Random(2), bars=3, play_bpm=BPM)
        drums = [n for n in clip.events if n.channel == DRUM_CHANNEL]
        audio = render_events(drums, TILE / SR, SR)
        onsets = onsets_of(audio)
        beats = np.arange(TILE_BEATS) * BEAT
        assert np.abs(onsets[:, None] - beats[None, :]).min(0).max() <= GRID_TOL, style
        sixteenth = BEAT / 4
        off = np.abs(onsets / sixteenth - np.round(onsets / sixteenth)) * sixteenth
        assert off.max() <= GRID_TOL, (style, onsets / SR)


def test_image_tempo_captions_keep_style_and_instruments_and_name_no_tempo(every_style) -> None:
    _, records = every_style
    tempo_words = {w for ws in TEMPO_WORDS for w in ws}
    synonyms = {i.name: i.synonyms for i in (*PROGRAMS.values(), *KITS.values())}
    for r in records:
        texts = [c["text"].lower() for c in r["captions"]]
        assert len(texts) >= 4
        for t in texts:
            assert not re.search(r"\d+ (bpm|beats per minute)", t), t
            assert not tempo_words & set(re.findall(r"[a-z-]+", t)) - {"driving"}, t
            assert any(w.lower() in t for w in style_words(r["style"])), t
        named = [s.lower() for i in r["instruments"] for s in synonyms[i]]
        assert sum(any(s in t for s in named) for t in texts) >= len(texts) // 2, texts


def test_natural_tempo_clips_keep_their_tempo_words() -> None:
    clip = compose("house", random.Random(4), bars=1)
    meta = {"style": "house", "bpm": clip.bpm, "key": clip.key, "mode": clip.mode,
            "instruments": clip.instruments, "density": clip.density, "families": clip.families,
            "roles": clip.roles}  # fmt: skip
    texts = [c["text"] for i in range(20) for c in captions(meta, random.Random(i))]
    assert any(f"{round(clip.bpm)} bpm" in t for t in texts)


def _score(meters: list[str], bar_lengths: list[float]) -> Score:
    offs = np.concatenate([[0.0], np.cumsum(bar_lengths)[:-1]]).tolist()
    notes = tuple((o, 1.0, 0, 60) for o in offs)
    return Score(notes, float(sum(bar_lengths)), tuple(offs), 1, "C", "major", "t", "c",
                 tuple(meters))  # fmt: skip


def test_excerpts_are_whole_bars_of_8_beats_and_skip_pickups_and_triple_time() -> None:
    # 4/4 with a one-beat pickup: starts on full bars only, two bars each.
    s = _score(["4/4"] * 5, [1.0, 4.0, 4.0, 4.0, 4.0])
    assert [a for a, _, _ in bar_starts(s, 8)] == [1.0, 5.0, 9.0]
    # 6/8: the beat is the dotted quarter, 8 beats are four bars (12 quarters of 18).
    s = _score(["6/8"] * 6, [3.0] * 6)
    assert bar_starts(s, 8) == [(0.0, 1.5, "6/8"), (3.0, 1.5, "6/8"), (6.0, 1.5, "6/8")]
    # 3/4: 8 beats are no whole number of bars.
    assert bar_starts(_score(["3/4"] * 12, [3.0] * 12), 8) == []
    # A meter change inside the span breaks it.
    assert bar_starts(_score(["4/4", "4/4", "3/4", "4/4", "4/4"], [4, 4, 3, 4, 4]), 8) == [
        (0.0, 1.0, "4/4"),
        (11.0, 1.0, "4/4"),
    ]


@pytest.mark.parametrize("family", ["bach", "folk"])
def test_music21_excerpts_are_8_beats_from_a_downbeat_at_the_image_tempo(family: str) -> None:
    for seed in range(3):
        events, meta = piece_clip(family, random.Random(seed), TILE / SR, BPM, TILE_BEATS)
        assert meta["bpm"] == BPM and meta["meter"] in ("4/4", "2/4", "2/2", "6/8", "3/8", "4/2")
        grid = written_grid(0.0, 16, meta["beat_quarters"]) / SR
        starts = np.array([n.start for n in events])
        assert starts.min() == 0.0 and starts.max() < TILE / SR
        assert np.abs(starts[:, None] - grid[None, :]).min(1).max() < 1e-6  # 16ths, as written
        audio = render_events(events, TILE / SR, SR)
        onsets = onsets_of(audio)
        assert abs(onsets[0]) <= DOWNBEAT_TOL, (meta["source"], onsets[0] / SR)


def test_corpus_cli_renders_image_tempo_by_default_and_the_old_corpus_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--clips", "2", "--music21-fraction", "0", "--sample-rate", "16000", "--quiet"]
    assert corpus_main([str(tmp_path / "img"), "--seconds", "11", *common]) == 0
    assert "8 beats at 94.147 bpm" in capsys.readouterr().out
    for r in read_captions(tmp_path / "img" / "captions.jsonl"):
        audio, _ = read_audio(tmp_path / "img" / r["file"])
        assert r["tiles"] == 2 and audio.shape[-1] == 2 * -(-TILE * 16000 // SR)
        assert r["bars"] == 4 and r["bpm"] == BPM
    assert (
        corpus_main([str(tmp_path / "nat"), "--seconds", "2", "--tempo", "natural", *common]) == 0
    )
    for r in read_captions(tmp_path / "nat" / "captions.jsonl"):
        assert "natural_bpm" not in r and r["seconds"] == 2.0
        assert STYLES[r["style"]].bpm[0] <= r["bpm"] <= STYLES[r["style"]].bpm[1]
    assert corpus_main([str(tmp_path / "bad"), "--tile-beats", "6", *common]) == 2
