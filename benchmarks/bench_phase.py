"""Griffin-Lim warm start across tiles: two consecutive overlapping tiles, the second inverted
from random phase (a tile without a predecessor, or a switch) or from the first tile's phase
over their overlap (a slot's tile in the stream, since issue 16 item 4).

    OMP_NUM_THREADS=1 python benchmarks/bench_phase.py [--threads 1] [--out FILE.json]

Tiles are placed as the stream places them (the first plays on past its ``beats`` for the
overlap, its last bar again: ``jam.sound.tempo.loop_tail``; the second starts on the first's
next bar line, here 8 beats in) and joined with an equal-power crossfade over the overlap (a
cold seam's). For each pair it prints the second tile's spectral convergence (dB, lower is better;
over the whole tile and over the overlap frames), the correlation of the two tiles' waveforms
over the overlap (0: unrelated; below 0 they partly cancel in the crossfade; 1: coherent), the
crossfade's level against the beats around it (equal power, equal gain, which suits identical
tiles only, and the stream's own fade), and the seam's loudness and centroid steps against the
same steps within the tiles (``jam.train.listening.seam_steps``). Sources:

- the embedded model's params: pairs of generated tiles (a tile and its stream successor,
  ``next_request``, rendered by the embedded model), and real SoundFont renders and a seed loop
  cut into two tiles and passed through the codec (8-bit mel image, mel pseudo-inverse);
- Riffusion's params (``SpectrogramParams()``: 44.1 kHz, 17640-point FFT, 512 mels): the real
  renders and the seed loop only (no Riffusion checkpoint here).

Both inversions of the second tile start the frames outside the overlap from the same random
phase, so the figures differ by the warm start alone. Each crossfade's level is also given against
a plain handover of power from one tile to the other (``handover_db``: 0 = no dip, no swell) for
the equal-power, the equal-gain and the stream's own fade (equal power at a cold seam; at a warm
one, :func:`jam.sound.mixing.coherent_weights` for the two tiles' correlation).

``stream`` (the embedded model only; ``--stream-seconds 0`` skips it): the wired path itself, the
real producer and engine (``jam.stream.producer``, ``Engine.render``) streaming each generated
prompt, warm as it now asks and cold (every request's continuation dropped), with each seam's
correlation and level against the handover as mixed, and as the two fixed laws would mix it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from jam.model.device_queue import DeviceQueue
from jam.model.engine import Engine, load_engine
from jam.model.types import RenderedTile, TileRequest
from jam.seeds.library import SeedLibrary
from jam.sound.mixing import coherent_weights, correlation
from jam.sound.params import DEFAULT_MAX_VALUE, SpectrogramParams
from jam.sound.phase import carried_phase, griffin_lim, spectral_convergence
from jam.sound.spectrogram import converter, pixels_from_spectrogram, spectrogram_from_pixels
from jam.sound.tempo import loop_frames, loop_tail
from jam.stream.controls import Controls, SessionState, next_request
from jam.stream.producer import Producer, StreamSettings, TileImage
from jam.stream.timeline import Placed, Transition
from jam.train import listening

WIDTH = 512  # frames per tile, both param sets
SEED = "four_on_floor"
STREAM = StreamSettings()
TILE_BEATS = SeedLibrary(SpectrogramParams(), 8).get(SEED).beats  # every built-in loop: 8
OVERLAP_BEATS = STREAM.overlap_beats
GENERATED = ("deep house with warm pads", "solo classical piano", "dark techno with acid bass")
REAL = (("house", 3), ("classical piano", 5))  # composer style, seed


def codec_linear(audio: torch.Tensor, params: SpectrogramParams, riffusion: bool) -> torch.Tensor:
    """A tile's linear magnitude as inversion sees it: mel, 8-bit image, mel pseudo-inverse.
    jam's tiles use one fixed max value; Riffusion's images their own peak (in the EXIF)."""
    conv = converter(params)
    mel = conv.spectrogram_from_audio(audio[None])
    peak = float(mel.max()) if riffusion else DEFAULT_MAX_VALUE
    px = pixels_from_spectrogram(mel, params.power_for_image, peak)
    back = spectrogram_from_pixels(px, params.power_for_image, peak)
    return conv.linear_from_mel(back)[0]


@torch.inference_mode()
def generated_pair(engine: Engine, prompt: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear magnitudes of a tile and its stream successor, from the model's float images."""
    first = engine.request(prompt, seed=seed)
    second = next_request(first, first.steps, STREAM.evolve)
    mags = []
    for request in (first, second):
        latents = engine.denoise([request], output_type="latent")
        images = engine.decode(latents)
        pixels = images.to(torch.float32).movedim(1, -1) * 255
        p = engine.params
        mel = spectrogram_from_pixels(pixels, p.power_for_image, DEFAULT_MAX_VALUE, p.stereo)
        if request is first:  # it plays on for the overlap, as a stream tile does
            mel = loop_tail(mel, TILE_BEATS, OVERLAP_BEATS)
        mags.append(engine.converter.linear_from_mel(mel)[0, 0])
    return mags[0], mags[1]


def fade_weights(fade: int, law: str, r: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(fade-out, fade-in) gains over ``fade`` samples: ``equal_power`` (a cold seam's),
    ``equal_gain`` (linear) or ``coherent`` (a warm seam's, for correlation ``r``)."""
    pos = (torch.arange(fade) + 0.5) / fade
    if law == "equal_gain":
        return 1 - pos, pos
    return coherent_weights(pos, min(1.0, max(0.0, r)) if law == "coherent" else 0.0)


def join(
    a: torch.Tensor, b: torch.Tensor, slot: int, fade: int, law: str = "equal_power", r: float = 0
) -> torch.Tensor:
    """``b`` placed ``slot`` samples after ``a``, crossfaded over ``fade`` by ``law``."""
    w_out, w_in = fade_weights(fade, law, r)
    mixed = a[..., slot : slot + fade] * w_out + b[..., :fade] * w_in
    return torch.cat([a[..., :slot], mixed, b[..., fade:]], dim=-1)


def level_db(x: torch.Tensor) -> float:
    return 10 * math.log10(float(x.double().square().mean()) + 1e-12)


def handover_db(x: torch.Tensor, y: torch.Tensor, mixed: torch.Tensor) -> float:
    """The level of ``mixed`` (``x`` fading into ``y``) against a plain handover of power from
    one to the other: 0 dB neither dips nor swells, whatever the two tiles' own levels."""
    pos = (torch.arange(x.shape[-1]) + 0.5) / x.shape[-1]
    handover = ((1 - pos) * x.double().square() + pos * y.double().square()).mean()
    return level_db(mixed) - 10 * math.log10(float(handover) + 1e-12)


def laws_db(x: torch.Tensor, y: torch.Tensor, r: float) -> dict[str, float]:
    """:func:`handover_db` of ``x`` fading into ``y`` by each law (``coherent``: for ``r``)."""
    out = {}
    for law in ("equal_power", "equal_gain", "coherent"):
        w_out, w_in = fade_weights(x.shape[-1], law, r)
        out[law] = handover_db(x, y, x * w_out + y * w_in)
    return out


def pair_figures(
    mag_a: torch.Tensor, mag_b: torch.Tensor, params: SpectrogramParams, seed: int
) -> dict:
    """Invert ``a``; invert ``b`` cold and warm; measure both joins."""
    p = params
    win = torch.hann_window(p.win_length)
    args = (win, p.n_fft, p.hop_length, p.num_griffin_lim_iters, p.griffin_lim_momentum)
    length = p.num_samples(WIDTH)
    beat = length / TILE_BEATS
    slot, fade = length, round(OVERLAP_BEATS * beat)  # b starts on a's next bar line
    fade_frames = fade // p.hop_length + 1

    def gen(k: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed * 10 + k)

    audio_a = griffin_lim(mag_a, *args, length=p.num_samples(mag_a.shape[-1]), generator=gen(0))
    init = carried_phase(audio_a, slot, mag_b.shape[-1], win, p.n_fft, p.hop_length, 0, fade_frames)
    warm_frames = int((init.abs().sum(0) > 0).sum())
    out: dict = {"warm_frames": warm_frames, "overlap_frames": fade_frames}
    overlap = slice(0, warm_frames)
    for name, phase in (("cold", None), ("warm", init)):
        t0 = time.perf_counter()
        audio_b = griffin_lim(mag_b, *args, init_phase=phase, length=length, generator=gen(1))
        took = time.perf_counter() - t0
        stream = join(audio_a, audio_b, slot, fade)
        a_part, b_part = audio_a[slot : slot + fade], audio_b[:fade]
        corr = float((a_part * b_part).sum() / (a_part.norm() * b_part.norm()).clamp(min=1e-12))
        around = 0.5 * (
            level_db(stream[slot - fade : slot]) + level_db(stream[slot + fade :][:fade])
        )
        linear = join(audio_a, audio_b, slot, fade, "equal_gain")[slot : slot + fade]
        # the stream's own fade: equal power at a cold seam, for the correlation at a warm one
        law = "coherent" if phase is not None else "equal_power"
        own = join(audio_a, audio_b, slot, fade, law, corr)[slot : slot + fade]
        window = round(beat)
        controls = listening.control_positions([slot], beat, fade, window, stream.numel())
        steps = listening.seam_steps(stream, p.sample_rate, [slot], controls, window, gap=fade)
        out[name] = {
            "sc_db": spectral_convergence(mag_b, audio_b, win, p.n_fft, p.hop_length),
            "sc_db_overlap": spectral_convergence(
                mag_b, audio_b, win, p.n_fft, p.hop_length, frames=overlap
            ),
            "overlap_correlation": corr,
            "fade_level_vs_around_db": level_db(stream[slot : slot + fade]) - around,
            "linear_fade_level_vs_around_db": level_db(linear) - around,
            "stream_fade_level_vs_around_db": level_db(own) - around,
            "handover_db": laws_db(a_part, b_part, corr),
            "seam_loudness_step_db": steps["loudness_step_db_seams"],
            "tile_loudness_step_db": steps["loudness_step_db_controls"],
            "seam_centroid_step_oct": steps["centroid_step_oct_seams"],
            "tile_centroid_step_oct": steps["centroid_step_oct_controls"],
            "seconds": took,
        }
    out["sc_db_a"] = spectral_convergence(mag_a, audio_a, win, p.n_fft, p.hop_length)
    return out


def real_sources(params: SpectrogramParams) -> dict[str, torch.Tensor]:
    """Continuous real audio long enough for two overlapping tiles."""
    from jam.train.composer import compose
    from jam.train.soundfont import render_events

    need = params.num_samples(WIDTH) * 2
    seconds = need / params.sample_rate + 0.2
    out = {}
    for style, seed in REAL:
        clip = compose(style, seed, min_seconds=seconds)
        audio = render_events(clip.events, seconds, params.sample_rate)
        out[f"real {style}"] = torch.from_numpy(np.asarray(audio, dtype=np.float32)).view(-1)
    loop = SeedLibrary(params, WIDTH).get(SEED).audio[0]
    out[f"seed loop {SEED}"] = torch.cat([loop, loop])
    return out


def real_pair(audio: torch.Tensor, params: SpectrogramParams, riffusion: bool):
    length = params.num_samples(WIDTH)
    a = audio[: params.num_samples(loop_frames(WIDTH, TILE_BEATS, OVERLAP_BEATS))]
    b = audio[length : 2 * length]  # on a's next bar line: the real music plays on under both
    return codec_linear(a, params, riffusion), codec_linear(b, params, riffusion)


def show(case: str, fig: dict) -> None:
    c, w = fig["cold"], fig["warm"]
    print(
        f"{case}: SC {c['sc_db']:.1f} -> {w['sc_db']:.1f} dB (overlap {c['sc_db_overlap']:.1f}"
        f" -> {w['sc_db_overlap']:.1f}, {fig['warm_frames']} of {fig['overlap_frames']} frames"
        f" warm); overlap correlation {c['overlap_correlation']:.2f} ->"
        f" {w['overlap_correlation']:.2f}; crossfade level {c['fade_level_vs_around_db']:+.2f}"
        f" -> {w['fade_level_vs_around_db']:+.2f} dB (linear fade"
        f" {c['linear_fade_level_vs_around_db']:+.2f} ->"
        f" {w['linear_fade_level_vs_around_db']:+.2f}; the stream's"
        f" {c['stream_fade_level_vs_around_db']:+.2f} ->"
        f" {w['stream_fade_level_vs_around_db']:+.2f}); against a plain handover: warm at"
        f" equal power {w['handover_db']['equal_power']:+.2f}, equal gain"
        f" {w['handover_db']['equal_gain']:+.2f}, the stream's"
        f" {w['handover_db']['coherent']:+.2f} dB (cold {c['handover_db']['equal_power']:+.2f});"
        f" seam loudness step"
        f" {c['seam_loudness_step_db']:.2f} -> {w['seam_loudness_step_db']:.2f} dB (in tiles"
        f" {c['tile_loudness_step_db']:.2f}); centroid {c['seam_centroid_step_oct']:.3f} ->"
        f" {w['seam_centroid_step_oct']:.3f} oct (in tiles {c['tile_centroid_step_oct']:.3f});"
        f" GL {c['seconds']:.2f} s",
        flush=True,
    )


def summary(figs: dict[str, dict]) -> dict:
    keys = (
        "sc_db",
        "sc_db_overlap",
        "overlap_correlation",
        "fade_level_vs_around_db",
        "linear_fade_level_vs_around_db",
        "stream_fade_level_vs_around_db",
    )
    out = {}
    for side in ("cold", "warm"):
        out[side] = {k: float(np.mean([f[side][k] for f in figs.values()])) for k in keys}
        laws = figs[next(iter(figs))][side]["handover_db"]
        out[side]["handover_db"] = {
            law: float(np.mean([f[side]["handover_db"][law] for f in figs.values()]))
            for law in laws
        }
    return out


class ColdStarts:
    """A renderer asked for every tile without its continuation: the stream before warm starts."""

    def __init__(self, queue: DeviceQueue) -> None:
        self.queue = queue

    async def __call__(self, request: TileRequest) -> RenderedTile:
        return await self.queue(dataclasses.replace(request, continuation=None))


def stream_seams(engine: Engine, prompt: str, seconds: float, cold: bool) -> list[dict]:
    """Stream ``prompt`` through the real producer and engine; per seam fully heard, the two
    levelled tiles' correlation over the fade and :func:`handover_db` as mixed and by law."""
    seed = engine.defaults.seed_image
    controls = Controls.start(prompt, engine.defaults, seed, engine.seeds.get(seed).bpm)
    state = SessionState(controls, seed=3, steps=engine.defaults.steps)
    queue = DeviceQueue(engine.render, engine.params.sample_rate)
    producer = Producer(state, ColdStarts(queue) if cold else queue, engine.seeds, STREAM)
    seams: dict[int, tuple[Placed, Transition]] = {}

    async def run() -> torch.Tensor:
        chunks: list[np.ndarray] = []
        total = 0
        try:
            async for item in producer.stream():
                if isinstance(item, TileImage) and producer.timeline is not None:
                    entries = producer.timeline.entries
                    seams.update({b.tile.id: (a.tile, b) for a, b in itertools.pairwise(entries)})
                elif not isinstance(item, TileImage):
                    chunks.append(item.audio)
                    total += item.audio.shape[-1]
                    if total >= seconds * producer.sample_rate:
                        break
        finally:
            await queue.close()
        return torch.from_numpy(np.concatenate(chunks, axis=-1))

    audio = asyncio.run(run())
    rows = []
    for before, t in seams.values():
        a, n = t.fade_start, t.fade_len
        if a + n > audio.shape[-1]:
            continue
        x, y = before.segment(a, a + n), t.tile.segment(a, a + n)
        r = correlation(x, y)
        rows.append(
            {
                "warm": t.tile.tile.warm,
                "correlation": r,
                "fade_correlation": t.correlation,
                "stream_db": handover_db(x, y, audio[:, a : a + n]),
            }
            | laws_db(x, y, r)
        )
    return rows


def stream_figures(engine: Engine, seconds: float) -> dict:
    """:func:`stream_seams` for each generated prompt, cold and warm, with the means."""
    out: dict = {"seconds": seconds, "prompts": {}}
    every: dict[str, list[dict]] = {"cold": [], "warm": []}
    for prompt in GENERATED:
        out["prompts"][prompt] = {}
        for side in ("cold", "warm"):
            torch.manual_seed(0)
            rows = stream_seams(engine, prompt, seconds, cold=side == "cold")
            out["prompts"][prompt][side] = rows
            every[side] += rows
            corr = " ".join(f"{r['correlation']:+.2f}" for r in rows)
            level = " ".join(f"{r['stream_db']:+.2f}" for r in rows)
            print(f"stream {prompt!r} {side}: correlation {corr}; level vs handover {level} dB")
    keys = ("correlation", "stream_db", "equal_power", "equal_gain", "coherent")
    out["mean"] = {
        side: {k: float(np.mean([r[k] for r in rows])) for k in keys} | {"seams": len(rows)}
        for side, rows in every.items()
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: the embedded model)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    ap.add_argument("--no-riffusion", action="store_true", help="skip Riffusion's params")
    ap.add_argument(
        "--stream-seconds", type=float, default=26.0, help="per stream of the wired path (0: skip)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_start = time.perf_counter()
    result: dict = {}

    engine = load_engine(args.model, "cpu")
    p = engine.params
    print(f"embedded model's params: {p.n_fft}-point FFT, hop {p.hop_length}, {p.sample_rate} Hz")
    figs: dict[str, dict] = {}
    for i, prompt in enumerate(GENERATED):
        figs[f"generated {prompt!r}"] = pair_figures(*generated_pair(engine, prompt, i), p, i)
        show(f"generated {prompt!r}", figs[f"generated {prompt!r}"])
    for i, (name, audio) in enumerate(real_sources(p).items()):
        figs[name] = pair_figures(*real_pair(audio, p, riffusion=False), p, 10 + i)
        show(name, figs[name])
    result["embedded"] = {"params": p.to_dict(), "pairs": figs, "mean": summary(figs)}
    print("embedded mean", json.dumps(result["embedded"]["mean"]))
    if args.stream_seconds > 0:
        result["stream"] = stream_figures(engine, args.stream_seconds)
        print("stream mean", json.dumps(result["stream"]["mean"]))

    if not args.no_riffusion:
        rp = SpectrogramParams()
        print(f"Riffusion's params: {rp.n_fft}-point FFT, hop {rp.hop_length}, {rp.sample_rate} Hz")
        figs = {}
        for i, (name, audio) in enumerate(real_sources(rp).items()):
            figs[name] = pair_figures(*real_pair(audio, rp, riffusion=True), rp, 20 + i)
            show(name, figs[name])
        result["riffusion"] = {"params": rp.to_dict(), "pairs": figs, "mean": summary(figs)}
        print("riffusion mean", json.dumps(result["riffusion"]["mean"]))
    result["wall_seconds"] = time.perf_counter() - t_start
    print(f"took {result['wall_seconds']:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
