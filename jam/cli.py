"""The ``jam`` command line: serve, work for a cluster, render, convert, make a corpus, train."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jam.sound.params import SpectrogramParams

if TYPE_CHECKING:
    import torch

    from jam.app import App


def _render(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from jam.app import RenderRequest, parse_blend
    from jam.sound.files import audio_format, write_audio

    audio_format(args.output)  # an unknown suffix fails now, not after the render
    specs = ([args.prompt] if args.prompt else []) + args.prompts
    if not specs:
        raise ValueError("give a prompt (or --prompt TEXT:WEIGHT, up to 4)")
    request = RenderRequest(
        prompts=parse_blend(specs),
        seconds=args.seconds,
        to=parse_blend([args.to]) if args.to else None,
        bpm=args.bpm,
        seed_image=args.seed_image,
        seed=args.seed,
        steps=args.steps,
        strength=args.strength,
        guidance=args.guidance,
        negative_prompt=args.negative_prompt,
    )
    app = load_app(args)

    async def render() -> torch.Tensor:
        try:
            with tqdm(total=round(args.seconds, 1), unit="s", desc="rendering") as bar:
                return await app.render(request, lambda s: bar.update(round(s - bar.n, 2)))
        finally:
            await app.close()

    audio = asyncio.run(render())
    path = write_audio(args.output, audio, app.sample_rate)
    print(f"wrote {path} ({audio.shape[-1] / app.sample_rate:.1f} s at {app.sample_rate} Hz)")
    return 0


def _params(model: str | None) -> SpectrogramParams:
    return SpectrogramParams.load(Path(model)) if model else SpectrogramParams()


def _audio_to_image(args: argparse.Namespace) -> int:
    from jam.sound.convert import audio_to_image

    image = audio_to_image(args.audio, args.image, _params(args.model), args.device or "cpu")
    print(f"wrote {args.image} ({image.width}x{image.height})")
    return 0


def _image_to_audio(args: argparse.Namespace) -> int:
    from jam.sound.convert import image_to_audio

    seconds = image_to_audio(args.image, args.audio, _params(args.model), args.device or "cpu")
    print(f"wrote {args.audio} ({seconds:.2f} s)")
    return 0


def _seeds(args: argparse.Namespace) -> int:
    from jam.model.folder import DEFAULT_MODEL_DIR, ModelDefaults
    from jam.seeds.library import SeedLibrary, default_seed_dir
    from jam.sound.files import write_wav

    folder = Path(args.model) if args.model else DEFAULT_MODEL_DIR
    params = SpectrogramParams.load(folder)
    width = ModelDefaults.load(folder).tile_width
    library = SeedLibrary(params, width, user_dir=default_seed_dir())
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
    from jam.serve.server import serve_until_signalled
    from jam.serve.settings import ServerSettings

    settings = ServerSettings(
        host=args.host,
        port=args.port,
        allow_origins=tuple(args.allow_origin),
        operator_token=args.operator_token,
        bitrate=args.bitrate,
    )
    if args.no_generate and not args.redis:
        raise ValueError("--no-generate needs --redis (an edge serves sessions others render)")
    if args.no_generate:
        from jam.app import App

        app = App.load_format(args.model)
    else:
        app = load_app(args)

    async def serve() -> None:
        if not args.redis:
            try:
                await serve_until_signalled(await app.server(settings))
            finally:
                await app.close()
            return
        store = await _store(args.redis)
        worker = None
        try:
            server = await app.cluster_server(settings, store)
            if not args.no_generate:
                worker = await app.worker(settings, store)
                worker.start()
            await serve_until_signalled(server)
        finally:
            if worker is not None:
                await worker.close()
            await store.close()
            await app.close()

    asyncio.run(serve())
    return 0


def _worker(args: argparse.Namespace) -> int:
    from jam.serve.server import until_signalled
    from jam.serve.settings import ServerSettings

    app = load_app(args)

    async def work() -> None:
        store = await _store(args.redis)
        try:
            worker = await app.worker(ServerSettings(bitrate=args.bitrate), store)
            worker.start()
            print(f"jam worker {worker.name}: rendering for {args.redis}", flush=True)
            try:
                await until_signalled()
            finally:
                await worker.close()
        finally:
            await store.close()
            await app.close()

    asyncio.run(work())
    return 0


async def _store(url: str):  # -> jam.cluster.store.Store
    """The cluster's Redis, checked once at start (later outages are retried, not fatal)."""
    from jam.cluster.store import Store, StoreUnavailable

    store = Store(url)
    try:
        await store.ping()
    except (StoreUnavailable, ValueError) as e:
        await store.close()
        raise OSError(f"cannot use Redis at {url}: {e}") from None
    return store


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
    s.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a page origin besides this server's own that may open the stream, e.g. "
        "https://jam.example.org (repeatable; '*' allows any)",
    )
    s.add_argument(
        "--bitrate",
        type=int,
        help="Opus bits per second per stream (default: 40000 for 22 kHz mono models, 64000 "
        "at 44.1 kHz; 0 streams 16-bit PCM only)",
    )
    s.add_argument(
        "--operator-token",
        help="a secret that shows per-session detail at /status?token=SECRET",
    )
    s.add_argument(
        "--redis",
        metavar="URL",
        help="keep sessions in this Redis (redis://HOST:PORT/DB), shared with every other "
        "jam serve and jam worker on it",
    )
    s.add_argument(
        "--no-generate",
        action="store_true",
        help="with --redis: an edge only (no model loaded; workers render)",
    )
    model_options(s)
    s.set_defaults(run=_serve)

    w = sub.add_parser("worker", help="render the sessions of a Redis cluster (no web server)")
    w.add_argument("--redis", metavar="URL", required=True, help="redis://HOST:PORT/DB")
    w.add_argument("--bitrate", type=int, help="Opus bits per second per stream (as for jam serve)")
    model_options(w)
    w.set_defaults(run=_worker)

    r = sub.add_parser("render", help="render a prompt (or a glide between two) to an audio file")
    r.add_argument("prompt", nargs="?", help="what to play (TEXT, or TEXT:WEIGHT in a blend)")
    r.add_argument(
        "--prompt",
        dest="prompts",
        action="append",
        default=[],
        metavar="TEXT[:WEIGHT]",
        help="a prompt of a blend (repeatable, up to 4; e.g. --prompt 'lofi:0.7' "
        "--prompt 'jazz:0.3')",
    )
    r.add_argument(
        "--bpm", type=float,
        help="tempo, 60-180 (default: the tempo of the style the prompt names, else the seed's)",
    )  # fmt: skip
    r.add_argument("--to", help="glide to this prompt over the length of the file")
    r.add_argument("--seconds", type=float, default=30.0)
    r.add_argument(
        "-o", "--output", required=True, help="out.wav, out.mp3, out.opus, out.ogg or out.flac"
    )
    model_options(r)
    r.add_argument("--seed-image", help="seed loop name or an audio file (default: the model's)")
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


def quiet_libraries() -> None:
    """Keep third-party chatter (notices, load progress bars) out of what a user reads.

    Set before diffusers/transformers are imported, which read these once; ``-v`` skips it.
    What had a cause is fixed there (``accelerate`` is a dependency, so diffusers loads
    without its low-memory notice); what this hides has none: diffusers' "Expected types for
    text_encoder" (jam's MiniLM is a BertModel by design), the MiniLM checkpoint's unused
    pooler weights (jam loads it without the pooler), and per-component load progress bars.
    """
    for name in ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY"):
        os.environ.setdefault(name, "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def load_app(args: argparse.Namespace) -> App:
    """The composition root for a command that loads a model (quietly, unless ``-v``)."""
    from jam.app import App

    if not args.verbose:  # diffusers' per-component load bar has no setting but this call
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()
    return App.load(args.model, args.device)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not {"-v", "--verbose"} & set(argv):
        quiet_libraries()
    if argv[:1] == ["corpus"]:  # these two have their own parsers
        from jam.train.corpus import corpus_main

        return corpus_main(argv[1:])
    if argv[:1] == ["train"]:
        from jam.train.main import train_main

        return train_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # "server listening on ..." repeats what `jam: open ...` says
        logging.getLogger("websockets.server").setLevel(logging.WARNING)
    try:
        return args.run(args)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"jam {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
