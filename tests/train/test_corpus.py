"""The training corpus: real SoundFont rendering of a few short clips, captions and splits."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from jam.train.captions import (
    HELDOUT_COMBOS,
    HELDOUT_TEMPLATES,
    captions,
    is_heldout_combo,
    style_words,
)
from jam.train.composer import DRUM_CHANNEL, STYLES, compose, grid_time
from jam.train.corpus import build_corpus, clip_meta, corpus_main, read_captions
from jam.train.pieces import FAMILIES, piece_clip
from jam.train.soundfont import DEFAULT_SOUNDFONT, render_clip, render_events

SR = 16000


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, n_clips=8, seconds=2.0, sample_rate=SR, seed=7, workers=1,
                 music21_fraction=0.0, progress=False)  # fmt: skip
    return out


def test_same_seed_gives_identical_files_with_one_or_two_workers(
    corpus_dir: Path, tmp_path: Path
) -> None:
    build_corpus(tmp_path, n_clips=8, seconds=2.0, sample_rate=SR, seed=7, workers=2,
                 music21_fraction=0.0, progress=False)  # fmt: skip
    a = sorted(p.relative_to(corpus_dir) for p in corpus_dir.rglob("*") if p.is_file())
    b = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert a == b and len(a) == 9
    for rel in a:
        assert (corpus_dir / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_another_seed_gives_another_corpus(corpus_dir: Path, tmp_path: Path) -> None:
    build_corpus(tmp_path, n_clips=2, seconds=2.0, sample_rate=SR, seed=8,
                 music21_fraction=0.0, progress=False)  # fmt: skip
    assert (
        read_captions(tmp_path / "captions.jsonl")
        != read_captions(corpus_dir / "captions.jsonl")[:2]
    )


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_style_renders_whole_bars_and_nonsilent_audio_of_the_asked_length(
    style: str,
) -> None:
    clip = compose(style, random.Random(11), min_seconds=2.0)
    assert clip.bars >= 1 and clip.seconds >= 2.0 > clip.seconds - clip.bar_seconds
    audio = render_clip(clip, 2.0, SR)
    assert audio.dtype == np.float32 and audio.shape == (2 * SR,)
    assert abs(float(np.abs(audio).max()) - 0.5) < 0.01
    rms = float(np.sqrt(np.mean(audio**2)))
    assert rms > 0.01, f"{style} nearly silent"
    quarters = np.array_split(audio, 4)
    assert all(np.sqrt(np.mean(q**2)) > 1e-3 for q in quarters), f"{style} has a silent gap"


def test_drum_events_sit_on_the_swung_grid_at_the_clip_bpm() -> None:
    for style, spec in STYLES.items():
        if not spec.kits:
            continue
        for seed in range(5):
            clip = compose(style, random.Random(seed), bars=2)
            grid = [
                grid_time(k / 2, clip.bpm, clip.swing, clip.swing_unit)
                for k in range(2 * 16 * clip.bars + 2)
            ]
            drums = [n.start for n in clip.events if n.channel == DRUM_CHANNEL]
            assert drums, style
            off = [min(abs(t - g) for g in grid) for t in drums]
            assert max(off) < 1e-6, (style, seed)


def _onsets(audio: np.ndarray, sr: int) -> np.ndarray:
    """Onset times from rises of a 2 ms-hop energy envelope."""
    hop = sr // 500
    env = np.sqrt(np.convolve(audio**2, np.ones(hop) / hop, mode="same"))[::hop]
    env = np.log(env + 1e-4)
    rise = env[4:] - env[:-4]
    picks = [i for i in range(1, len(rise) - 1)
             if rise[i] > 2.0 and rise[i] >= rise[i - 1] and rise[i] > rise[i + 1]]  # fmt: skip
    times: list[float] = []
    for i in picks:
        t = (i + 2) * hop / sr
        if not times or t - times[-1] > 0.05:
            times.append(t)
    return np.array(times)


def test_rendered_drums_hit_every_beat_and_nothing_off_the_grid() -> None:
    clip = compose("techno", random.Random(3), bars=2)
    lead_in = 0.1  # silence first, so the downbeat is an audible rise too
    drums = [replace(n, start=n.start + lead_in) for n in clip.events if n.channel == DRUM_CHANNEL]
    audio = render_events(drums, clip.seconds + lead_in, SR)
    onsets = _onsets(audio, SR) - lead_in
    sixteenth = 60.0 / clip.bpm / 4
    beats = np.arange(clip.bars * 4) * 4 * sixteenth
    assert all(np.min(np.abs(onsets - b)) < 0.02 for b in beats)
    off_grid = np.abs(onsets / sixteenth - np.round(onsets / sixteenth)) * sixteenth
    assert off_grid.max() < 0.02, onsets


def test_captions_name_the_style_and_differ_in_wording(corpus_dir: Path) -> None:
    records = read_captions(corpus_dir / "captions.jsonl")
    assert len(records) == 8
    for r in records:
        texts = [c["text"] for c in r["captions"]]
        assert len(texts) >= 4 and len(set(texts)) == len(texts)
        words = [w.lower() for w in style_words(r["style"])]
        assert all(any(w in t.lower() for w in words) for t in texts), texts
        assert (corpus_dir / r["file"]).is_file()
        splits = {c["split"] for c in r["captions"]}
        assert splits == ({"heldout_combo"} if r["split"] == "heldout_combo"
                          else {"train", "heldout_wording"})  # fmt: skip


def test_every_style_phrase_names_one_style_only() -> None:
    """A phrase two styles shared would give a prompt two tempos (``captions.style_tempos``)."""
    named: dict[str, set[str]] = {}
    for style in {*STYLES, *(f.style for f in FAMILIES.values())}:
        for phrase in (style, *style_words(style)):
            named.setdefault(phrase.lower(), set()).add(style)
    assert len(named) > 50
    assert {p: s for p, s in named.items() if len(s) > 1} == {}


def test_heldout_combos_and_wordings_never_reach_train() -> None:
    train_styles: set[str] = set()
    train_families: set[str] = set()
    held = 0
    heldout_markers = ("beats per minute", "feeling", "in the style of", "imagine")
    for i in range(600):
        rng = random.Random(i)
        clip = compose(sorted(STYLES)[i % len(STYLES)], rng, bars=1)
        caps = captions(clip_meta(clip), rng)
        combo = is_heldout_combo(clip.style, clip.families)
        held += combo
        for c in caps:
            if combo:
                assert c["split"] == "heldout_combo"
            if c["split"] == "train":
                assert not any(m in c["text"] for m in heldout_markers), c["text"]
        if not combo:
            train_styles.add(clip.style)
            train_families.update(clip.families)
    assert 0.02 < held / 600 < 0.25
    composed = [(s, f) for s, f in HELDOUT_COMBOS if s in STYLES]
    assert all(s in train_styles and f in train_families for s, f in composed)
    assert len(HELDOUT_TEMPLATES) >= 2


def test_music21_chorale_and_fiddle_tune_excerpts_render() -> None:
    for family, style in (("bach", "chorale"), ("folk", "celtic folk")):
        rng = random.Random(1)
        events, meta = piece_clip(family, rng, 3.0)
        assert meta["style"] == style and meta["source"].startswith("music21:")
        assert len(events) > 4 and max(n.start for n in events) < 3.0
        audio = render_events(events, 3.0, SR)
        assert audio.shape == (3 * SR,) and np.sqrt(np.mean(audio**2)) > 0.01
        texts = [c["text"] for c in captions(meta, rng)]
        assert all(any(w.lower() in t.lower() for w in style_words(style)) for t in texts)


def test_corpus_cli_explains_a_missing_soundfont(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert corpus_main([str(tmp_path), "--soundfont", str(tmp_path / "none.sf2")]) == 2
    assert "fluid-soundfont-gm" in capsys.readouterr().err
    assert Path(DEFAULT_SOUNDFONT).name == "FluidR3_GM.sf2"
