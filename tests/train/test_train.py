"""`jam train` end to end on a tiny synthetic corpus, and the shipped default model."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jam.model.blank import TINY_PARAMS
from jam.model.engine import load_engine
from jam.model.folder import DEFAULT_MODEL_DIR
from jam.sound.files import write_wav
from jam.train.config import Defaults, TrainConfig
from jam.train.dataset import DatasetError, caption_from_name, read_items
from jam.train.main import train_main
from jam.train.run import train

RATE = TINY_PARAMS.sample_rate
TINY = TrainConfig(
    vae_steps=10,
    unet_steps=16,
    batch=4,
    vae_batch=4,
    vae_crop=32,
    warmup=4,
    checkpoint_every=8,
    sample_every=16,
    tile_width=64,
    unet_lr=1e-3,
    unet_channels=(16, 32, 32),  # ~0.5M parameters: seconds, not minutes, on two cores
    vae_channels=(16, 16, 32, 32),
    latent_channels=4,
    adversarial_start=6,  # the discriminator takes part in the last steps
)
FAST = Defaults(steps=4, strength=0.75, guidance=3.0)


def tone(freq: float, seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """A pulsing tone with a little noise: enough structure for a few training steps."""
    t = np.arange(int(seconds * RATE)) / RATE
    pulse = (np.sin(2 * np.pi * 4 * t) > 0).astype(np.float32)
    noise = np.random.default_rng(seed).normal(0, 0.02, t.shape)
    return (0.4 * np.sin(2 * np.pi * freq * t) * pulse + noise).astype(np.float32)


def write_corpus(folder: Path, names: dict[str, float]) -> Path:
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    for i, (name, freq) in enumerate(names.items()):
        write_wav(folder / "audio" / name, tone(freq, seed=i)[None], RATE)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Four clips with a corpus-style captions.jsonl (one clip of a held-out combination)."""
    root = write_corpus(
        tmp_path_factory.mktemp("corpus"),
        {"a.wav": 220.0, "b.wav": 440.0, "c.wav": 880.0, "d.wav": 1760.0},
    )
    rows = [
        ("a.wav", "bass", "train"),
        ("b.wav", "piano", "train"),
        ("c.wav", "flute", "train"),
        ("d.wav", "whistle", "heldout_combo"),
    ]
    with (root / "captions.jsonl").open("w") as f:
        for name, style, split in rows:
            caps = [
                {"text": f"low {style} tone", "split": split},
                {"text": f"a {style} heard only in evaluation", "split": "heldout_wording"},
            ]
            f.write(json.dumps({"file": f"audio/{name}", "style": style, "captions": caps}) + "\n")
    return root


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "model"
    summary = train(corpus, out, TINY, TINY_PARAMS, FAST, progress=False, samples=True)
    return out, summary


def test_training_reduces_both_losses(trained):
    _, summary = trained
    assert summary["tiles"] == 6  # 3 train clips x 2 whole tiles; the held-out combo is skipped
    ckpt = torch.load(trained[0].with_name("model.work") / "unet.ckpt", weights_only=False)
    losses = ckpt["losses"]
    assert sum(losses[-6:]) / 6 < sum(losses[:6]) / 6
    vae = torch.load(trained[0].with_name("model.work") / "vae.ckpt", weights_only=False)
    assert sum(vae["losses"][-4:]) < sum(vae["losses"][:4])


def test_trained_folder_loads_in_the_engine_and_renders_a_tile(trained):
    out, _ = trained
    assert not (out / "text_encoder" / "model.safetensors").exists()  # referenced, not copied
    engine = load_engine(out, "cpu")
    assert engine.params == TINY_PARAMS
    assert engine.defaults.steps == FAST.steps
    tile = engine.render([engine.request("low piano tone", seed=1)])[0]
    assert tile.audio.shape == (1, engine.tile_samples)
    assert torch.isfinite(tile.audio).all() and tile.audio.abs().max() > 0
    assert tile.image.size == (64, TINY_PARAMS.num_frequencies)


def test_sample_renders_are_written_during_training(trained):
    samples = trained[0].with_name("model.work") / "samples"
    assert sorted(p.suffix for p in samples.glob("step000016_*")) == [".png"] * 3 + [".wav"] * 3


def test_cached_caption_embeddings_equal_the_engines_prompt_embeddings(trained):
    from jam.model.textenc import encode, load_text_encoder, load_tokenizer

    engine = load_engine(trained[0], "cpu")
    ours = encode(load_tokenizer(), load_text_encoder(), ["low bass tone"])
    torch.testing.assert_close(ours, engine.embed("low bass tone"))


def test_resume_continues_from_the_checkpoint_step(corpus, tmp_path):
    out = tmp_path / "model"
    first = replace(TINY, vae_steps=4, unet_steps=8, checkpoint_every=4)
    train(corpus, out, first, TINY_PARAMS, FAST, progress=False, samples=False)
    more = replace(first, unet_steps=12)
    summary = train(
        corpus, out, more, TINY_PARAMS, FAST, resume=True, progress=False, samples=False
    )
    ckpt = torch.load(out.with_name("model.work") / "unet.ckpt", weights_only=False)
    assert ckpt["step"] == 12 and len(ckpt["losses"]) == 12
    assert summary["unet_steps"] == 12
    vae = torch.load(out.with_name("model.work") / "vae.ckpt", weights_only=False)
    assert vae["step"] == 4  # the finished autoencoder phase is not redone


def test_decoder_only_fine_tuning_keeps_the_encoder_and_unet_and_trains_the_decoder(
    trained, corpus, tmp_path
):
    from safetensors.torch import load_file

    init, _ = trained
    out = tmp_path / "sharper"
    cfg = replace(TINY, vae_steps=6, unet_steps=0, decoder_only=True)
    train(corpus, out, cfg, TINY_PARAMS, FAST, init=init, progress=False, samples=False)
    before, after = (load_file(str(m / "vae" / "diffusion_pytorch_model.safetensors")) for m in
                     (init, out))  # fmt: skip
    encoder = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    decoder = [k for k in before if k.startswith(("decoder.", "post_quant_conv."))]
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    assert any(not torch.equal(before[k], after[k]) for k in decoder)
    unet = [load_file(str(m / "unet" / "diffusion_pytorch_model.safetensors")) for m in (init, out)]
    assert all(torch.equal(unet[0][k], unet[1][k]) for k in unet[0])
    assert "_name_or_path" not in json.loads((out / "vae" / "config.json").read_text())
    assert load_engine(out, "cpu").pipe.vae.config.scaling_factor == pytest.approx(
        load_engine(init, "cpu").pipe.vae.config.scaling_factor
    )


def test_weights_are_stored_in_float16_and_load_as_float32(trained):
    from safetensors.torch import load_file

    stored = load_file(str(trained[0] / "unet" / "diffusion_pytorch_model.safetensors"))
    assert {v.dtype for v in stored.values()} == {torch.float16}
    assert next(load_engine(trained[0], "cpu").pipe.unet.parameters()).dtype == torch.float32


def test_a_time_budget_sets_the_unet_steps_from_the_measured_speed(corpus, tmp_path):
    cfg = replace(TINY, vae_steps=2, unet_steps=100_000, unet_minutes=0.01, checkpoint_every=50)
    summary = train(corpus, tmp_path / "m", cfg, TINY_PARAMS, FAST, progress=False, samples=False)
    assert 41 <= summary["unet_steps"] < 1000  # 0.6 s of budget is spent by the 40 probe steps
    assert (tmp_path / "m.work" / "loss.png").is_file()
    curves = json.loads((tmp_path / "m.work" / "losses.json").read_text())
    assert len(curves["UNet epsilon MSE"]) == summary["unet_steps"]


def test_sharpness_loss_ignores_a_level_offset_and_penalises_blur():
    from jam.train.losses import difference_l1

    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    blur = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert difference_l1(x + 0.3, x) < 1e-6  # a brighter copy has the same lines
    assert difference_l1(blur, x) > 2 * F.l1_loss(blur, x)  # a blur loses them


def test_spectral_loss_sees_harmonic_lines_smeared_that_plain_l1_barely_counts():
    from jam.train.losses import spectral_l1

    rows = torch.arange(128.0)[:, None]
    comb = (torch.cos(2 * torch.pi * rows / 6) > 0.9).float().expand(128, 96)  # lines, 6 apart
    x = (comb * 2 - 1)[None]
    blur = F.avg_pool2d(x[None], (5, 1), stride=1, padding=(2, 0), count_include_pad=False)[0]
    shifted = x + 0.05
    spectral = spectral_l1(blur, x) / spectral_l1(shifted, x)
    plain = F.l1_loss(blur, x) / F.l1_loss(shifted, x)
    assert spectral > 1.5 * plain, (spectral, plain)  # the smear costs more than a level step
    with pytest.raises(ValueError):
        spectral_l1(x[:, :8, :8], x[:, :8, :8])


def test_the_discriminator_trains_with_the_autoencoder_and_resumes_from_its_checkpoint(
    corpus, tmp_path
):
    out = tmp_path / "adv"
    cfg = replace(TINY, vae_steps=8, unet_steps=0, checkpoint_every=4, adversarial_start=2)
    train(corpus, out, cfg, TINY_PARAMS, FAST, progress=False, samples=False)
    first = torch.load(out.with_name("adv.work") / "vae.ckpt", weights_only=False)
    assert first["step"] == 8 and "disc" in first
    assert all(math.isfinite(x) for x in first["losses"])  # the adaptive weight stays finite
    more = replace(cfg, vae_steps=12)
    train(corpus, out, more, TINY_PARAMS, FAST, resume=True, progress=False, samples=False)
    second = torch.load(out.with_name("adv.work") / "vae.ckpt", weights_only=False)
    assert second["step"] == 12 and second["losses"][:8] == first["losses"]
    changed = [k for k in first["disc"] if not torch.equal(first["disc"][k], second["disc"][k])]
    assert changed, "the resumed run went on training the discriminator"


def test_captions_come_from_a_csv_sidecar(tmp_path):
    write_corpus(tmp_path, {"x.wav": 300.0, "y.wav": 600.0})
    (tmp_path / "captions.csv").write_text(
        "file,caption\naudio/x.wav,warm bass\naudio/x.wav,deep bass\naudio/y.wav,bright lead\n"
    )
    items = {i.path.name: i.captions for i in read_items(tmp_path)}
    assert items == {"x.wav": ("warm bass", "deep bass"), "y.wav": ("bright lead",)}


def test_captions_come_from_a_json_sidecar(tmp_path):
    write_corpus(tmp_path, {"x.wav": 300.0})
    (tmp_path / "captions.json").write_text(json.dumps({"audio/x.wav": ["a", "b"]}))
    assert read_items(tmp_path)[0].captions == ("a", "b")


def test_captions_fall_back_to_file_names(tmp_path):
    write_corpus(tmp_path, {"deep_house-loop_02.wav": 300.0})
    assert read_items(tmp_path)[0].captions == ("deep house loop",)
    assert caption_from_name(Path("funk 120 bpm.wav")) == "funk bpm"


def test_corpus_captions_never_include_held_out_wordings(corpus):
    items = read_items(corpus)
    assert [i.path.name for i in items] == ["a.wav", "b.wav", "c.wav"]
    assert all("evaluation" not in c for i in items for c in i.captions)


def test_a_folder_without_audio_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(DatasetError, match="no audio files"):
        read_items(tmp_path)
    assert train_main([str(tmp_path), "-o", str(tmp_path / "m"), "--no-samples"]) == 2
    assert "no audio files" in capsys.readouterr().err


def test_undecodable_audio_is_a_clear_error_naming_the_file(tmp_path, capsys):
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wave file")
    assert train_main([str(tmp_path), "-o", str(tmp_path / "m"), "--no-samples"]) == 2
    assert "broken.wav" in capsys.readouterr().err


def test_bad_spectrogram_params_are_a_clear_error(tmp_path, capsys):
    write_corpus(tmp_path, {"x.wav": 300.0})
    argv = [str(tmp_path), "-o", str(tmp_path / "m"), "--params", "sample_rate=16000"]
    assert train_main(argv) == 2
    assert "Nyquist" in capsys.readouterr().err


@pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "model_index.json").is_file(), reason="no shipped model yet"
)
def test_the_shipped_default_model_loads_and_renders_a_tile():
    engine = load_engine(None, "cpu")
    tile = engine.render([engine.request("funky bass groove with brass", seed=0)])[0]
    assert tile.audio.shape == (1, engine.tile_samples)
    assert torch.isfinite(tile.audio).all() and tile.audio.abs().max() > 1e-3
