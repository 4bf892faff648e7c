"""The ``jam`` command line: serve, render, convert, make a corpus, train."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys
from pathlib import Path

import torch


def _render(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from jam.audio_io import write_audio
    from jam.device_queue import DeviceQueue
    from jam.diffusion import load_engine, validate_prompt
    from jam.producer import Chunk, Controls, Producer, SessionState

    prompt = validate_prompt(args.prompt)
    target = validate_prompt(args.to) if args.to else None
    engine = load_engine(args.model, args.device, seed_dir=default_seed_dir())
    if args.seed_image not in engine.seeds.names():
        engine.seeds.add_file(args.seed_image)  # a path: raises a clear error if unusable
        args.seed_image = Path(args.seed_image).stem
    d = engine.defaults
    controls = Controls(
        prompt=prompt,
        seed_image=args.seed_image,
        strength=args.strength if args.strength is not None else d.strength,
        guidance=args.guidance if args.guidance is not None else d.guidance,
        negative_prompt=args.negative_prompt,
    )
    state = SessionState(controls, seed=args.seed, steps=args.steps or d.steps)
    sr = engine.params.sample_rate
    total = round(args.seconds * sr)
    tile_seconds = engine.tile_samples / sr
    glide = max(1, math.ceil(args.seconds / tile_seconds) - 1)
    queue = DeviceQueue(engine.render)
    producer = Producer(state, queue, engine.seeds, sr, glide_tiles=glide)

    async def collect() -> torch.Tensor:
        parts: list[torch.Tensor] = []
        got = 0
        with tqdm(total=round(args.seconds, 1), unit="s", desc="rendering") as bar:
            async for item in producer.stream():
                if not isinstance(item, Chunk):
                    if target and item.tile == 0:
                        state.set_prompt(target)  # glide from PROMPT to --to over the file
                    continue
                parts.append(torch.from_numpy(item.audio))
                got += item.audio.shape[-1]
                bar.update(round(min(got, total) / sr - bar.n, 2))
                if got >= total:
                    break
        await queue.close()
        return torch.cat(parts, dim=-1)[:, :total]

    audio = asyncio.run(collect())
    path = write_audio(args.output, audio, sr)
    print(f"wrote {path} ({audio.shape[-1] / sr:.1f} s at {sr} Hz)")
    return 0


def _audio_to_image(args: argparse.Namespace) -> int:
    from torchaudio.functional import resample

    from jam.audio_io import read_audio
    from jam.params import SpectrogramParams
    from jam.spectrogram import converter, image_from_spectrogram

    params = SpectrogramParams.load(args.model) if args.model else SpectrogramParams()
    audio, sr = read_audio(args.audio)
    if audio.shape[0] != params.channels:
        audio = audio.mean(0, keepdim=True) if params.channels == 1 else audio[:1].expand(2, -1)
    if sr != params.sample_rate:
        audio = resample(audio, sr, params.sample_rate)
    spec = converter(params, args.device or "cpu").spectrogram_from_audio(audio)
    image = image_from_spectrogram(spec, params)
    image.save(args.image, exif=image.getexif(), format="PNG")
    print(f"wrote {args.image} ({image.width}x{image.height})")
    return 0


def _image_to_audio(args: argparse.Namespace) -> int:
    from PIL import Image

    from jam.audio_io import write_audio
    from jam.params import SpectrogramParams
    from jam.spectrogram import converter, params_from_image, spectrogram_from_image

    try:
        image = Image.open(args.image)
        image.load()
    except OSError as e:
        raise ValueError(f"could not read {args.image} as an image: {e}") from e
    default = SpectrogramParams.load(args.model) if args.model else SpectrogramParams()
    params = params_from_image(image, default)
    device = args.device or "cpu"
    audio = converter(params, device).audio_from_spectrogram(
        spectrogram_from_image(image, params, device)
    )
    write_audio(args.audio, audio.cpu(), params.sample_rate)
    print(f"wrote {args.audio} ({audio.shape[-1] / params.sample_rate:.2f} s)")
    return 0


def default_seed_dir() -> Path:
    """Where user seeds persist: $JAM_SEED_DIR, else ~/.local/share/jam/seeds."""
    env = os.environ.get("JAM_SEED_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "jam" / "seeds"


def _seeds(args: argparse.Namespace) -> int:
    from jam.audio_io import write_wav
    from jam.diffusion import DEFAULT_MODEL_DIR, ModelDefaults
    from jam.params import SpectrogramParams
    from jam.seeds import SeedLibrary

    folder = Path(args.model) if args.model else DEFAULT_MODEL_DIR
    params = SpectrogramParams.load(folder)
    library = SeedLibrary(
        params, ModelDefaults.load(folder).tile_width, user_dir=default_seed_dir()
    )
    if args.add:
        seed = library.add_file(args.add, name=args.name, beats=args.beats)
        print(f"added seed {seed.name!r} ({seed.beats} beats at {seed.bpm:.1f} bpm)")
    for name in library.names():
        seed = library.get(name)
        print(f"{name:16s} {seed.beats:2d} beats {seed.bpm:6.1f} bpm  {seed.description}")
        if args.export:
            out = Path(args.export)
            out.mkdir(parents=True, exist_ok=True)
            write_wav(out / f"{name}.wav", seed.audio, params.sample_rate)
            seed.image.save(out / f"{name}.png", exif=seed.image.getexif())
    return 0


def _serve(args: argparse.Namespace) -> int:
    from jam.server import main_serve

    return main_serve(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jam", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    # listed for --help; `jam corpus ...` and `jam train ...` are parsed by their own modules
    sub.add_parser("corpus", help="make a training corpus (jam corpus --help)", add_help=False)
    sub.add_parser("train", help="train or fine-tune a model (jam train --help)", add_help=False)

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--model",
            help="diffusers folder, .safetensors/.ckpt file or hub id "
            "(default: jam's embedded model)",
        )
        p.add_argument("--device", help="cuda, cuda:1, cpu, ... (default: CUDA when present)")

    s = sub.add_parser("serve", help="run the jam server and web page")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    model_options(s)
    s.set_defaults(run=_serve)

    r = sub.add_parser("render", help="render a prompt (or a glide between two) to an audio file")
    r.add_argument("prompt")
    r.add_argument("--to", help="glide to this prompt over the length of the file")
    r.add_argument("--seconds", type=float, default=30.0)
    r.add_argument("-o", "--output", required=True, help="out.wav, out.mp3, out.ogg or out.flac")
    model_options(r)
    r.add_argument("--seed-image", default="four_on_floor", help="seed loop name or an audio file")
    r.add_argument("--seed", type=int, default=0, help="noise seed")
    r.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    r.add_argument("--strength", type=float, help="denoising strength 0..1 (default: the model's)")
    r.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    r.add_argument("--negative-prompt", default="")
    r.set_defaults(run=_render)

    e = sub.add_parser("seeds", help="list the seed loops (tempo, beats); add or export them")
    e.add_argument("--model", help="model folder whose spectrogram params to use")
    e.add_argument("--add", metavar="AUDIO", help="add a user seed from an audio file")
    e.add_argument("--name", help="name for --add (default: the file name)")
    e.add_argument("--beats", type=int, default=8, help="whole beats the added audio holds")
    e.add_argument("--export", metavar="DIR", help="write each seed as WAV + spectrogram PNG")
    e.set_defaults(run=_seeds)

    a = sub.add_parser("audio-to-image", help="audio file -> spectrogram PNG (Riffusion format)")
    a.add_argument("audio")
    a.add_argument("image")
    a.add_argument("--model", help="use this model folder's spectrogram params")
    a.add_argument("--device")
    a.set_defaults(run=_audio_to_image)

    i = sub.add_parser("image-to-audio", help="spectrogram PNG -> audio file (Griffin-Lim)")
    i.add_argument("image")
    i.add_argument("audio")
    i.add_argument("--model", help="params when the image carries none in its EXIF")
    i.add_argument("--device")
    i.set_defaults(run=_image_to_audio)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["corpus"]:  # these two have their own parsers
        from jam.corpus import corpus_main

        return corpus_main(argv[1:])
    if argv[:1] == ["train"]:
        from jam.train import train_main

        return train_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.run(args)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"jam {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
