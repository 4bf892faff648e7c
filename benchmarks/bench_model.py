"""Benchmark and evaluate a jam model on this CPU, through the real Engine.

    python benchmarks/bench_model.py --corpus CORPUS [--model jam/model/default] [--out docs]

Writes ``{out}/model_eval.json`` and figures: the speed of a whole tile in jam's real-time-factor
convention (seconds of audio per second of compute; > 1 keeps up) with its per-stage split
(denoise, VAE decode, Griffin-Lim), the style classifier's accuracy on real
held-out clips, prompt adherence on held-out wordings and combinations (and its ratio to the
real-clip accuracy), spectrogram-statistics distances, an interpolation sweep between two
prompts, and a grid of prompt spectrograms. ``--rtf-only`` measures just the speed.

    OMP_NUM_THREADS=1 python benchmarks/bench_model.py --listen [--corpus CORPUS] [--threads 1]
        [--prompts "deep house with warm pads" ...] [--seconds 30] [--out FILE.json]

``--listen`` judges what a listener hears (``jam.train.listening``) on streams rendered through
the real producer (``App.render``: seams, crossfades and levelling included) at the model's
defaults, each at the tempo a session would play it (the style's its prompt names; ``--seed-tempo``:
the seed loop's): beat lock on the stream's eighth-note grid, overall and in the beat around each
seam, also as a ratio to the beat lock of real clips of the style (``--beat-clips``); the same
on the style's own grid (16ths, with the swing its corpus clips are composed with; ±20 ms) and
where in the beat the onsets fall against real clips (``style_grid``); how alike
consecutive bars' rhythms are across seams and inside tiles (a seam off the bar line rotates the
pattern); spectral flatness and tonal-peak share against real clips of the same style through
the codec (their ceiling; played at the stream's tempo, stretched as its tiles are) and through
the model's autoencoder; loudness and centroid steps at
seams against the same within tiles. Prompts: :data:`STYLE_PROMPTS` and, from the corpus,
``--heldout-per-style`` held-out wordings of each of their styles. Without ``--corpus`` a small
one is made with ``jam corpus`` (SoundFont renders) under ``--work``. Writes ``--out`` (default
``docs/model_listen.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from jam.model.engine import Engine, load_engine
from jam.model.types import Endpoint, TileRequest, blend
from jam.sound.files import read_audio
from jam.sound.params import DEFAULT_MAX_VALUE
from jam.sound.spectrogram import spectrogram_from_pixels
from jam.sound.tempo import stretch_time, stretched_width
from jam.stream.producer import StreamSettings
from jam.train import listening
from jam.train.dataset import Item, cached_tiles, tile_audio, tile_pixels
from jam.train.evaluate import (
    StyleClassifier,
    frechet_distance,
    is_test_clip,
    monotonic_fraction,
    row_stats_distance,
    train_classifier,
)
from jam.train.loop import to_model_range

GRID_PROMPTS = (
    "funky bass groove with brass",
    "dark techno with acid bass",
    "deep house with warm pads",
    "fast drum and bass",
    "lo-fi hip hop with rhodes",
    "heavy metal with distorted guitar",
    "solo classical piano",
    "string quartet",
    "ambient pads, slow and dreamy",
    "8-bit chiptune",
    "bossa nova with nylon guitar",
    "reggae with organ",
)
INTERPOLATION = ("dark techno with acid bass", "solo classical piano", "techno", "classical piano")
# The listening evaluation's style prompts (the "deep house with warm pads" and seven
# more of the grid's), each with the corpus style its real clips are compared with.
STYLE_PROMPTS = {
    "deep house with warm pads": "house",
    "dark techno with acid bass": "techno",
    "funky bass groove with brass": "funk",
    "fast drum and bass": "drum and bass",
    "lo-fi hip hop with rhodes": "lo-fi",
    "heavy metal with distorted guitar": "metal",
    "solo classical piano": "classical piano",
    "string quartet": "string quartet",
}


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def tile_speed(engine, repeats: int = 5) -> dict:
    """Seconds per stage for one tile at the model's defaults, and the speed that makes: seconds
    of audio per second of compute (x real time; > 1 keeps up), jam's one RTF convention.

    A tile adds its own beats to a stream; its audio plays on for the fade into the next one
    (``TileRequest.tail_beats``, as the producer asks), and the inversion time includes that."""
    seeds = engine.seeds.names() if hasattr(engine.seeds, "names") else ["four_on_floor"]
    tail = StreamSettings().overlap_beats
    tails = [(engine.seeds.get(seeds[0]).beats, tail)]

    def request(prompt: str, seed: int) -> TileRequest:
        r = engine.request(prompt, seed=seed, seed_image=seeds[0])
        return dataclasses.replace(r, tail_beats=tail)

    engine.render([request("funky bass groove with brass", 1)])  # warm-up: caches the prompt
    stages: dict[str, list[float]] = {"denoise": [], "decode": [], "griffin_lim": []}
    for i in range(repeats):
        r = request("funky bass groove with brass", 100 + i)
        latents, t1 = timed(engine.denoise, [r], None, None, "latent")
        images, t2 = timed(engine.decode, latents)
        _, t3 = timed(engine.audio_from_images, images, None, None, tails)
        for k, v in zip(stages, (t1, t2, t3), strict=True):
            stages[k].append(v)
    tile_s = engine.tile_samples / engine.params.sample_rate
    median = {k: statistics.median(v) for k, v in stages.items()}
    total = sum(median.values())
    _, whole = timed(engine.render, [request("lo-fi hip hop", 7)])
    return {
        "tile_seconds": tile_s,
        "stage_seconds": median,
        "tile_compute_seconds": total,
        "x_real_time": tile_s / total,
        "render_call_seconds": whole,
        "render_call_x_real_time": tile_s / whole,
        "steps": engine.defaults.steps,
        "strength": engine.defaults.strength,
        "unet_evals": int(engine.defaults.steps * engine.defaults.strength),
        "threads": torch.get_num_threads(),
    }


def corpus_items(corpus: Path) -> tuple[list[Item], list[dict]]:
    records = [json.loads(x) for x in (corpus / "captions.jsonl").read_text().splitlines() if x]
    items = [Item(corpus / r["file"], (r["captions"][0]["text"],), r["style"]) for r in records]
    return items, records


def render_pixels(engine, prompts: list[str], seeds: list[int], seed_images: list[str]):
    """Generated tiles (uint8 mel rows) for prompts, batched as a server would."""
    out = []
    requests = [
        engine.request(p, seed=s, seed_image=im)
        for p, s, im in zip(prompts, seeds, seed_images, strict=True)
    ]
    for i in range(0, len(requests), 4):
        for tile in engine.render(requests[i : i + 4]):
            out.append(torch.from_numpy(__import__("numpy").array(tile.image))[..., 0])
    return torch.stack(out)


@torch.inference_mode()
def autoencoder_roundtrip(engine, pixels: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Real tiles passed through the model's own VAE: what the model could at best produce."""
    vae, out = engine.pipe.vae, []
    for i in range(0, len(pixels), batch):
        x = to_model_range(pixels[i : i + batch]).to(engine.device, engine.dtype)
        y = vae.decode(vae.encode(x).latent_dist.mean).sample
        out.append(((y.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].cpu())
    return torch.cat(out)


def predicted_counts(clf: StyleClassifier, pixels: torch.Tensor) -> dict[str, int]:
    pred = clf.probabilities(pixels).argmax(-1).tolist()
    counts: dict[str, int] = {}
    for p in pred:
        counts[clf.styles[p]] = counts.get(clf.styles[p], 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def held_out_prompts(records: list[dict], split: str, per_style: int, rng: random.Random):
    by_style: dict[str, list[str]] = {}
    for r in records:
        for c in r["captions"]:
            if c["split"] == split:
                by_style.setdefault(r["style"], []).append(c["text"])
    chosen = []
    for style in sorted(by_style):
        texts = sorted(set(by_style[style]))
        rng.shuffle(texts)
        chosen += [(t, style) for t in texts[:per_style]]
    return chosen


def interpolation_sweep(engine, clf: StyleClassifier, n: int = 9) -> dict:
    a_prompt, b_prompt, a_style, b_style = INTERPOLATION
    a = Endpoint(blend(a_prompt), 11, engine.defaults.strength, engine.defaults.guidance)
    b = Endpoint(blend(b_prompt), 12, engine.defaults.strength, engine.defaults.guidance)
    alphas = [i / (n - 1) for i in range(n)]
    reqs = [TileRequest(a, b, x, "four_on_floor", engine.defaults.steps) for x in alphas]
    tiles = engine.render(reqs)
    import numpy as np

    pixels = torch.stack([torch.from_numpy(np.array(t.image))[..., 0] for t in tiles])
    probs = clf.probabilities(pixels)
    pa = probs[:, clf.styles.index(a_style)].tolist()
    pb = probs[:, clf.styles.index(b_style)].tolist()
    share = [y / max(x + y, 1e-9) for x, y in zip(pa, pb, strict=True)]
    return {
        "from": a_prompt,
        "to": b_prompt,
        "alphas": alphas,
        "p_from_style": pa,
        "p_to_style": pb,
        "to_share": share,
        "monotonic_fraction": monotonic_fraction(share),
        "images": [t.image for t in tiles],
    }


def save_strip(images, labels: list[str], path: Path, columns: int = 4) -> None:
    """Spectrogram images in a labelled grid (one PNG for the docs)."""
    from PIL import Image, ImageDraw

    w, h = images[0].size
    rows = -(-len(images) // columns)
    label_h = 16
    sheet = Image.new("RGB", (columns * (w + 8), rows * (h + label_h + 8)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (im, text) in enumerate(zip(images, labels, strict=True)):
        x, y = (k % columns) * (w + 8), (k // columns) * (h + label_h + 8)
        draw.text((x + 2, y + 2), text[:70], fill="black")
        sheet.paste(im, (x, y + label_h))
    sheet.save(path)


# --- what a listener hears (--listen) --------------------------------------------------------


def stream_grid(app, bpm: float | None = None) -> dict:
    """Where a stream's beats and seams fall, from the seed loop, the tempo it plays at (None:
    the loop's own) and the stream settings: tile ``k`` starts ``k`` slots in, each slot the
    tile's ``beats`` (as ``Timeline.slot_start`` places them: every tile plays on for the
    overlap), its length the stretched spectrogram's, and fades in over the overlap."""
    loop = app.seeds.get(app.defaults.seed_image)
    width = stretched_width(app.defaults.tile_width, loop.bpm, bpm or loop.bpm)
    slot = app.seeds.params.num_samples(width)
    beat = slot / loop.beats
    overlap = app.stream_settings.overlap_beats
    return {
        "seed_image": loop.name,
        "bpm": 60.0 * app.sample_rate / beat,
        "tile_beats": loop.beats,
        "overlap_beats": overlap,
        "beat_samples": beat,
        "slot_samples": slot,
        "fade_samples": round(overlap * beat),
    }


SIXTEENTH_TOLERANCE_S = 0.020  # half the eighth grid's ±40 ms, as the grid is twice as fine


def style_feel(records: list[dict], style: str) -> dict:
    """The swing a style's corpus clips are composed with (median; the unit most of them use),
    and the 16th grid it gives (:func:`listening.swung_grid`)."""
    clips = [r for r in records if r["style"] == style]
    swing = statistics.median(r.get("swing", 0.0) for r in clips) if clips else 0.0
    units = [r.get("swing_unit", 16) for r in clips] or [16]
    unit = max(set(units), key=units.count)
    return {"swing": swing, "swing_unit": unit, "grid": listening.swung_grid(swing, unit)}


def style_grid_lock(onsets, sr: int, bpm: float, feel: dict, seams=()) -> dict:
    """Beat lock on the style's own swung 16th grid (±20 ms), the swing it was scored with,
    and where in the beat the onsets fall (24 bins)."""
    lock = listening.beat_lock(
        onsets, sr, bpm, tolerance_s=SIXTEENTH_TOLERANCE_S, seams=seams, grid=feel["grid"]
    )
    phases = listening.phase_histogram(listening.onset_phases(onsets, sr, bpm))
    return lock | {
        "swing": feel["swing"],
        "swing_unit": feel["swing_unit"],
        "phases": phases.round(4).tolist(),
    }


def listen_figures(audio: torch.Tensor, sr: int, grid: dict, feel: dict | None = None) -> dict:
    """Beat lock (with ``feel``: also on the style's own grid), tonal sharpness and seam
    continuity of one stream."""
    n = audio.shape[-1]
    slot, fade, beat = grid["slot_samples"], grid["fade_samples"], grid["beat_samples"]
    seams = list(range(slot, n - fade, slot))  # where each tile after the first fades in
    near = [s + fade / 2 for s in seams]
    onsets = listening.strong_onsets(audio, sr)
    lock = listening.beat_lock(onsets, sr, grid["bpm"], origin=0, seams=near, around_beats=1.0)
    window = round(beat)
    controls = listening.control_positions(seams, beat, fade, window, n)
    own = {"style_grid": style_grid_lock(onsets, sr, grid["bpm"], feel, near)} if feel else {}
    return own | {
        "beat_lock": lock,
        "bars": listening.bar_similarity(audio, sr, grid["bpm"], origin=0, seams=seams),
        "tempo_heard_bpm": listening.dominant_tempo(audio, sr),
        "tonal": listening.tonal_sharpness(audio, sr),
        "seams": listening.seam_steps(audio, sr, seams, controls, window, gap=fade),
    }


def listen_corpus(args) -> Path:
    """The corpus given, or a small one made here with ``jam corpus`` (about 10 s)."""
    if args.corpus is not None:
        return args.corpus
    from jam.train.corpus import build_corpus

    folder = args.work / "listen_corpus"
    if not (folder / "captions.jsonl").is_file():
        build_corpus(folder, 110, 5.2, 22050, seed=16, music21_fraction=0.04, progress=False)
    return folder


def real_beat_lock(
    records: list[dict], root: Path, style: str, grid: dict, n: int, feel: dict
) -> dict:
    """Beat lock of up to ``n`` real clips of a style (their first tile, as rendered) on the
    same grid as the streams: the share the music itself reaches, so a style whose real
    clips play 16ths or swing is not asked for more on a straight eighth grid than it has;
    the same on the style's own swung 16th grid, and where in the beat their onsets fall.
    Also how alike their two bars are (``bar_similarity``): a floor for what a groove's bars
    reach, as the first bar starts from silence (its downbeat has nothing to rise from)."""
    clips = [r for r in records if r["style"] == style][:n]
    if not clips:
        return {"clips": 0, "onsets": 0, "on_grid": None, "bar_similarity": None}
    bpm = grid["bpm"]
    onsets, bars = [], []
    offset = 0.0  # the clips' onsets laid end to end, each clip a whole number of beats
    for r in clips:
        audio, rate = read_audio(root / r["file"])
        length = round(rate * grid["tile_beats"] * 60.0 / bpm)
        tile = audio[..., :length]
        onsets.append(listening.strong_onsets(tile, rate) + offset)
        offset += grid["tile_beats"] * 60.0 * rate / bpm
        if (alike := listening.bar_similarity(tile, rate, bpm)["within"]) is not None:
            bars.append(alike)
    every = np.concatenate(onsets)
    lock = listening.beat_lock(every, rate, bpm)
    return {
        "clips": len(clips),
        "onsets": lock["onsets"],
        "on_grid": lock["on_grid"],
        "offset_s": lock["offset_s"],
        "bar_similarity": statistics.fmean(bars) if bars else None,
        "style_grid": style_grid_lock(every, rate, bpm, feel),
    }


@torch.inference_mode()
def real_clip_figures(
    engine: Engine, records: list[dict], root: Path, style: str, n: int, bpm: float | None = None
):
    """Tonal sharpness of real clips of a style: as rendered, through the codec (pixels, then
    Griffin-Lim, as every tile is heard: the ceiling) and through the model's autoencoder;
    with ``bpm``, both played at that tempo as a stream's tiles are (stretched in time).
    Also the beat lock on eighths of the codec and autoencoder versions, clips end to end:
    what a stream's tiles could reach if the model drew real clips (``beat``)."""
    p = engine.params
    vae = engine.pipe.vae
    loop = engine.seeds.get(engine.defaults.seed_image)
    tempo = bpm or loop.bpm
    width = stretched_width(engine.defaults.tile_width, loop.bpm, tempo)
    clips = [r for r in records if r["style"] == style][:n]
    out: dict[str, list[dict]] = {"raw": [], "codec": [], "autoencoder": []}
    tile_length = loop.beats * 60.0 * p.sample_rate / tempo
    onsets: dict[str, list[np.ndarray]] = {"codec": [], "autoencoder": []}
    for k, r in enumerate(clips):
        audio, rate = read_audio(root / r["file"])
        tile = next(tile_audio(audio, rate, p, engine.defaults.tile_width))
        px = tile_pixels(tile, p)
        mel = spectrogram_from_pixels(
            px[..., None].expand(-1, -1, 3), p.power_for_image, DEFAULT_MAX_VALUE, p.stereo
        )
        codec = engine.converter.audio_from_spectrogram(stretch_time(mel, width))
        x = to_model_range(px[None]).to(engine.device, engine.dtype)
        latents = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
        ae = engine.audio_from_images(engine.decode(latents), [width])[0]
        for key, a in (("raw", tile), ("codec", codec), ("autoencoder", ae)):
            out[key].append(listening.tonal_sharpness(a.cpu(), p.sample_rate))
        for key, a in (("codec", codec), ("autoencoder", ae)):
            found = listening.strong_onsets(a[..., : round(tile_length)].cpu(), p.sample_rate)
            onsets[key].append(found + k * tile_length)
    locks = {
        key: listening.beat_lock(np.concatenate(v) if v else np.zeros(0), p.sample_rate, tempo)
        for key, v in onsets.items()
    }
    keys = ("flatness", "tonal_share", "tonal_share_bands")
    return {
        "clips": len(clips),
        "bpm": tempo,
        "files": [r["file"] for r in clips],
        **{k: {m: statistics.fmean(v[m] for v in vs) for m in keys} for k, vs in out.items()},
        "beat": {k: {m: v[m] for m in ("onsets", "on_grid", "offset_s")} for k, v in locks.items()},
    }


def ratios(gen: dict, real: dict) -> dict:
    return {k: gen[k] / real[k] if real[k] else None for k in real if k in gen}


async def render_streams(
    app, prompts: list[tuple[str, str, str, int]], seconds: float, bpm: float | None = None
):
    """Each (prompt, style, kind, seed)'s stream through ``App.render`` (the producer a session
    uses) at ``bpm`` (None: the tempo the app picks for the prompt, as for a new session)."""
    from jam.app import RenderRequest

    streams = []
    try:
        for text, style, kind, seed in prompts:
            t0 = time.perf_counter()
            request = RenderRequest(blend(text), seconds=seconds, seed=seed, bpm=bpm)
            audio = await app.render(request)
            took = time.perf_counter() - t0
            print(f"  rendered {seconds:g} s of {text!r} (seed {seed}) in {took:.1f} s", flush=True)
            streams.append((text, style, kind, seed, audio, took))
    finally:
        await app.close()
    return streams


SPREAD_FIGURES = {  # name: (path into a stream's figures, scale)
    "eighths": ("beat_lock", "on_grid", 1.0),
    "eighths_near_seams": ("beat_lock", "on_grid_near_seams", 1.0),
    "own_grid": ("style_grid", "on_grid", 1.0),
    "late_ms": ("beat_lock", "offset_s", 1000.0),
    "tonal_x_real": ("tonal_vs_real_codec", "tonal_share", 1.0),
    "tonal_per_octave_x_real": ("tonal_vs_real_codec", "tonal_share_bands", 1.0),
    "flatness_x_real": ("tonal_vs_real_codec", "flatness", 1.0),
    "seam_db": ("seams", "loudness_step_db_seams", 1.0),
}


def spread(results: list[dict]) -> dict:
    """Each prompt's figures over its seeds: median, lowest and highest. One 30 s stream is
    one draw of the music; a figure that swings between seeds is not a property of the model."""
    by_prompt: dict[str, list[dict]] = {}
    for r in results:
        by_prompt.setdefault(r["prompt"], []).append(r)
    out = {}
    for prompt, rs in by_prompt.items():
        row: dict = {"style": rs[0]["style"], "seeds": [r["seed"] for r in rs]}
        for name, (a, b, scale) in SPREAD_FIGURES.items():
            v = [scale * x for r in rs if (x := (r.get(a) or {}).get(b)) is not None]
            row[name] = (
                {"median": statistics.median(v), "min": min(v), "max": max(v)} if v else None
            )
        out[prompt] = row
    return out


def listen_main(args) -> None:
    from jam.app import App

    t_start = time.perf_counter()
    torch.manual_seed(0)
    app = App.load(args.model, "cpu")
    engine = getattr(app.queue.render_batch, "__self__", None) if app.queue else None
    if not isinstance(engine, Engine):
        engine = load_engine(args.model, "cpu")
    sr = app.sample_rate
    grid = stream_grid(app)
    styles = dict(STYLE_PROMPTS)
    chosen = [(t, s, "style prompt") for t, s in styles.items() if not args.prompts]
    chosen += [
        (t, styles.get(t, "?"), "style prompt" if t in styles else "given")
        for t in args.prompts or ()
    ]
    root = listen_corpus(args)
    records = [json.loads(x) for x in (root / "captions.jsonl").read_text().splitlines() if x]
    wanted = {s for _, s, _ in chosen}
    if args.heldout_per_style:
        held = held_out_prompts(
            records, "heldout_wording", args.heldout_per_style, random.Random(0)
        )
        chosen += [(t, s, "heldout_wording") for t, s in held if s in wanted]
    # Prompt i at seeds i, i + 1000, ...: the first seed is the one a single-seed run uses.
    runs = [
        (t, s, k, i + 1000 * j) for j in range(args.seeds) for i, (t, s, k) in enumerate(chosen)
    ]
    print(f"{len(runs)} streams of {args.seconds:g} s on {grid}", flush=True)
    fixed = app.seeds.get(app.defaults.seed_image).bpm if args.seed_tempo else None
    streams = asyncio.run(render_streams(app, runs, args.seconds, fixed))
    if args.audio_dir is not None:  # to listen to, or look at
        from jam.sound.files import write_wav

        args.audio_dir.mkdir(parents=True, exist_ok=True)
        for k, (_, style, kind, seed, audio, _) in enumerate(streams):
            name = f"{k:02d}_{style}_{kind}_seed{seed}".replace(" ", "_")
            write_wav(args.audio_dir / f"{name}.wav", audio.numpy(), sr)
    real = {s: real_clip_figures(engine, records, root, s, args.real_clips) for s in sorted(wanted)}
    feels = {s: style_feel(records, s) for s in real}  # each style's swung 16th grid
    for s in real:
        real[s]["beat_lock"] = real_beat_lock(records, root, s, grid, args.beat_clips, feels[s])
    results = []
    stretched: dict[tuple[str, float], dict] = {}
    for text, style, kind, seed, audio, took in streams:
        tempo = fixed or app.defaults.tempo_for(text)
        played = stream_grid(app, tempo)  # the real clips stay on the seed's (their own) grid
        fig = {"grid": played} | listen_figures(audio, sr, played, feels.get(style))
        ref = real.get(style)
        if ref and ref["clips"]:
            fig["tonal_vs_real_codec_seed_tempo"] = ratios(fig["tonal"], ref["codec"])
            at = ref
            if tempo is not None and tempo != ref["bpm"]:  # the real clips at the stream's tempo
                key = (style, tempo)
                if key not in stretched:
                    stretched[key] = real_clip_figures(
                        engine, records, root, style, args.real_clips, tempo
                    )
                at = stretched[key]
            fig["real_at_bpm"] = at["bpm"]
            fig["tonal_vs_real_codec"] = ratios(fig["tonal"], at["codec"])
            fig["tonal_vs_autoencoder"] = ratios(fig["tonal"], at["autoencoder"])
            fig["beat_lock_vs_codec"] = {  # the real clips through the codec at this tempo
                k: fig["beat_lock"]["on_grid"] / v["on_grid"]
                if v["on_grid"] and fig["beat_lock"]["on_grid"] is not None else None
                for k, v in at["beat"].items()
            }  # fmt: skip
        if ref and ref["beat_lock"]["on_grid"]:
            fig["beat_lock_vs_real"] = {
                k: fig["beat_lock"][k] / ref["beat_lock"]["on_grid"]
                if fig["beat_lock"][k] is not None else None
                for k in ("on_grid", "on_grid_near_seams")
            }  # fmt: skip
            own = ref["beat_lock"]["style_grid"]
            fig["style_grid"]["vs_real"] = (
                fig["style_grid"]["on_grid"] / own["on_grid"]
                if own["on_grid"] and fig["style_grid"]["on_grid"] is not None else None
            )  # fmt: skip
            fig["style_grid"]["phases_like_real"] = listening.histogram_overlap(
                np.asarray(fig["style_grid"]["phases"]), np.asarray(own["phases"])
            )
        results.append(
            {"prompt": text, "style": style, "kind": kind, "seed": seed, "render_seconds": took}
            | fig
        )
    out = {
        "model": args.model or "jam/model/default",
        "defaults": {
            "steps": engine.defaults.steps,
            "strength": engine.defaults.strength,
            "guidance": engine.defaults.guidance,
        },
        "seconds": args.seconds,
        "grid": grid,
        "threads": torch.get_num_threads(),
        "corpus": str(root),
        "real_clips": real,
        "real_clips_at_tempo": {f"{s} at {b:g} bpm": v for (s, b), v in stretched.items()},
        "streams": results,
        "per_prompt": spread(results),
        "wall_seconds": time.perf_counter() - t_start,
    }
    path = args.out or Path("docs/model_listen.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print_listen_table(out)
    print(f"wrote {path} ({out['wall_seconds']:.0f} s)")


def _f(x, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def print_listen_table(out: dict) -> None:
    g = out["grid"]
    print(
        f"grid {g['bpm']:.2f} bpm ({g['seed_image']}), tile {g['tile_beats']} beats, overlap "
        f"{g['overlap_beats']}; chance on the eighth grid ±40 ms:"
        f" {_f(out['streams'][0]['beat_lock']['chance'] if out['streams'] else None)}"
    )
    head = (
        "prompt", "style", "kind", "seed", "onsets", "lock", "seam lock", "lock/real",
        "lock/codec", "late ms", "16th lock",
        "16th/real", "phases~real", "bars seam",
        "bars tile", "bpm", "tempo heard", "flat",
        "flat/real", "tonal", "tonal/real", "bands", "bands/real", "seam dB", "tile dB",
        "seam oct", "tile oct",
    )  # fmt: skip
    print(" | ".join(head))
    for r in out["streams"]:
        lock, t, sm = r["beat_lock"], r["tonal"], r["seams"]
        own = r.get("style_grid") or {}
        vs = r.get("tonal_vs_real_codec") or {}
        row = (
            r["prompt"][:44], r["style"], r["kind"], str(r["seed"]), str(lock["onsets"]),
            _f(lock["on_grid"]), _f(lock["on_grid_near_seams"]),
            _f((r.get("beat_lock_vs_real") or {}).get("on_grid")),
            _f((r.get("beat_lock_vs_codec") or {}).get("codec")),
            _f(1000 * lock["offset_s"] if lock.get("offset_s") is not None else None, ".1f"),
            _f(own.get("on_grid")), _f(own.get("vs_real")), _f(own.get("phases_like_real")),
            _f(r["bars"]["across"]), _f(r["bars"]["within"]), _f(r["grid"]["bpm"], ".0f"),
            _f(r["tempo_heard_bpm"], ".0f"),
            _f(t["flatness"], ".4f"), _f(vs.get("flatness")), _f(t["tonal_share"]),
            _f(vs.get("tonal_share")), _f(t["tonal_share_bands"]),
            _f(vs.get("tonal_share_bands")), _f(sm["loudness_step_db_seams"]),
            _f(sm["loudness_step_db_controls"]), _f(sm["centroid_step_oct_seams"]),
            _f(sm["centroid_step_oct_controls"]),
        )  # fmt: skip
        print(" | ".join(row))
    print("real clips (mean over clips): style | kind | flatness | tonal | tonal bands")
    for style, ref in out["real_clips"].items():
        b = ref.get("beat_lock") or {}
        print(
            f"{style} | beat lock of {b.get('clips')} real clips | {_f(b.get('on_grid'))}"
            f" | on its swung 16th grid {_f((b.get('style_grid') or {}).get('on_grid'))}"
            f" | bars alike {_f(b.get('bar_similarity'))}"
            f" | late ms {_f(1000 * b['offset_s'] if b.get('offset_s') is not None else None)}"
        )
        for kind in ("raw", "codec", "autoencoder"):
            v = ref[kind]
            print(
                f"{style} | {kind} | {v['flatness']:.4f} | {v['tonal_share']:.2f} |"
                f" {v['tonal_share_bands']:.2f}"
            )
    for key, ref in out["real_clips_at_tempo"].items():
        for kind, v in ref["beat"].items():
            late = 1000 * v["offset_s"] if v["offset_s"] is not None else None
            print(f"{key} | {kind} | eighths {_f(v['on_grid'])} | late ms {_f(late, '.1f')}")
    print("per prompt over seeds: figure median [lowest, highest]")
    for prompt, row in out["per_prompt"].items():
        cells = [
            f"{name} {v['median']:.2f} [{v['min']:.2f}, {v['max']:.2f}]"
            for name in SPREAD_FIGURES
            if (v := row[name]) is not None
        ]
        print(f"{prompt[:44]} ({row['style']}, {len(row['seeds'])} seeds) | " + " | ".join(cells))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model folder (default: jam's embedded model)")
    p.add_argument("--corpus", type=Path, help="a `jam corpus` folder (not needed for --rtf-only)")
    p.add_argument(
        "--out", type=Path, default=None,
        help="folder of model_eval.json (default docs); with --listen, the JSON file"
        " (default docs/model_listen.json)",
    )  # fmt: skip
    p.add_argument("--work", type=Path, default=Path("/tmp/jam_eval"))
    p.add_argument("--per-style", type=int, default=3, help="held-out prompts per style")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ae-clips", type=int, default=600, help="clips for the autoencoder judge")
    p.add_argument("--rtf-only", action="store_true", help="measure only the speed")
    p.add_argument("--listen", action="store_true", help="judge 30 s streams as a listener would")
    p.add_argument("--prompts", nargs="+", help="--listen: these prompts instead of the styles'")
    p.add_argument("--seconds", type=float, default=30.0, help="--listen: stream length")
    p.add_argument(
        "--heldout-per-style", type=int, default=1,
        help="--listen: held-out corpus wordings per style prompt's style (0: none)",
    )  # fmt: skip
    p.add_argument(
        "--real-clips", type=int, default=8, help="--listen: real clips per style (tonal reference)"
    )
    p.add_argument(
        "--beat-clips", type=int, default=24,
        help="--listen: real clips per style whose beat lock is the reference",
    )  # fmt: skip
    p.add_argument("--audio-dir", type=Path, help="--listen: also write each stream as a WAV")
    p.add_argument(
        "--seeds", type=int, default=1, help="--listen: streams per prompt, each at its own seed"
    )
    p.add_argument(
        "--seed-tempo", action="store_true",
        help="--listen: every stream at the seed loop's tempo (default: the style's, as a session)",
    )  # fmt: skip
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.listen:
        listen_main(args)
        return
    args.out = args.out or Path("docs")
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    engine = load_engine(args.model, "cpu")
    speed = tile_speed(engine)
    result: dict = {"speed": speed}
    print(json.dumps(speed, indent=2))
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in speed["stage_seconds"].items())
    print(
        f"speed {speed['x_real_time']:.1f}x real time: {speed['tile_compute_seconds']:.2f} s for"
        f" a {speed['tile_seconds']:.2f} s tile ({stages}); one render call"
        f" {speed['render_call_x_real_time']:.1f}x"
    )
    if args.rtf_only:
        return

    items, records = corpus_items(args.corpus)
    tiles = cached_tiles(items, engine.params, engine.defaults.tile_width, args.work / "real.pt")
    styles = [items[int(k)].style for k in tiles.item_index]
    splits = [records[int(k)]["split"] for k in tiles.item_index]
    names = [items[int(k)].path.name for k in tiles.item_index]
    train_idx = [
        i for i, (n, s) in enumerate(zip(names, splits, strict=True))
        if s == "train" and not is_test_clip(n)
    ]  # fmt: skip
    test_idx = [i for i, n in enumerate(names) if splits[i] == "train" and is_test_clip(n)]
    combo_idx = [i for i, s in enumerate(splits) if s == "heldout_combo"]
    clf_path = args.work / "style_classifier.pt"
    if clf_path.is_file():
        clf = StyleClassifier.load(clf_path)
    else:
        clf = train_classifier(tiles.pixels[train_idx], [styles[i] for i in train_idx])
        clf.save(clf_path)
    real_acc = clf.accuracy(tiles.pixels[test_idx], [styles[i] for i in test_idx])
    combo_acc = clf.accuracy(tiles.pixels[combo_idx], [styles[i] for i in combo_idx])
    result["classifier"] = {
        "styles": len(clf.styles),
        "train_clips": len(train_idx),
        "real_heldout_clips": len(test_idx),
        "real_heldout_accuracy": real_acc,
        "real_heldout_combo_clips": len(combo_idx),
        "real_heldout_combo_accuracy": combo_acc,
        "chance": 1 / len(clf.styles),
    }
    print(json.dumps(result["classifier"], indent=2))

    # A second judge trained on real clips seen through the model's autoencoder, so that the
    # autoencoder's blur (a known limit of a 1M-parameter VAE) is not counted against the
    # UNet's prompt following. Subsets keep this to a few minutes on two cores.
    sub_train = train_idx[:: max(len(train_idx) // args.ae_clips, 1)]
    sub_test = test_idx[:: max(len(test_idx) // (args.ae_clips // 3), 1)]
    ae_path = args.work / "style_classifier_ae.pt"
    if ae_path.is_file():
        clf_ae = StyleClassifier.load(ae_path)
    else:
        rt = autoencoder_roundtrip(engine, tiles.pixels[sub_train])
        clf_ae = train_classifier(rt, [styles[i] for i in sub_train])
        clf_ae.save(ae_path)
    rt_test = autoencoder_roundtrip(engine, tiles.pixels[sub_test])
    ae_acc = clf_ae.accuracy(rt_test, [styles[i] for i in sub_test])
    result["classifier_ae"] = {
        "train_clips": len(sub_train),
        "real_heldout_clips": len(sub_test),
        "real_heldout_accuracy_through_autoencoder": ae_acc,
        "raw_classifier_on_autoencoded_real": clf.accuracy(rt_test, [styles[i] for i in sub_test]),
    }
    print(json.dumps(result["classifier_ae"], indent=2))

    rng = random.Random(0)
    seed_names = list(engine.seeds.names()) if hasattr(engine.seeds, "names") else ["four_on_floor"]
    generated = {}
    for split, ref_acc in (("heldout_wording", real_acc), ("heldout_combo", combo_acc)):
        prompts = held_out_prompts(records, split, args.per_style, rng)
        texts = [t for t, _ in prompts]
        t0 = time.perf_counter()
        px = render_pixels(
            engine,
            texts,
            list(range(len(texts))),
            [seed_names[i % len(seed_names)] for i in range(len(texts))],
        )
        acc = clf.accuracy(px, [s for _, s in prompts])
        acc_ae = clf_ae.accuracy(px, [s for _, s in prompts])
        generated[split] = px
        result[split] = {
            "prompts": len(texts),
            "adherence": acc,
            "ratio_to_real": acc / ref_acc,
            "adherence_ae_judge": acc_ae,
            "ratio_to_real_ae_judge": acc_ae / ae_acc if ae_acc else None,
            "raw_judge_predictions": predicted_counts(clf, px),
            "seconds_per_tile": (time.perf_counter() - t0) / len(texts),
            "examples": texts[:6],
        }
        print(split, json.dumps(result[split], indent=2))

    gen = torch.cat(list(generated.values()))
    real_test = tiles.pixels[test_idx]
    real_train = tiles.pixels[train_idx][: len(real_test)]
    result["distances_ae"] = {
        "row_stats_generated_vs_autoencoded_real": row_stats_distance(gen, rt_test),
        "fd_generated_vs_autoencoded_real": frechet_distance(
            clf_ae.embeddings(gen), clf_ae.embeddings(rt_test)
        ),
    }
    seeds_px = torch.stack(
        [
            torch.from_numpy(__import__("numpy").array(engine.seeds.get(n).image))[..., 0]
            for n in seed_names
        ]
    )
    result["distances"] = {
        "row_stats_generated_vs_real": row_stats_distance(gen, real_test),
        "row_stats_real_vs_real": row_stats_distance(real_train, real_test),
        "row_stats_seeds_vs_real": row_stats_distance(seeds_px, real_test),
        "fd_generated_vs_real": frechet_distance(clf.embeddings(gen), clf.embeddings(real_test)),
        "fd_real_vs_real": frechet_distance(clf.embeddings(real_train), clf.embeddings(real_test)),
    }
    print(json.dumps(result["distances"], indent=2))

    sweep = interpolation_sweep(engine, clf_ae)
    save_strip(
        sweep.pop("images"),
        [
            f"alpha {a:.2f}: piano share {s:.2f}"
            for a, s in zip(sweep["alphas"], sweep["to_share"], strict=True)
        ],
        args.out / "model_interpolation.png",
        columns=3,
    )
    result["interpolation"] = sweep
    print(json.dumps(sweep, indent=2))

    grid = engine.render([engine.request(t, seed=3) for t in GRID_PROMPTS])
    save_strip([t.image for t in grid], list(GRID_PROMPTS), args.out / "model_grid.png", columns=3)
    real_examples = [
        tiles.pixels[test_idx[i]] for i in range(0, len(test_idx), max(len(test_idx) // 6, 1))
    ][:6]
    from PIL import Image

    save_strip(
        [Image.fromarray(x.numpy()).convert("RGB") for x in real_examples],
        [
            f"real: {styles[test_idx[i]]}"
            for i in range(0, len(test_idx), max(len(test_idx) // 6, 1))
        ][:6],
        args.out / "model_real_examples.png",
        columns=3,
    )
    (args.out / "model_eval.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
