"""scripts/gpu_train.sh, the one-command GPU training run, dry-run on the CPU for a few steps
with the packages the GPU machine lacks made unimportable (tests/gpu_absent/sitecustomize.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from jam.model import textenc
from jam.model.engine import load_engine
from jam.train.captions import caption_vocabulary
from jam.train.soundfont import DEFAULT_SOUNDFONT

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not Path(DEFAULT_SOUNDFONT).is_file(), reason="no SoundFont")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("gpu")
    textenc.write_pack(tmp / "minilm", caption_vocabulary())
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "gpu_absent"), str(ROOT)]),
        JAM_NO_WHEELS="1",
        JAM_TEXT_ENCODER_PACK=str(tmp / "minilm"),
        DEVICE="cpu",
        CLIPS="12",
        WORKERS="2",
        VAE_STEPS="3",
        VAE_BATCH="2",
        BATCH="2",
        MINUTES="0",
        STEPS="2",
        SOUNDFONT=DEFAULT_SOUNDFONT,
        WORK=str(tmp / "work"),
        OUT=str(tmp / "out"),
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
    )
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_train.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return tmp / "out", proc


def test_gpu_script_runs_without_music21_websockets_or_the_minilm_package(dry_run):
    out, proc = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "train exited 0" in (out / "train.log").read_text()


def test_gpu_script_output_fits_what_comes_back_and_holds_a_loadable_model(dry_run, tmp_path):
    out, _ = dry_run
    files = sorted(p for p in out.iterdir())
    assert 0 < len(files) <= 8 and all(p.stat().st_size <= 16 * 2**20 for p in files)
    assert {"loss.png", "samples.png", "summary.json"} <= {p.name for p in files}
    parts = [p for p in files if p.name.startswith("model.tar.part-")]
    with (tmp_path / "model.tar").open("wb") as whole:
        for part in parts:
            whole.write(part.read_bytes())
    with tarfile.open(tmp_path / "model.tar") as tar:
        tar.extractall(tmp_path, filter="data")
    engine = load_engine(tmp_path / "model", "cpu")
    tile = engine.render([engine.request("funky bass groove with brass", seed=0)])[0]
    assert torch.isfinite(tile.audio).all()
