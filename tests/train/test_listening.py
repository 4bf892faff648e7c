"""The listener-facing measures, on signals whose answer is known: click tracks on and off a
beat grid, pure harmonics against white noise, a loudness or brightness step at a seam."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jam.train.listening import (
    bar_similarity,
    beat_lock,
    control_positions,
    dominant_tempo,
    histogram_overlap,
    onset_phases,
    phase_histogram,
    seam_steps,
    strong_onsets,
    swung_grid,
    tonal_sharpness,
)

SR = 22050
BPM = 120.0
EIGHTH = 0.25  # seconds at 120 bpm
BEAT = round(60 * SR / BPM)


def clicks(times: np.ndarray, seconds: float, gain: float = 0.5, seed: int = 0) -> np.ndarray:
    """Short decaying noise bursts (a closed hi-hat, roughly) starting at ``times`` seconds."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SR)
    x = np.zeros(n)
    burst = round(0.03 * SR)
    for t in times:
        i = round(t * SR)
        seg = rng.standard_normal(burst) * np.exp(-np.arange(burst) / (0.005 * SR))
        x[i : i + burst] += seg[: max(0, min(burst, n - i))]
    return gain * x


def grid_times(seconds: float, start: float = EIGHTH) -> np.ndarray:
    return np.arange(start, seconds - 0.1, EIGHTH)


def harmonics(f0: float, seconds: float, n: int = 20) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return 0.3 * sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, n + 1))


# --- onsets and beat lock --------------------------------------------------------------------


def test_strong_onsets_are_found_at_each_click_within_5_ms():
    times = grid_times(10.0)
    found = strong_onsets(clicks(times, 10.0), SR) / SR
    assert len(found) == len(times)
    assert np.abs(found - times).max() < 0.005


def test_strong_onsets_do_not_depend_on_the_level():
    x = clicks(grid_times(10.0), 10.0)
    np.testing.assert_array_equal(strong_onsets(x, SR), strong_onsets(x * 0.01, SR))


def test_white_noise_has_no_strong_onsets():
    noise = 0.1 * np.random.default_rng(3).standard_normal(30 * SR)
    assert len(strong_onsets(noise, SR)) == 0


def test_weak_onsets_in_a_hiss_bed_are_not_strong():
    """Bursts no louder than the hiss around them (Griffin-Lim's texture) are not the rhythm."""
    n = 10 * SR
    bed = 0.5 * 10 ** (-30 / 20) * np.random.default_rng(2).standard_normal(n) * 0.1
    ghosts = clicks(grid_times(10.0) + 0.125, 10.0, gain=0.5 * 10 ** (-30 / 20), seed=1)
    hits = clicks(grid_times(10.0), 10.0)
    found = strong_onsets(hits + ghosts + bed, SR) / SR
    assert len(found) == len(grid_times(10.0))
    assert np.abs(found - grid_times(10.0)).max() < 0.005


def test_a_click_track_exactly_on_the_120_bpm_grid_is_fully_beat_locked():
    x = clicks(grid_times(30.0), 30.0) + 0.005 * np.random.default_rng(0).standard_normal(30 * SR)
    lock = beat_lock(strong_onsets(x, SR), SR, BPM)
    assert lock["onsets"] >= 110
    assert lock["on_grid"] >= 0.98
    assert lock["chance"] == pytest.approx(0.32)


def test_a_click_track_at_another_tempo_or_jittered_scores_near_chance():
    other = clicks(np.arange(0.2, 29.9, 60 / 123 / 2), 30.0)  # 123 bpm over a 120 bpm grid
    jitter = grid_times(30.0) + np.random.default_rng(1).uniform(-0.125, 0.125, 119)
    for x in (other, clicks(np.sort(jitter), 30.0)):
        lock = beat_lock(strong_onsets(x, SR), SR, BPM)
        assert lock["on_grid"] < 0.5


def test_onsets_count_as_on_the_grid_within_40_ms_only():
    on = beat_lock(np.array([0.03, 0.5 - 0.03]) * SR, SR, BPM)
    off = beat_lock(np.array([0.05, 0.5 - 0.05]) * SR, SR, BPM)
    assert (on["on_grid"], off["on_grid"]) == (1.0, 0.0)


def test_clicks_played_15_ms_early_are_on_the_grid_with_an_offset_of_minus_15_ms():
    early = strong_onsets(clicks(grid_times(10.0) - 0.015, 10.0), SR)
    late = strong_onsets(clicks(grid_times(10.0) + 0.015, 10.0), SR)
    a, b = beat_lock(early, SR, BPM), beat_lock(late, SR, BPM)
    assert (a["on_grid"], b["on_grid"]) == (1.0, 1.0)
    assert a["offset_s"] == pytest.approx(-0.015, abs=0.003)
    assert b["offset_s"] == pytest.approx(0.015, abs=0.003)
    assert beat_lock(np.zeros(0), SR, BPM)["offset_s"] is None


def test_the_grid_starts_at_its_origin_sample():
    times = grid_times(10.0) + 0.1
    found = strong_onsets(clicks(times, 10.0), SR)
    assert beat_lock(found, SR, BPM, origin=round(0.1 * SR))["on_grid"] == 1.0
    assert beat_lock(found, SR, BPM, origin=0)["on_grid"] == 0.0


def test_near_seam_lock_counts_only_the_beat_around_each_seam():
    """On the grid everywhere except around the seams, where the groove slips by 100 ms."""
    seams = np.array([10.0, 20.0])
    times = grid_times(30.0)
    times = np.where(np.abs(times[:, None] - seams).min(1) <= 0.3, times + 0.1, times)
    found = strong_onsets(clicks(times, 30.0), SR)
    lock = beat_lock(found, SR, BPM, seams=seams * SR, around_beats=0.8)  # 0.4 s
    assert lock["onsets_near_seams"] == 6
    assert lock["on_grid_near_seams"] == 0.0
    assert lock["on_grid"] == pytest.approx(1 - 6 / len(times), abs=0.01)


def test_beat_lock_of_no_onsets_is_none():
    lock = beat_lock(np.zeros(0), SR, BPM, seams=[SR])
    assert (lock["onsets"], lock["on_grid"], lock["on_grid_near_seams"]) == (0, None, None)


def swung_sixteenths(seconds: float, swing: float) -> np.ndarray:
    """Every 16th at 120 bpm, the off-beat ones ``swing`` of a 16th late (lo-fi's feel)."""
    sixteenth = EIGHTH / 2
    steps = np.arange(2, int((seconds - 0.2) / sixteenth))
    return steps * sixteenth + np.where(steps % 2 == 1, swing * sixteenth, 0.0)


def test_swung_sixteenths_are_on_their_swung_grid_and_off_the_straight_one():
    found = strong_onsets(clicks(swung_sixteenths(20.0, 0.33), 20.0), SR)
    swung = beat_lock(found, SR, BPM, tolerance_s=0.02, grid=swung_grid(0.33))
    straight = beat_lock(found, SR, BPM, subdivision=4, tolerance_s=0.02)
    eighths = beat_lock(found, SR, BPM)
    assert swung["onsets"] >= 150
    assert swung["on_grid"] >= 0.98
    assert straight["on_grid"] == pytest.approx(0.5, abs=0.02)  # the off-beats, 41 ms late
    assert eighths["on_grid"] == pytest.approx(0.5, abs=0.02)
    assert swung["chance"] == pytest.approx(4 * 0.04 / 0.5)


def test_swung_grid_follows_the_composers_timing_for_either_swing_unit():
    assert swung_grid() == (0.0, 0.25, 0.5, 0.75)
    assert swung_grid(0.2, 16) == pytest.approx((0.0, 0.3, 0.5, 0.8))
    assert swung_grid(0.2, 8) == pytest.approx((0.0, 0.25, 0.6, 0.75))


def test_a_grid_with_overlapping_windows_counts_their_union_as_chance():
    lock = beat_lock(np.zeros(1), SR, 240.0, subdivision=4, tolerance_s=0.04)  # 62.5 ms 16ths
    assert lock["chance"] == 1.0


def test_phase_histograms_tell_a_groove_from_the_same_groove_a_16th_late():
    times = swung_sixteenths(20.0, 0.0)[::2]  # straight eighths
    on = phase_histogram(onset_phases(times * SR, SR, BPM), 24)
    late = phase_histogram(onset_phases((times + EIGHTH / 2) * SR, SR, BPM), 24)
    assert on[0] == pytest.approx(0.5) and on[12] == pytest.approx(0.5)
    assert histogram_overlap(on, on) == pytest.approx(1.0)
    assert histogram_overlap(on, late) == 0.0


def tiled_groove(slot_beats: int, tiles: int = 6) -> tuple[np.ndarray, list[float]]:
    """Tiles of a two-bar groove over a quiet hiss (a loud kick on 1 and the and of 3, a snare
    on 2 and 4, soft hats on the other eighths), each tile's downbeat ``slot_beats`` beats
    after the last's: 8 keeps the bars, 7 is a fade over each tile's last beat (the next
    downbeat comes a beat early)."""
    beat_s = 60 / BPM
    seconds = tiles * slot_beats * beat_s + 1.0
    hits: dict[float, list[float]] = {1.0: [], 0.4: [], 0.05: []}
    for t in range(tiles):
        t0 = t * slot_beats * beat_s
        for e in range(2 * min(8, slot_beats)):  # eighths
            gain = 1.0 if e % 8 in (0, 5) else 0.4 if e % 4 == 2 else 0.05
            hits[gain].append(t0 + e * beat_s / 2)
    x = sum(clicks(np.array(v), seconds, g, i) for i, (g, v) in enumerate(hits.items()))
    x = x + 0.002 * np.random.default_rng(9).standard_normal(x.size)
    seams = [t * slot_beats * beat_s * SR for t in range(1, tiles)]
    return x, seams


def test_bars_stay_alike_across_seams_on_bar_lines_and_not_across_seams_a_beat_early():
    on_bars = bar_similarity(tiled_groove(8)[0], SR, BPM, seams=tiled_groove(8)[1])
    early = bar_similarity(tiled_groove(7)[0], SR, BPM, seams=tiled_groove(7)[1])
    assert on_bars["pairs_across"] >= 5 and early["pairs_across"] >= 5
    assert on_bars["within"] > 0.8 and on_bars["across"] > 0.9 and on_bars["ratio"] > 0.95
    assert early["across"] < 0.6
    # while every onset of either stream is on the eighth grid
    for audio, _ in (tiled_groove(8), tiled_groove(7)):
        assert beat_lock(strong_onsets(audio, SR), SR, BPM)["on_grid"] == 1.0


def test_bar_similarity_of_silence_has_no_pairs():
    out = bar_similarity(np.zeros(10 * SR), SR, BPM, seams=[SR * 4.0])
    assert out["within"] is None and out["across"] is None and out["ratio"] is None


def test_the_tempo_heard_is_the_beat_of_a_groove_not_its_eighths():
    beats = np.arange(0.1, 19.9, 60 / 123)
    x = clicks(beats, 20.0) + clicks(beats + 30 / 123, 20.0, gain=0.2, seed=1)
    assert dominant_tempo(x, SR) == pytest.approx(123, abs=1)
    assert dominant_tempo(clicks(np.arange(0.1, 19.9, 60 / 94), 20.0), SR) == pytest.approx(
        94, abs=1
    )


# --- tonal sharpness ---------------------------------------------------------------------------


def test_pure_harmonics_are_sharp_and_white_noise_is_flat():
    tone = tonal_sharpness(harmonics(110.0, 5.0), SR)
    noise = tonal_sharpness(np.random.default_rng(0).standard_normal(5 * SR), SR)
    assert tone["flatness"] < 1e-3
    assert noise["flatness"] == pytest.approx(0.56, abs=0.03)  # exp(-Euler's gamma)
    assert tone["tonal_share"] > 0.95 and tone["tonal_share_bands"] > 0.95
    assert noise["tonal_share"] < 0.05 and noise["tonal_share_bands"] < 0.05


def test_a_low_bass_note_has_its_harmonics_resolved():
    assert tonal_sharpness(harmonics(55.0, 5.0, n=40), SR)["tonal_share"] > 0.95


def test_noise_blurring_a_tone_lowers_its_sharpness_in_order():
    tone = harmonics(220.0, 5.0)
    noise = np.random.default_rng(0).standard_normal(tone.size)
    levels = [tonal_sharpness(tone + g * noise, SR) for g in (0.0, 0.03, 0.3)]
    shares = [v["tonal_share_bands"] for v in levels]
    flats = [v["flatness"] for v in levels]
    assert shares == sorted(shares, reverse=True) and shares[0] - shares[-1] > 0.2
    assert flats == sorted(flats)


def test_tonal_sharpness_ignores_energy_above_8_khz_and_silent_frames():
    tone = harmonics(220.0, 5.0, n=5) * np.minimum(1, np.arange(5 * SR) / (0.2 * SR))  # fade-in
    rng = np.random.default_rng(0)
    hiss = np.fft.irfft(np.fft.rfft(rng.standard_normal(tone.size)) * (np.fft.rfftfreq(
        tone.size, 1 / SR) > 9000), tone.size)  # fmt: skip
    a = tonal_sharpness(tone, SR)
    silent_first = tonal_sharpness(np.concatenate([np.zeros(40 * 1024), tone]), SR)  # 40 hops
    assert abs(silent_first["frames"] - a["frames"]) <= 1  # the frame on the edge
    assert silent_first["flatness"] == pytest.approx(a["flatness"], rel=0.05)
    hissy = tonal_sharpness(tone + 10 * hiss, SR)
    assert hissy["flatness"] < 0.01  # white noise: 0.56 (a pure tone's flatness is ~0 and
    # jumps by orders of magnitude for any energy at all between its lines: not compared)
    assert hissy["tonal_share"] == pytest.approx(a["tonal_share"], abs=0.01)


def test_tonal_sharpness_takes_tensors_and_stereo():
    x = harmonics(110.0, 3.0)
    a = tonal_sharpness(x, SR)
    b = tonal_sharpness(torch.from_numpy(np.stack([x, x])).float(), SR)
    assert b["tonal_share"] == pytest.approx(a["tonal_share"], abs=1e-3)


# --- seam continuity --------------------------------------------------------------------------


def beat_loop(seconds: float, f0: float = 220.0) -> np.ndarray:
    """A click on every beat over a held note: the same each beat."""
    beats = np.arange(0, seconds, 60 / BPM)
    return clicks(beats, seconds, gain=0.3) + harmonics(f0, seconds, n=4)


def test_control_positions_stay_on_the_seam_grid_and_clear_of_every_seam():
    seams = [7 * BEAT, 14 * BEAT]
    got = control_positions(seams, BEAT, BEAT, BEAT, 21 * BEAT)
    assert got == [k * BEAT for k in (1, 2, 3, 4, 5, 9, 10, 11, 12, 16, 17, 18, 19)]


def test_a_loudness_step_at_a_seam_shows_against_steps_within_tiles():
    x = beat_loop(21 * 0.5)
    seam = 7 * BEAT
    x[seam + BEAT :] *= 2.0  # +6 dB after a one-beat crossfade
    controls = control_positions([seam], BEAT, BEAT, BEAT, x.size)
    steps = seam_steps(x, SR, [seam], controls, BEAT, gap=BEAT)
    assert steps["loudness_step_db_seams"] == pytest.approx(6.02, abs=0.1)
    assert steps["loudness_step_db_controls"] < 0.3
    assert steps["loudness_ratio"] > 20
    assert steps["centroid_step_oct_seams"] < 0.05  # louder, not brighter


def test_a_brightness_step_at_a_seam_shows_in_the_centroid():
    a, b = harmonics(300.0, 5.0, n=3), harmonics(600.0, 5.0, n=3)
    x = np.concatenate([a, b])
    seam = a.size
    steps = seam_steps(x, SR, [seam], [SR, 7 * SR], BEAT, gap=0)
    assert steps["centroid_step_oct_seams"] == pytest.approx(1.0, abs=0.05)
    assert steps["centroid_step_oct_controls"] < 0.02
    assert steps["loudness_step_db_seams"] < 0.3


def test_seams_too_close_to_the_ends_are_skipped():
    x = beat_loop(4.0)
    steps = seam_steps(x, SR, [100, x.size - 100], [], BEAT)
    assert (steps["seams"], steps["loudness_step_db_seams"], steps["loudness_ratio"]) == (
        0,
        None,
        None,
    )
