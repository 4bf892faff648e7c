"""`jam train`: an audio folder with captions -> a jam model folder the engine loads as it is.

The command line only: flags -> :class:`~jam.train.config.TrainConfig`, then
:func:`jam.train.run.train`; bad input is reported in one line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from jam.train.config import TrainConfig, parse_params
from jam.train.dataset import DatasetError
from jam.train.run import train


def train_main(argv: list[str] | None = None) -> int:
    """`jam train DATA_DIR -o MODEL_DIR`: train (or fine-tune with --init) a jam model."""
    p = argparse.ArgumentParser(prog="jam train", description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="folder of audio (+ captions.jsonl/.csv/.json)")
    p.add_argument("-o", "--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--init", type=Path, help="diffusers folder to fine-tune (e.g. SD-1.x)")
    p.add_argument("--params", help="spectrogram params: JSON file, model folder or k=v,k=v")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--steps", type=int, default=TrainConfig.unet_steps, help="UNet steps")
    p.add_argument(
        "--vae-steps",
        type=int,
        help=f"autoencoder steps (default {TrainConfig.vae_steps}; 0 with --init)",
    )
    p.add_argument(
        "--decoder-only",
        action="store_true",
        help="with --init: train only the autoencoder's decoder (latents and UNet stay valid)",
    )
    p.add_argument("--vae-lr", type=float, default=TrainConfig.vae_lr)
    p.add_argument(
        "--sharpness",
        type=float,
        default=TrainConfig.sharpness,
        help="autoencoder: weight of an L1 loss on mel/time differences (keeps harmonics sharp)",
    )
    p.add_argument(
        "--spectral",
        type=float,
        default=TrainConfig.spectral,
        help="autoencoder: weight of a multi-resolution spectral loss along mel and time",
    )
    p.add_argument(
        "--adversarial",
        type=float,
        default=TrainConfig.adversarial,
        help="autoencoder: weight of a patch discriminator's loss (0: none)",
    )
    p.add_argument(
        "--adversarial-start",
        type=int,
        default=TrainConfig.adversarial_start,
        help="autoencoder step from which the discriminator takes part",
    )
    p.add_argument("--batch", type=int, default=TrainConfig.batch)
    p.add_argument("--vae-batch", type=int, default=TrainConfig.vae_batch)
    p.add_argument(
        "--minutes",
        type=float,
        default=0.0,
        help="UNet phase time budget: --steps becomes what fits, measured after 40 steps",
    )
    p.add_argument("--lr", type=float, default=TrainConfig.unet_lr)
    p.add_argument("--checkpoint-every", type=int, default=TrainConfig.checkpoint_every)
    p.add_argument("--sample-every", type=int, default=TrainConfig.sample_every)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--no-samples", action="store_true", help="skip sample renders")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("jam train: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    cfg = TrainConfig(
        unet_steps=args.steps,
        vae_steps=args.vae_steps
        if args.vae_steps is not None
        else (0 if args.init else TrainConfig.vae_steps),
        batch=args.batch,
        vae_batch=args.vae_batch,
        unet_minutes=args.minutes,
        unet_lr=args.lr,
        checkpoint_every=args.checkpoint_every,
        sample_every=args.sample_every,
        train_vae=args.init is None or bool(args.vae_steps),
        decoder_only=args.decoder_only,
        sharpness=args.sharpness,
        spectral=args.spectral,
        adversarial=args.adversarial,
        adversarial_start=args.adversarial_start,
        vae_lr=args.vae_lr,
    )
    if args.decoder_only and (args.init is None or not args.vae_steps):
        print("jam train: --decoder-only needs --init and --vae-steps", file=sys.stderr)
        return 2
    try:
        summary = train(
            args.data,
            args.out,
            cfg,
            parse_params(args.params),
            init=args.init,
            device=args.device,
            resume=args.resume,
            samples=not args.no_samples,
        )
    except (DatasetError, ValueError) as e:
        print(f"jam train: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
