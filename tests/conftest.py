"""Shared fixtures: a tiny random-weight diffusers pipeline, saved and loaded like a real one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jam.model.blank import TINY_PARAMS, build_pipeline
from jam.model.folder import ModelDefaults

torch.set_num_threads(2)

TINY_DEFAULTS = ModelDefaults(tile_width=512, steps=8, strength=0.75, guidance=7.0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A diffusers SD folder: tiny UNet, VAE, CLIP text model, real CLIP tokenizer."""
    return build_pipeline(
        tmp_path_factory.mktemp("tiny-model"), "tiny", TINY_PARAMS, TINY_DEFAULTS, seed=0
    )


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir: Path):
    from jam.model.engine import load_engine

    return load_engine(str(tiny_model_dir), "cpu")
