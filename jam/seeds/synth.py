"""Synthesised seed loops: short drum and synth loops that lock a session's tempo and downbeat.

Every tile of a session is img2img'd from one seed image, so the seed decides where the beats
fall. Each loop therefore fills its buffer with an exact whole number of beats: the tempo
follows from the buffer length (``bpm = beats * 60 * sample_rate / num_samples``) and events sit
at ``round(k * num_samples / steps)``, so a fractional beat length never drifts.

Rendering is circular: an event's tail that runs past the end wraps to the start, and the
final filtering is done in the frequency domain of the whole loop (circular convolution), so
the loop repeats without a seam. Everything is deterministic (fixed-seed noise), mono float32,
peak 0.5, and band-limited below 10 kHz, the range the model sees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

PEAK = 0.5
TOP_HZ = 9500.0  # start of the final roll-off; nothing survives above ~10 kHz
ATTACK_S = 0.003  # every note ramps in and out over a few ms, so nothing clicks
RELEASE_S = 0.008

Renderer = Callable[[int, int], np.ndarray]


@dataclass(frozen=True)
class LoopSpec:
    """A named loop: ``render(sample_rate, num_samples)`` gives exactly ``beats`` beats."""

    name: str
    beats: int
    description: str
    render: Renderer


# --- timing -------------------------------------------------------------------------------


def step_positions(num_samples: int, steps: int) -> np.ndarray:
    """Sample index of each of ``steps`` equal divisions of the loop (rounded, never drifts)."""
    return np.round(np.arange(steps) * num_samples / steps).astype(np.int64)


def bpm_for(beats: int, sample_rate: int, num_samples: int) -> float:
    return beats * 60.0 * sample_rate / num_samples


def midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


# --- building blocks (pure; lengths in samples, times in seconds) ---------------------------


def envelope(n: int, sr: int, attack: float, tau: float | None, release: float) -> np.ndarray:
    """Raised-cosine attack, exponential decay (``tau`` s; None = sustain), raised-cosine release.

    Starting and ending at exactly zero is what keeps every event click-free.
    """
    t = np.arange(n) / sr
    env = np.ones(n) if tau is None else np.exp(-t / tau)
    a = min(max(int(attack * sr), 1), n)
    env[:a] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / a)
    r = min(max(int(release * sr), 1), n)
    env[n - r :] *= 0.5 + 0.5 * np.cos(np.pi * (np.arange(r) + 1) / r)
    return env


def band(noise: np.ndarray, sr: int, lo: float, hi: float, edge: float = 0.3) -> np.ndarray:
    """Band-pass by a smooth spectral mask; ``edge`` is the transition width as a fraction."""
    spec = np.fft.rfft(noise)
    f = np.fft.rfftfreq(len(noise), 1.0 / sr)
    mask = np.ones_like(f)
    if lo > 0:
        mask *= _smoothstep((f - lo * (1 - edge)) / (lo * edge))
    if hi < sr / 2:
        mask *= 1 - _smoothstep((f - hi) / (hi * edge))
    return np.fft.irfft(spec * mask, len(noise))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal(n)


def partials(
    freq: float,
    n: int,
    sr: int,
    amps: Sequence[float],
    decays: Sequence[float | None] | None = None,
    phase: float = 0.0,
) -> np.ndarray:
    """Sum of harmonics ``k * freq`` with amplitudes ``amps``; each may decay at its own rate.

    Harmonics above the band the model sees (or Nyquist) are dropped, so nothing aliases.
    """
    t = np.arange(n) / sr
    out = np.zeros(n)
    limit = min(TOP_HZ, 0.45 * sr)
    for k, amp in enumerate(amps, start=1):
        if k * freq >= limit or amp == 0:
            continue
        wave = amp * np.sin(2 * np.pi * k * freq * t + phase * k)
        tau = decays[k - 1] if decays is not None else None
        out += wave if tau is None else wave * np.exp(-t / tau)
    return out


def mix_at(buf: np.ndarray, sig: np.ndarray, start: int, gain: float = 1.0) -> None:
    """Add ``sig`` into the loop ``buf`` at ``start``, wrapping past the end (circular time)."""
    n = len(buf)
    pos = start % n
    done = 0
    while done < len(sig):
        take = min(n - pos, len(sig) - done)
        buf[pos : pos + take] += gain * sig[done : done + take]
        done += take
        pos = 0


def choke(sig: np.ndarray, length: int, sr: int, release: float = 0.015) -> np.ndarray:
    """Cut ``sig`` to ``length`` samples with a short fade: a monophonic voice stops when the
    next note starts instead of beating against it."""
    if len(sig) <= length:
        return sig
    return sig[:length] * envelope(length, sr, 1e-6, None, release)


def finish(buf: np.ndarray, sr: int) -> np.ndarray:
    """Circular band-limit (DC and sub-rumble out, roll-off to 10 kHz) and normalise to PEAK.

    Filtering the whole loop in the frequency domain is circular convolution, so the result
    still repeats seamlessly.
    """
    spec = np.fft.rfft(buf)
    f = np.fft.rfftfreq(len(buf), 1.0 / sr)
    top = min(TOP_HZ, 0.45 * sr)
    mask = _smoothstep((f - 15.0) / 20.0) * (1 - _smoothstep((f - top) / (0.06 * top)))
    out = np.fft.irfft(spec * mask, len(buf))
    peak = np.max(np.abs(out))
    if peak > 0:
        out *= PEAK / peak
    return out.astype(np.float32)


# --- instruments --------------------------------------------------------------------------


def kick(
    sr: int,
    rng: np.random.Generator,
    tone: float = 1.0,
    length: float = 0.45,
    end_hz: float = 48.0,
) -> np.ndarray:
    """Pitch-swept sine (160 Hz down to ``end_hz``) with a short band-limited click, gently
    saturated. A long ``tone`` with ``end_hz`` on a note is an 808: kick and sub in one, so
    they never beat against each other."""
    n = int(length * sr)
    t = np.arange(n) / sr
    freq = end_hz + (160.0 - end_hz) * np.exp(-t / 0.035)
    body = np.sin(2 * np.pi * np.cumsum(freq) / sr)
    body *= envelope(n, sr, 0.001, 0.16 * tone, 0.03)
    m = int(0.006 * sr)
    click = np.zeros(n)
    click[:m] = band(_noise(rng, m), sr, 1000, 5000) * envelope(m, sr, 0.0005, 0.0015, 0.001)
    return np.tanh(1.4 * (body + 0.5 * click)) / np.tanh(1.4)


def pump(n: int, beats: int, depth: float) -> np.ndarray:
    """Sidechain-style gain: dips right after each beat and recovers, so sustained parts make
    room for the kick and breathe with the grid."""
    phase = np.arange(n) % (n / beats) / (n / beats)  # 0..1 within each beat
    return 1.0 - depth * np.exp(-phase * 6.0) * _smoothstep(phase * 60.0)


def snare(sr: int, rng: np.random.Generator, length: float = 0.3) -> np.ndarray:
    """Two damped body tones plus band-passed noise for the wires."""
    n = int(length * sr)
    body = partials(185.0, n, sr, [1.0], [0.05]) + partials(330.0, n, sr, [0.5], [0.035])
    wires = band(_noise(rng, n), sr, 1500, 8000) * 0.7
    return (0.6 * body + wires) * envelope(n, sr, 0.001, 0.09, 0.02)


def clap(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Three quick noise bursts then a diffuse tail, band-passed around 1-3 kHz."""
    n = int(0.3 * sr)
    noise = band(_noise(rng, n), sr, 900, 3500) * 1.2
    env = np.zeros(n)
    for i, delay in enumerate((0.0, 0.009, 0.018, 0.027)):
        d = int(delay * sr)
        env[d:] += envelope(n - d, sr, 0.0005, 0.07 if i == 3 else 0.004, 0.02)
    return noise * env


def hat(sr: int, rng: np.random.Generator, open_: bool = False) -> np.ndarray:
    """High-passed noise with a short (closed) or longer (open) decay."""
    n = int((0.3 if open_ else 0.07) * sr)
    noise = band(_noise(rng, n), sr, 6000, TOP_HZ) * 0.8
    return noise * envelope(n, sr, 0.0005, 0.09 if open_ else 0.018, 0.01)


def pluck(freq: float, dur: float, sr: int) -> np.ndarray:
    """Synth pluck: a few harmonics, the upper ones dying faster, like a filtered saw."""
    n = int(dur * sr)
    amps = [1.0, 0.5, 0.33, 0.22, 0.14, 0.09]
    decays = [0.25 / k**0.7 for k in range(1, len(amps) + 1)]
    return partials(freq, n, sr, amps, decays) * envelope(n, sr, ATTACK_S, None, RELEASE_S)


def bass_note(freq: float, dur: float, sr: int, tau: float | None = 0.35) -> np.ndarray:
    """Round bass: fundamental, a little 2nd and 3rd harmonic for definition on small speakers."""
    n = int(dur * sr)
    tone = partials(freq, n, sr, [1.0, 0.35, 0.12])
    return tone * envelope(n, sr, ATTACK_S, tau, 0.02)


def pad_note(freq: float, sr: int, brightness: np.ndarray) -> np.ndarray:
    """Two slightly detuned saw-like voices whose upper harmonics follow ``brightness`` (0..1),
    which also sets the note's length in samples."""
    n = len(brightness)
    t = np.arange(n) / sr
    out = np.zeros(n)
    limit = min(TOP_HZ, 0.45 * sr)
    for cents, phase in ((-7.0, 0.0), (7.0, 1.3)):
        f0 = freq * 2.0 ** (cents / 1200.0)
        for k in range(1, 9):
            if k * f0 >= limit:
                break
            weight = k**-1.2 * (brightness ** (k - 1) if k > 1 else 1.0)
            out += weight * np.sin(2 * np.pi * k * f0 * t + phase * k)
    return out * envelope(n, sr, 0.5, None, 0.9)


# --- loops --------------------------------------------------------------------------------


def _hits(
    buf: np.ndarray, pos: np.ndarray, steps: Sequence[int], sound: np.ndarray, gain: float = 1.0
) -> None:
    for s in steps:
        mix_at(buf, sound, int(pos[s]), gain)


def _voice(
    buf: np.ndarray,
    pos: np.ndarray,
    steps: Sequence[int],
    sounds: np.ndarray | Sequence[np.ndarray],
    sr: int,
    gain: float = 1.0,
) -> None:
    """Monophonic voice, like a drum machine's kick channel: each hit is choked where the next
    one starts (around the loop), so a quick double kick hits hard instead of smearing."""
    n = len(buf)
    for i, s in enumerate(steps):
        sound = sounds if isinstance(sounds, np.ndarray) else sounds[i]
        gap = (int(pos[steps[(i + 1) % len(steps)]]) - int(pos[s])) % n or n
        mix_at(buf, choke(sound, gap, sr), int(pos[s]), gain)


def render_four_on_floor(sr: int, n: int) -> np.ndarray:
    """House groove: kick every beat, clap on 2 and 4, off-beat open hat, 16th closed hats,
    and an off-beat bass that leaves room for the kick."""
    rng = np.random.default_rng(101)
    buf = np.zeros(n)
    pos = step_positions(n, 32)  # 16ths over 8 beats
    _voice(buf, pos, range(0, 32, 4), kick(sr, rng), sr)
    _hits(buf, pos, range(4, 32, 8), clap(sr, rng), 0.9)
    _hits(buf, pos, range(2, 32, 4), hat(sr, rng, open_=True), 0.5)
    _hits(buf, pos, [s for s in range(32) if s % 4 in (1, 3)], hat(sr, rng), 0.35)
    step = n / 32 / sr
    roots = [57, 57, 60, 55]  # A2 A2 C3 G2 (110-130 Hz, above the kick), one per 2 beats
    for i, s in enumerate(range(2, 32, 4)):
        mix_at(buf, bass_note(midi_hz(roots[i // 2]), 1.6 * step, sr, 0.12), int(pos[s]), 0.5)
    return finish(buf, sr)


def render_half_time(sr: int, n: int) -> np.ndarray:
    """Half-time groove: kick on 1 with syncopated pickups, big snare on 3, 8th hats with a
    16th roll, and an 808-style sub under the kicks."""
    rng = np.random.default_rng(202)
    buf = np.zeros(n)
    pos = step_positions(n, 32)
    line = [(0, 41), (7, 41), (10, 44), (16, 39), (19, 39), (26, 41)]  # F1 Ab1 Eb1
    booms = [kick(sr, rng, tone=1.4, length=0.6, end_hz=midi_hz(note)) for _, note in line]
    _voice(buf, pos, [step for step, _ in line], booms, sr)
    big = snare(sr, rng, length=0.45)
    big[: int(0.3 * sr)] += 0.6 * clap(sr, rng)  # layered clap thickens the one backbeat
    _hits(buf, pos, [8, 24], big, 0.95)
    _hits(buf, pos, [15, 31], snare(sr, rng), 0.2)  # ghost notes
    _hits(buf, pos, [*range(0, 32, 2), 27, 29], hat(sr, rng), 0.4)
    _hits(buf, pos, [14], hat(sr, rng, open_=True), 0.4)
    return finish(buf, sr)


def render_shuffle(sr: int, n: int) -> np.ndarray:
    """Blues shuffle: triplet-swung 8ths on the hats and a boogie bass line (I - IV)."""
    rng = np.random.default_rng(303)
    buf = np.zeros(n)
    pos = step_positions(n, 24)  # triplets over 8 beats; swung 8ths are triplet 0 and 2
    swung = [b * 3 + t for b in range(8) for t in (0, 2)]
    thump = kick(sr, rng, tone=0.7)
    ghost = 0.5 * thump  # the swung pickup is a softer push into the beat
    _voice(buf, pos, [0, 5, 6, 12, 17, 18], [thump, ghost, thump, thump, ghost, thump], sr)
    _hits(buf, pos, [3, 9, 15, 21], snare(sr, rng), 0.85)
    _hits(buf, pos, [11, 23], snare(sr, rng), 0.2)  # ghosts on the swung "a"
    closed = hat(sr, rng)
    for s in swung:
        mix_at(buf, closed, int(pos[s]), 0.45 if s % 3 == 0 else 0.3)
    line = [0, 0, 4, 4, 7, 7, 9, 7]  # root, 3rd, 5th, 6th, 5th: the boogie walk
    step = n / 24 / sr
    for i, s in enumerate(swung):
        root = 52 if i < 8 else 57  # E2 for bar one (I), A2 for bar two (IV)
        dur = (2.0 if s % 3 == 0 else 1.0) * step * 0.95
        mix_at(buf, bass_note(midi_hz(root + line[i % 8]), dur, sr, 0.3), int(pos[s]), 0.5)
    return finish(buf, sr)


def render_breakbeat(sr: int, n: int) -> np.ndarray:
    """Syncopated break in the spirit of the classic funk breaks: displaced kicks, ghost
    snares, a late snare in bar two and an open hat lifting into the turnaround."""
    rng = np.random.default_rng(404)
    buf = np.zeros(n)
    pos = step_positions(n, 32)
    thump = kick(sr, rng, tone=0.8)
    kicks = [thump, thump, 0.5 * thump, thump, thump, thump, thump]  # soft one leads the double
    _voice(buf, pos, [0, 2, 10, 11, 16, 18, 26], kicks, sr)
    _hits(buf, pos, [4, 12, 20, 28], snare(sr, rng), 0.9)
    _hits(buf, pos, [7, 9, 15, 23, 25, 30], snare(sr, rng), 0.3)
    closed = hat(sr, rng)
    for s in range(0, 32, 2):
        mix_at(buf, closed, int(pos[s]), 0.45 if s % 4 == 0 else 0.3)
    _hits(buf, pos, [13, 29], closed, 0.2)
    _hits(buf, pos, [22], hat(sr, rng, open_=True), 0.45)
    return finish(buf, sr)


CHORDS = ((57, 60, 64), (53, 57, 60), (48, 52, 55), (55, 59, 62))  # Am F C G, 2 beats each
ARP_ORDER = (0, 1, 2, 3, 4, 3, 2, 1)  # up and down through root, 3rd, 5th, +8va, +10th


def render_arpeggio(sr: int, n: int) -> np.ndarray:
    """16th-note pluck arpeggio over Am - F - C - G, a dotted-8th echo, an off-beat bass and a
    soft kick on every beat."""
    rng = np.random.default_rng(505)
    buf = np.zeros(n)
    pos = step_positions(n, 32)
    step = n / 32 / sr
    arp = np.zeros(n)
    for s in range(32):
        chord = CHORDS[s // 8]
        tones = [*chord, chord[0] + 12, chord[1] + 12]
        mix_at(arp, pluck(midi_hz(tones[ARP_ORDER[s % 8]]), 1.8 * step, sr), int(pos[s]))
    echo = np.roll(arp, int(pos[3]))  # circular, so the echo wraps too
    buf += 0.35 * arp + 0.12 * echo
    for s in range(2, 32, 4):  # off-beat bass leaves each beat to the kick
        root = midi_hz(CHORDS[s // 8][0] - 12)
        mix_at(buf, bass_note(root, 1.7 * step, sr, 0.15), int(pos[s]), 0.3)
    _voice(buf, pos, range(0, 32, 4), kick(sr, rng, tone=0.7), sr, 0.55)
    _hits(buf, pos, range(2, 32, 4), hat(sr, rng), 0.2)
    return finish(buf, sr)


DRONE_CHORDS = ((50, 53, 57, 60, 64), (50, 55, 58, 62, 67))  # Dm9, Gm/D over a D pedal


def render_drone(sr: int, n: int) -> np.ndarray:
    """Evolving pad: two chords whose brightness swells and fades over the loop, a gentle
    pump on every beat and a soft low pulse, so the beat grid is felt but not heard loudly."""
    rng = np.random.default_rng(606)
    buf = np.zeros(n)
    pos = step_positions(n, 8)
    beat = n / 8 / sr
    length = int(4 * beat * sr) + int(0.9 * sr)  # overlaps the next chord by the release
    pad = np.zeros(n)
    for i, chord in enumerate(DRONE_CHORDS):
        # One slow brightness cycle per loop, read at this note's own place in the loop.
        idx = (int(pos[4 * i]) + np.arange(length)) % n
        bright = 0.35 + 0.3 * np.sin(2 * np.pi * idx / n - 0.5 * i) ** 2
        for note in chord:
            mix_at(pad, pad_note(midi_hz(note), sr, bright), int(pos[4 * i]), 0.2)
    buf += pad * pump(n, 8, 0.25)
    _voice(buf, pos, range(8), kick(sr, rng, tone=1.2), sr, 0.5)
    shimmer = np.zeros(n)
    for b in range(1, 8, 2):
        mix_at(shimmer, pluck(midi_hz(81 if b < 4 else 79), 0.8 * beat, sr), int(pos[b]))
    buf += 0.06 * shimmer
    return finish(buf, sr)


LOOPS: dict[str, LoopSpec] = {
    spec.name: spec
    for spec in (
        LoopSpec(
            "four_on_floor",
            8,
            "straight 4/4 house: kick, clap, hats, off-beat bass",
            render_four_on_floor,
        ),
        LoopSpec(
            "half_time", 8, "half-time groove, snare on 3, sub under the kick", render_half_time
        ),
        LoopSpec("shuffle", 8, "swung triplet-8th shuffle with a boogie bass", render_shuffle),
        LoopSpec("breakbeat", 8, "syncopated funk break with ghost snares", render_breakbeat),
        LoopSpec(
            "arpeggio", 8, "16th synth arpeggio over Am-F-C-G with a soft kick", render_arpeggio
        ),
        LoopSpec(
            "drone", 8, "evolving pad (Dm9 - Gm/D) with a soft pulse on each beat", render_drone
        ),
    )
}


def render_loop(name: str, sample_rate: int, num_samples: int) -> np.ndarray:
    """Render loop ``name`` as float32 mono of exactly ``num_samples`` samples."""
    spec = LOOPS.get(name)
    if spec is None:
        raise ValueError(f"unknown loop {name!r}; known loops: {', '.join(LOOPS)}")
    if sample_rate <= 0 or num_samples <= 0:
        raise ValueError(
            f"need positive sample_rate and num_samples, got {sample_rate}, {num_samples}"
        )
    audio = spec.render(sample_rate, num_samples)
    assert audio.shape == (num_samples,) and audio.dtype == np.float32
    return audio
