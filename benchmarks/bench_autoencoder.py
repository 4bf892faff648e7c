"""The autoencoder's round trip, as a listener hears it: the ceiling of any UNet on top of it.

Real clips of each style, as tiles: their pixels inverted alone (the codec: the best any model
can sound) and their pixels encoded, decoded and inverted (what the autoencoder keeps). Both
through the same Griffin-Lim; figures from :func:`jam.train.listening.tonal_sharpness`, plus
the pixel L1 of the round trip and the decode time per tile.

    python benchmarks/bench_autoencoder.py --corpus /data/corpus3 --vae jam/model/default/vae
    python benchmarks/bench_autoencoder.py --corpus /data/corpus3 --work /data/v3.work  # a run

``--vae`` takes any diffusers ``AutoencoderKL`` folder, ``--work`` a `jam train` work folder
(its ``vae.ckpt`` and ``config.json``: a run in progress). Several of either compare side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from jam.sound.files import read_audio
from jam.sound.params import DEFAULT_MAX_VALUE, SpectrogramParams
from jam.sound.spectrogram import spectrogram_from_pixels
from jam.train import listening
from jam.train.config import JAM_PARAMS, TrainConfig, new_vae
from jam.train.dataset import converter as make_converter
from jam.train.dataset import tile_audio, tile_pixels
from jam.train.loop import to_model_range

FIGURES = ("flatness", "tonal_share", "tonal_share_bands")


def load_vae(path: Path):
    """A diffusers vae folder, or a `jam train` work folder's latest autoencoder checkpoint."""
    from diffusers import AutoencoderKL

    if (path / "vae.ckpt").is_file():
        fields = json.loads((path / "config.json").read_text())
        cfg = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
        vae = new_vae(cfg.vae_channels, cfg.latent_channels)
        state = torch.load(path / "vae.ckpt", weights_only=False)
        vae.load_state_dict(state["model"])
        return vae.eval(), f"{path.name} (step {state['step']})"
    return AutoencoderKL.from_pretrained(str(path)).float().eval(), str(path)


def real_tiles(corpus: Path, per_style: int, params: SpectrogramParams, width: int):
    """(style, audio tile, pixels) for the first ``per_style`` clips of each style."""
    records = [json.loads(line) for line in (corpus / "captions.jsonl").read_text().splitlines()]
    taken: dict[str, int] = defaultdict(int)
    for r in sorted(records, key=lambda r: r["file"]):
        if taken[r["style"]] >= per_style:
            continue
        audio, rate = read_audio(corpus / r["file"])
        tile = next(tile_audio(audio, rate, params, width))
        taken[r["style"]] += 1
        yield r["style"], tile, tile_pixels(tile, params)


def invert(converter, params: SpectrogramParams, px: torch.Tensor):
    mel = spectrogram_from_pixels(
        px[..., None].expand(-1, -1, 3), params.power_for_image, DEFAULT_MAX_VALUE, params.stereo
    )
    return converter.audio_from_spectrogram(mel)


@torch.inference_mode()
def measure(vaes, corpus: Path, per_style: int) -> dict:
    params, width = JAM_PARAMS, 512
    converter = make_converter(params)
    out: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    decode_s: dict[str, list[float]] = defaultdict(list)
    for style, _tile, px in real_tiles(corpus, per_style, params, width):
        torch.manual_seed(0)
        out["codec"][style].append(listening.tonal_sharpness(invert(converter, params, px), 22050))
        x = to_model_range(px[None])
        for name, vae in vaes:
            z = vae.encode(x).latent_dist.mean
            t0 = time.perf_counter()
            y = vae.decode(z).sample
            decode_s[name].append(time.perf_counter() - t0)
            back = ((y.mean(1)[0].clamp(-1, 1) + 1) * 127.5).round()
            torch.manual_seed(0)
            figures = listening.tonal_sharpness(invert(converter, params, back), 22050)
            figures["l1"] = float((back - px.float()).abs().mean() / 127.5)
            out[name][style].append(figures)
    result: dict = {}
    for name, styles in out.items():
        per = {
            s: {k: statistics.fmean(f[k] for f in fs) for k in fs[0]} for s, fs in styles.items()
        }
        result[name] = {
            "styles": per,
            "mean": {
                k: statistics.fmean(p[k] for p in per.values()) for k in next(iter(per.values()))
            },
            **({"decode_s": statistics.median(decode_s[name])} if name in decode_s else {}),
        }
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--vae", type=Path, nargs="*", default=[], help="diffusers vae folders")
    p.add_argument("--work", type=Path, nargs="*", default=[], help="`jam train` work folders")
    p.add_argument("--per-style", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    vaes = [load_vae(v) for v in [*args.vae, *args.work]]
    vaes = [(name, vae) for vae, name in vaes]
    result = measure(vaes, args.corpus, args.per_style)
    codec = result["codec"]["mean"]
    print(
        f"{'':34} {'flatness':>9} {'tonal':>7} {'per oct':>8} {'x codec':>8} {'L1':>7} {'dec s':>6}"
    )
    for name, r in result.items():
        m = r["mean"]
        ratio = m["tonal_share_bands"] / codec["tonal_share_bands"]
        print(
            f"{name[:34]:34} {m['flatness']:9.4f} {m['tonal_share']:7.3f}"
            f" {m['tonal_share_bands']:8.3f} {ratio:8.2f} {m.get('l1', 0):7.4f}"
            f" {r.get('decode_s', 0):6.3f}"
        )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
