"""What a listener hears, as figures: on the beat, in tune, smooth across seams.

A style classifier rewards a recognisable timbre; it cannot hear a groove that stumbles at every
seam or notes smeared into noise. These measures work on the audio itself (``(samples,)`` or
``(channels, samples)``, mixed to mono; NumPy or torch), with positions in samples:

- *beat lock* (:func:`strong_onsets`, :func:`beat_lock`): the share of strong onsets within
  ±40 ms of the stream's eighth-note grid, overall and only in the beats around seams; also on
  a style's own 16th grid with its swing (:func:`swung_grid`), and where in the beat the onsets
  fall against real music (:func:`phase_histogram`, :func:`histogram_overlap`);
- *tonal sharpness* (:func:`tonal_sharpness`): spectral flatness (noise is flat, notes are not)
  and the share of energy in narrow spectral peaks (harmonic lines), both up to 8 kHz;
- *bar continuity* (:func:`bar_similarity`): how alike consecutive bars' rhythms are, across
  seams against inside tiles (a seam off the bar line rotates the pattern);
- *seam continuity* (:func:`seam_steps`): loudness and spectral-centroid steps across seams,
  against the same steps at positions inside tiles.

All functions are pure and deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torchaudio

from jam.train.composer import grid_time

# --- shared helpers ----------------------------------------------------------------------------


def mono(audio) -> torch.Tensor:
    """Float64 mono ``(samples,)`` from an array or tensor, ``(samples,)`` or ``(ch, samples)``."""
    x = torch.as_tensor(np.asarray(audio) if not torch.is_tensor(audio) else audio)
    x = x.detach().to("cpu", torch.float64)
    return x if x.dim() == 1 else x.reshape(-1, x.shape[-1]).mean(0)


def _power_stft(x: torch.Tensor, n_fft: int, hop: int, win: int | None = None) -> torch.Tensor:
    """Power ``(freq, frames)``; frame ``m`` is centred on sample ``m * hop``."""
    win = win or n_fft
    if x.numel() <= n_fft // 2:  # reflect padding needs more samples than half a window
        x = torch.nn.functional.pad(x, (0, n_fft // 2 + 1 - x.numel()))
    s = torch.stft(
        x, n_fft, hop, win, torch.hann_window(win, dtype=x.dtype), center=True,
        pad_mode="reflect", return_complex=True,
    )  # fmt: skip
    return s.abs().square()


def _next_pow2(n: float) -> int:
    return 1 << max(1, math.ceil(math.log2(max(n, 2))))


def _moving_median(x: torch.Tensor, half: int) -> torch.Tensor:
    """Running median over ``2 * half + 1`` samples along the last axis (edges replicated)."""
    if half <= 0:
        return x
    padded = torch.nn.functional.pad(x.unsqueeze(0), (half, half), mode="replicate").squeeze(0)
    return padded.unfold(-1, 2 * half + 1, 1).median(-1).values


# --- onsets and beat lock ------------------------------------------------------------------------


def onset_envelope(
    audio, sample_rate: int, hop_s: float = 0.005, window_s: float = 0.046, n_mels: int = 64
) -> tuple[np.ndarray, float]:
    """Spectral-flux onset strength and its frame rate (frames per second).

    The rise, summed positive parts averaged over ``n_mels`` mel bands, of log power (dB, 80 dB
    below the stream's peak at most) from half a window earlier to now. Log power makes it
    independent of the level; a lag of half a window (not one hop) makes an attack's rise
    peak when the window is centred on the attack, so a frame's time is the onset's time; the
    5 ms hop keeps the timing error well inside the ±40 ms tolerance.
    """
    x = mono(audio)
    win = max(16, round(window_s * sample_rate))
    n_fft = _next_pow2(win)
    hop = max(1, round(hop_s * sample_rate))
    power = _power_stft(x, n_fft, hop, win)
    fb = torchaudio.functional.melscale_fbanks(
        n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, None, "htk"
    ).to(power.dtype)
    db = 10 * torch.log10((fb.T @ power).clamp(min=1e-20))
    db = db.clamp(min=float(db.max()) - 80.0)
    lag = max(1, round(win / 2 / hop))
    rise = torch.zeros_like(db)
    rise[:, lag:] = (db[:, lag:] - db[:, :-lag]).clamp(min=0)
    return rise.mean(0).numpy(), sample_rate / hop


def strong_onsets(
    audio,
    sample_rate: int,
    relative: float = 0.3,
    min_rise_db: float = 4.0,
    min_gap_s: float = 0.05,
    floor_s: float = 0.5,
) -> np.ndarray:
    """Positions (samples, float) of the onsets a listener hears as the rhythm.

    Peaks of :func:`onset_envelope` that are the highest within ±``min_gap_s``, after the
    envelope's running median over ±``floor_s`` is taken away (steady texture, Griffin-Lim
    hiss and sustained pads rise and fall all the time but make no onset). *Strong* is adaptive
    to the stream: a peak counts if it reaches ``relative`` of the 95th percentile of all peak
    heights (so a level change or a quiet style does not change what counts, and small
    wiggles between the hits never do) and is at least ``min_rise_db`` (mean dB per band)
    above its surroundings (so a stream of pure texture has no strong onsets at all).
    """
    env, rate = onset_envelope(audio, sample_rate)
    e = torch.from_numpy(env)
    e = (e - _moving_median(e, round(floor_s * rate))).clamp(min=0)
    half = max(1, round(min_gap_s * rate))
    local_max = torch.nn.functional.max_pool1d(
        e.view(1, 1, -1), 2 * half + 1, stride=1, padding=half
    ).view(-1)
    peaks = torch.nonzero((e >= local_max) & (e > 0)).view(-1)
    if peaks.numel() == 0:
        return np.zeros(0)
    # A plateau (equal neighbours) keeps only its first frame.
    peaks = peaks[torch.cat([torch.tensor([True]), peaks[1:] - peaks[:-1] > half])]
    heights = e[peaks]
    threshold = max(relative * float(torch.quantile(heights, 0.95)), min_rise_db)
    strong = peaks[heights >= threshold]
    return strong.numpy().astype(np.float64) * (sample_rate / rate)


def beat_lock(
    onsets: Sequence[float] | np.ndarray,
    sample_rate: int,
    bpm: float,
    origin: float = 0.0,
    subdivision: int = 2,
    tolerance_s: float = 0.040,
    seams: Sequence[float] | np.ndarray = (),
    around_beats: float = 1.0,
    grid: Sequence[float] | None = None,
) -> dict[str, float | int | None]:
    """How many onsets sit on the stream's grid, overall and near seams.

    The grid is every ``1 / subdivision`` beat (2: eighth notes) from ``origin`` (a stream
    sample) at ``bpm``, or the places within each beat that ``grid`` lists (fractions of a
    beat, e.g. :func:`swung_grid`); an onset is on it within ±``tolerance_s``. ``near_seams``
    counts only onsets within ±``around_beats`` beats of a seam position. ``chance`` is the
    share that onsets at random times would get. A share is None when there are no onsets.
    ``offset_s`` is the median signed distance of the onsets on the grid to their point
    (negative: early), which the share cannot see: a stream whose hits all land 15 ms early
    is fully on the grid yet rushes against one whose hits land on it.
    """
    t = np.asarray(onsets, dtype=np.float64)
    beat = 60.0 * sample_rate / bpm
    points = np.asarray(
        grid if grid is not None else [k / subdivision for k in range(subdivision)], np.float64
    )
    phase = onset_phases(t, sample_rate, bpm, origin)
    signed = np.mod(phase[:, None] - points[None, :] + 0.5, 1.0) - 0.5  # in [-1/2, 1/2) beat
    nearest = np.abs(signed).argmin(1)
    offset = np.take_along_axis(signed, nearest[:, None], 1)[:, 0] * beat  # (onsets,): samples
    on = np.abs(offset) <= tolerance_s * sample_rate
    s = np.asarray(seams, dtype=np.float64)
    near = (
        (np.abs(t[:, None] - s[None, :]) <= around_beats * beat).any(1)
        if s.size
        else np.zeros(t.size, dtype=bool)
    )
    return {
        "onsets": int(t.size),
        "on_grid": float(on.mean()) if t.size else None,
        "onsets_near_seams": int(near.sum()),
        "on_grid_near_seams": float(on[near].mean()) if near.any() else None,
        "chance": _grid_chance(points, 2 * tolerance_s * sample_rate / beat),
        "offset_s": float(np.median(offset[on])) / sample_rate if on.any() else None,
    }


def _grid_chance(points: np.ndarray, width: float) -> float:
    """The share of a beat within ``width / 2`` (in beats) of any grid point."""
    cuts = np.sort(np.mod(points, 1.0))
    gaps = np.diff(np.concatenate([cuts, cuts[:1] + 1.0]))
    return float(np.minimum(gaps, width).sum())


def swung_grid(swing: float = 0.0, swing_unit: int = 16) -> tuple[float, ...]:
    """The four 16ths of a beat as fractions of it, with the corpus's swing: the composer's
    own timing (:func:`jam.train.composer.grid_time`), so a swung style is scored where its
    notes are meant to fall (lo-fi's off-beat 16ths come a third of a 16th late)."""
    return tuple(grid_time(k, 60.0, swing, swing_unit) for k in range(4))


def onset_phases(
    onsets: Sequence[float] | np.ndarray, sample_rate: int, bpm: float, origin: float = 0.0
) -> np.ndarray:
    """Where in its beat each onset falls, as a fraction of the beat in [0, 1)."""
    beat = 60.0 * sample_rate / bpm
    return np.mod((np.asarray(onsets, dtype=np.float64) - origin) / beat, 1.0)


def phase_histogram(phases: np.ndarray, bins: int = 24) -> np.ndarray:
    """Onset phases counted in ``bins`` equal parts of a beat, each centred on its grid point
    (bin 0 holds the beat itself, from half a bin before it), as shares summing to 1."""
    counts = np.bincount(np.floor(np.mod(phases * bins + 0.5, bins)).astype(int), minlength=bins)
    return counts / max(1, counts.sum())


def histogram_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """How much two phase histograms agree: the shared mass (1: the same, 0: disjoint)."""
    return float(np.minimum(a, b).sum())


def bar_similarity(
    audio,
    sample_rate: int,
    bpm: float,
    origin: float = 0.0,
    seams: Sequence[float] | np.ndarray = (),
    bar_beats: int = 4,
    bins_per_beat: int = 4,
) -> dict[str, float | int | None]:
    """How alike each bar's rhythm is to the bar before it, on the stream's bar grid.

    Each bar from ``origin`` (``bar_beats`` beats at ``bpm``) becomes a profile of its onset
    strength (:func:`onset_envelope`) in ``bins_per_beat`` bins a beat; a pair of consecutive
    bars scores the correlation of their profiles. A groove repeats from bar to bar, so pairs
    inside a tile score high; a seam that restarts the pattern off the bar line (the next
    tile's downbeat a beat early) rotates the bar after it and scores low, though every onset
    may still be on the eighth grid. ``across``: pairs with a seam inside their span (more
    than half a beat from its ends); ``within``: the rest; ``ratio``: across over within (1:
    seams keep the bars). A share is None when no pair has a profile to correlate.
    """
    env, rate = onset_envelope(audio, sample_rate)
    bar = bar_beats * 60.0 * rate / bpm  # frames
    first = origin / sample_rate * rate
    bins = bar_beats * bins_per_beat
    n = math.floor((env.size - first) / bar)
    total = np.concatenate([[0.0], np.cumsum(env)])
    profiles = []
    for k in range(n):
        edges = np.round(first + bar * (k + np.arange(bins + 1) / bins)).astype(int)
        edges = edges.clip(0, env.size)
        profiles.append(total[edges[1:]] - total[edges[:-1]])
    s = np.asarray(seams, dtype=np.float64) / sample_rate * rate
    margin = 0.5 / bar_beats  # half a beat, in bars
    within, across = [], []
    for k in range(1, n):
        a, b = profiles[k - 1], profiles[k]
        if a.std() == 0 or b.std() == 0:
            continue
        r = float(np.corrcoef(a, b)[0, 1])
        # a seam on the pair's outer bar lines belongs to the pair before or after
        lo, hi = first + (k - 1 + margin) * bar, first + (k + 1 - margin) * bar
        (across if ((s > lo) & (s < hi)).any() else within).append(r)

    def mean(v: list[float]) -> float | None:
        return float(np.mean(v)) if v else None

    out = {"pairs_within": len(within), "pairs_across": len(across)}
    out |= {"within": mean(within), "across": mean(across)}
    w, a = out["within"], out["across"]
    out["ratio"] = a / w if a is not None and w else None
    return out


def dominant_tempo(audio, sample_rate: int, lo_bpm: float = 70.0, hi_bpm: float = 180.0) -> float:
    """The tempo the onsets repeat at most: the highest autocorrelation of the onset envelope
    between ``lo_bpm`` and ``hi_bpm`` (a range that holds one octave of tempo and a bit, so a
    groove's eighth notes are not taken for its beat). A diagnostic: a tile playing its own
    tempo over the seed's grid shows here as a tempo other than the grid's."""
    env, rate = onset_envelope(audio, sample_rate)
    e = torch.from_numpy(env - env.mean())
    n = e.numel()
    spec = torch.fft.rfft(e, 2 * n)
    ac = torch.fft.irfft(spec.abs().square(), 2 * n)[:n]
    lags = torch.arange(n, dtype=torch.float64)
    lo, hi = 60.0 * rate / hi_bpm, 60.0 * rate / lo_bpm
    band = (lags >= math.floor(lo)) & (lags <= math.ceil(hi))
    k = int(lags[band][ac[band].argmax()])
    if 0 < k < n - 1:  # parabolic interpolation between lags
        a, b, c = float(ac[k - 1]), float(ac[k]), float(ac[k + 1])
        denom = a - 2 * b + c
        k_exact = k + (0.5 * (a - c) / denom if denom else 0.0)
    else:
        k_exact = float(k)
    return 60.0 * rate / k_exact


# --- tonal sharpness ----------------------------------------------------------------------------


def tonal_sharpness(
    audio,
    sample_rate: int,
    fmax: float = 8000.0,
    window_s: float = 0.186,
    peak_db: float = 10.0,
    median_hz: float = 220.0,
    lobe_bins: int = 2,
    silence_db: float = 40.0,
    band_hz: float = 125.0,
) -> dict[str, float]:
    """Spectral flatness and tonal-peak energy share of audio, from DC (excluded) to ``fmax``.

    A Hann STFT of ``window_s`` (4096 points at 22.05 kHz: 5.4 Hz bins, so the harmonics of a
    55 Hz bass note are ten bins apart), hop a quarter of it. Only frames with energy count:
    within ``silence_db`` of the 95th percentile of frame energy.

    - ``flatness``: per frame, geometric over arithmetic mean of the power (about 0.56 for white
      noise, near 0 for a few pure tones), averaged over frames.
    - ``tonal_share``: energy in narrow peaks over all energy, pooled over frames. A peak is a
      local maximum at least ``peak_db`` above the running median over ±``median_hz / 2``
      (the local floor between harmonics); its main lobe (±``lobe_bins``, the Hann window's) is
      counted. White noise reaches 10 dB above its median in about 0.1% of bins; a note's
      harmonics stand 30 dB and more above the floor.
    - ``tonal_share_bands``: the same share within each octave from ``band_hz`` (125-250 Hz,
      ..., 4-8 kHz), averaged over the octaves holding at least 1% of the energy: pooled energy
      is dominated by the bass and kick, this counts every register alike.
    """
    x = mono(audio)
    n_fft = _next_pow2(window_s * sample_rate * 0.99)
    power = _power_stft(x, n_fft, n_fft // 4)
    top = min(power.shape[0], int(fmax * n_fft / sample_rate) + 1)
    p = power[1:top]
    energy = p.sum(0)
    if not bool((energy > 0).any()):
        nan = float("nan")
        return {"flatness": nan, "tonal_share": nan, "tonal_share_bands": nan, "frames": 0}
    loud = energy >= float(torch.quantile(energy, 0.95)) * 10 ** (-silence_db / 10)
    p = p[:, loud]
    eps = 1e-12 * p.mean(0, keepdim=True).clamp(min=1e-300)
    q = p + eps
    flatness = (q.log().mean(0).exp() / q.mean(0)).mean()
    half = max(1, round(median_hz / 2 * n_fft / sample_rate))
    floor = _moving_median(q.T, half).T
    up = torch.nn.functional.pad(q, (0, 0, 1, 1))
    is_max = (q >= up[:-2]) & (q >= up[2:])
    peak = is_max & (q >= floor * 10 ** (peak_db / 10))
    lobe = torch.nn.functional.max_pool1d(
        peak.T.to(q.dtype).unsqueeze(1), 2 * lobe_bins + 1, stride=1, padding=lobe_bins
    ).squeeze(1).T.bool()  # fmt: skip
    tonal = p * lobe
    freqs = torch.arange(1, top, dtype=p.dtype) * sample_rate / n_fft
    shares, lo = [], band_hz
    while lo * 2 <= fmax * 1.001:
        band = (freqs >= lo) & (freqs < lo * 2)
        if float(p[band].sum()) >= 0.01 * float(p.sum()):
            shares.append(float(tonal[band].sum() / p[band].sum()))
        lo *= 2
    return {
        "flatness": float(flatness),
        "tonal_share": float(tonal.sum() / p.sum()),
        "tonal_share_bands": float(np.mean(shares)) if shares else float("nan"),
        "frames": int(loud.sum()),
    }


# --- seam continuity ----------------------------------------------------------------------------


def _window_stats(
    x: torch.Tensor, a: int, b: int, sample_rate: int, fmax: float
) -> tuple[float, float]:
    """RMS level (dB) and power-weighted spectral centroid (Hz, up to ``fmax``) of x[a:b]."""
    seg = x[max(a, 0) : max(b, 0)]
    level = 10 * math.log10(float(seg.square().mean()) + 1e-12)
    spec = torch.fft.rfft(seg * torch.hann_window(seg.numel(), dtype=seg.dtype))
    power = spec.abs().square()
    freqs = torch.fft.rfftfreq(seg.numel(), 1 / sample_rate, dtype=seg.dtype)
    keep = freqs <= fmax
    total = float(power[keep].sum())
    centroid = float((power[keep] * freqs[keep]).sum()) / total if total > 0 else 0.0
    return level, centroid


def steps_at(
    audio, sample_rate: int, positions, window: int, gap: int = 0, fmax: float = 8000.0
) -> tuple[np.ndarray, np.ndarray]:
    """Loudness steps (|dB|) and centroid steps (|octaves|) at each position: the window
    ``[p - window, p)`` against ``[p + gap, p + gap + window)``. Positions whose windows do not
    fit inside the audio are skipped."""
    x = mono(audio)
    loud, cent = [], []
    for p in positions:
        p = round(p)
        if p - window < 0 or p + gap + window > x.numel():
            continue
        la, ca = _window_stats(x, p - window, p, sample_rate, fmax)
        lb, cb = _window_stats(x, p + gap, p + gap + window, sample_rate, fmax)
        loud.append(abs(lb - la))
        cent.append(abs(math.log2(max(cb, 1e-3) / max(ca, 1e-3))))
    return np.asarray(loud), np.asarray(cent)


def control_positions(
    seams: Sequence[float], step: float, gap: int, window: int, length: int
) -> list[int]:
    """Positions inside tiles to compare seams with: on the seams' own grid (every ``step``
    samples from the first seam, e.g. every beat, so each window holds the same part of the
    pattern as at a seam), with both windows and the gap clear of every seam's span
    ``[s, s + gap)``."""
    if not seams:
        return []
    s0 = float(seams[0])
    k0 = -math.floor(s0 / step)
    out = []
    k = k0
    while (p := s0 + k * step) + gap + window <= length:
        lo, hi = p - window, p + gap + window
        if lo >= 0 and all(hi <= s or lo >= s + gap for s in seams):
            out.append(round(p))
        k += 1
    return out


def seam_steps(
    audio,
    sample_rate: int,
    seams: Sequence[float],
    controls: Sequence[float],
    window: int,
    gap: int = 0,
    fmax: float = 8000.0,
) -> dict[str, float | int | None]:
    """Loudness and centroid steps across seams against the same at ``controls`` (positions
    inside tiles, e.g. :func:`control_positions`): a seam that a listener hears jumps more
    than the music does from one beat to the next within a tile.

    A seam at ``s`` with ``gap`` (the crossfade's length) compares the ``window`` before
    ``s`` with the ``window`` after ``s + gap``. Means of absolute steps: loudness in dB,
    centroid in octaves; ``*_ratio`` is seams over controls.
    """
    ls, cs = steps_at(audio, sample_rate, seams, window, gap, fmax)
    lc, cc = steps_at(audio, sample_rate, controls, window, gap, fmax)

    def mean(a: np.ndarray) -> float | None:
        return float(a.mean()) if a.size else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    out = {
        "seams": int(ls.size),
        "controls": int(lc.size),
        "loudness_step_db_seams": mean(ls),
        "loudness_step_db_controls": mean(lc),
        "centroid_step_oct_seams": mean(cs),
        "centroid_step_oct_controls": mean(cc),
    }
    out["loudness_ratio"] = ratio(out["loudness_step_db_seams"], out["loudness_step_db_controls"])
    out["centroid_ratio"] = ratio(out["centroid_step_oct_seams"], out["centroid_step_oct_controls"])
    return out
