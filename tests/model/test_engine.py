"""The diffusion engine on a tiny random-weight pipeline loaded through the user's code path."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from jam.model.engine import load_engine
from jam.model.folder import Model, ModelError
from jam.model.interpolate import seeded_noise, slerp
from jam.model.types import (
    MAX_PROMPT_CHARS,
    Continuation,
    Endpoint,
    TileRequest,
    WeightedPrompt,
    blend,
)
from jam.sound.mixing import correlation
from jam.sound.tempo import loop_frames, stretched_width
from jam.stream.controls import next_request


def pair(engine, alpha: float, seed_image: str = "four_on_floor") -> TileRequest:
    a = Endpoint(blend("warm analog synth pads"), seed=1, strength=0.75, guidance=7.0)
    b = Endpoint(blend("fast techno with acid bass"), seed=2, strength=0.75, guidance=7.0)
    return TileRequest(a, b, alpha, seed_image, engine.defaults.steps)


def single(engine, endpoint: Endpoint) -> TileRequest:
    return TileRequest(endpoint, endpoint, 0.0, "four_on_floor", engine.defaults.steps)


def test_engine_loads_a_diffusers_folder_with_its_own_params_and_defaults(
    tiny_engine, tiny_model_dir
):
    stored = json.loads((tiny_model_dir / "spectrogram_params.json").read_text())
    assert tiny_engine.params.sample_rate == stored["sample_rate"]
    assert tiny_engine.defaults.steps == 8
    assert tiny_engine.pipe.safety_checker is None
    assert tiny_engine.dtype == torch.float32  # fp32 on the CPU


def test_alpha_zero_and_one_reproduce_the_single_endpoint_renders(tiny_engine):
    r0 = pair(tiny_engine, 0.0)
    r1 = pair(tiny_engine, 1.0)
    torch.testing.assert_close(
        tiny_engine.denoise([r0]), tiny_engine.denoise([single(tiny_engine, r0.start)])
    )
    torch.testing.assert_close(
        tiny_engine.denoise([r1]), tiny_engine.denoise([single(tiny_engine, r1.end)])
    )


def test_midpoint_differs_from_both_endpoints(tiny_engine):
    mid = tiny_engine.denoise([pair(tiny_engine, 0.5)])
    for alpha in (0.0, 1.0):
        assert (mid - tiny_engine.denoise([pair(tiny_engine, alpha)])).abs().max() > 1e-3


def test_render_is_deterministic_for_given_seeds_and_changes_with_the_seed(tiny_engine):
    r = pair(tiny_engine, 0.3)
    torch.testing.assert_close(tiny_engine.denoise([r]), tiny_engine.denoise([r]), rtol=0, atol=0)
    other = dataclasses.replace(r, start=dataclasses.replace(r.start, seed=99))
    assert (tiny_engine.denoise([r]) - tiny_engine.denoise([other])).abs().max() > 1e-3


def test_a_batch_renders_the_same_tiles_as_one_at_a_time(tiny_engine):
    reqs = [pair(tiny_engine, 0.0), pair(tiny_engine, 0.6), pair(tiny_engine, 1.0, "drone")]
    batch = tiny_engine.denoise(reqs)
    for i, r in enumerate(reqs):
        torch.testing.assert_close(batch[i : i + 1], tiny_engine.denoise([r]), rtol=1e-4, atol=1e-4)


def test_render_returns_a_full_tile_of_audio_and_its_spectrogram(tiny_engine):
    tiles = tiny_engine.render(
        [pair(tiny_engine, 0.5), single(tiny_engine, Endpoint(blend("x"), 5, 0.5, 7.0))]
    )
    for tile in tiles:
        assert tile.audio.shape == (1, tiny_engine.tile_samples)
        assert tile.audio.abs().max() > 0
        assert tile.image.size == (
            tiny_engine.defaults.tile_width,
            tiny_engine.params.num_frequencies,
        )
    assert tiles[1].request.start.strength == 0.5  # two groups, each in its own call


def test_slerp_keeps_noise_norm_and_hits_its_endpoints():
    a = seeded_noise(1, (4, 8, 64), torch.device("cpu"), torch.float32)
    b = seeded_noise(2, (4, 8, 64), torch.device("cpu"), torch.float32)
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    assert abs(mid.norm() / a.norm() - 1) < 0.02  # lerp would shrink it by ~0.71
    torch.testing.assert_close(slerp(a, a * 1.0, 0.5), a)  # parallel: lerp fallback, no NaN


def test_mask_of_all_keep_returns_the_seed_images_reconstruction(tiny_engine):
    r = pair(tiny_engine, 0.5)
    keep = torch.zeros(1, 1, *tiny_engine.latent_shape[1:])
    out = tiny_engine.denoise([r], mask=keep)
    init = tiny_engine.init_latents("four_on_floor")
    decoded = tiny_engine.pipe.vae.decode(init / tiny_engine.pipe.vae.config.scaling_factor).sample
    torch.testing.assert_close(out, (decoded / 2 + 0.5).clamp(0, 1), rtol=1e-4, atol=1e-4)
    half = keep.clone()
    half[..., half.shape[-1] // 2 :] = 1  # regenerate the right half only
    # compared in latent space: the VAE decoder's attention mixes the whole image
    out_half = tiny_engine.denoise([r], mask=half, output_type="latent")
    w = init.shape[-1]
    torch.testing.assert_close(out_half[..., : w // 2], init[..., : w // 2])
    assert (out_half[..., w // 2 :] - init[..., w // 2 :]).abs().mean() > 1e-2


def test_seed_image_of_the_wrong_size_is_a_clear_error(tiny_engine):
    from PIL import Image

    with pytest.raises(ValueError, match="this model needs 512x64"):
        tiny_engine.init_latents(Image.new("RGB", (300, 64)))


@pytest.mark.parametrize(
    "prompt, message",
    [("   ", "empty"), ("x" * (MAX_PROMPT_CHARS + 1), f"limit is {MAX_PROMPT_CHARS}")],
)
def test_empty_or_overlong_prompt_is_refused(tiny_engine, prompt, message):
    with pytest.raises(ValueError, match=message):
        tiny_engine.render(
            [single(tiny_engine, Endpoint((WeightedPrompt(prompt, 1.0),), 0, 0.75, 7.0))]
        )


def test_unknown_model_names_say_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="not a diffusers model folder"):
        load_engine(str(tmp_path), "cpu")
    bad = tmp_path / "weights.bin"
    bad.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"\.safetensors or \.ckpt"):
        load_engine(str(bad), "cpu")
    with pytest.raises(ModelError, match="neither a local folder"):
        load_engine("no-such-model", "cpu")
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        load_engine("nobody-here/no-such-model", "cpu")


def test_single_file_checkpoint_that_cannot_be_resolved_offline_says_how_to_fix_it(
    tmp_path, monkeypatch
):
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "model.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)}, str(path))
    with pytest.raises(
        ModelError, match=r"could not load single-file checkpoint.*diffusers folder"
    ):
        load_engine(str(path), "cpu")


def test_a_second_engine_on_the_same_pipeline_keeps_the_img2img_schedule(tiny_engine):
    from jam.model.engine import Engine

    r = pair(tiny_engine, 0.5)
    tiny_engine.denoise([r])
    steps = len(tiny_engine.pipe.scheduler.timesteps)
    model = Model(tiny_engine.pipe, tiny_engine.params, tiny_engine.defaults, "tiny")
    again = Engine(model, tiny_engine.seeds)
    again.denoise([r])
    # PNDM (PLMS) runs its first timestep twice, as in diffusers' own img2img
    assert len(again.pipe.scheduler.timesteps) == steps == int(r.steps * r.start.strength) + 1


@pytest.mark.parametrize(
    "name", ["PNDMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler"]
)
def test_img2img_matches_diffusers_own_img2img_pipeline_for_each_scheduler(tiny_engine, name):
    """The engine's part-way schedule equals StableDiffusionImg2ImgPipeline's on the same noise."""
    import diffusers
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    from jam.model.engine import Engine

    base = getattr(diffusers, name)
    components = dict(tiny_engine.pipe.components)
    components["scheduler"] = base.from_config(tiny_engine.pipe.scheduler.config)
    pipe = StableDiffusionPipeline(**components)
    engine = Engine(Model(pipe, tiny_engine.params, tiny_engine.defaults, name), tiny_engine.seeds)
    end = Endpoint(blend("deep house with a rolling bassline"), seed=11, strength=0.6, guidance=5.0)
    request = TileRequest(end, end, 0.0, "four_on_floor", 10)
    ours = engine.denoise([request], output_type="latent")
    assert torch.isfinite(ours).all()

    components["scheduler"] = base.from_config(tiny_engine.pipe.scheduler.config)
    img2img = StableDiffusionImg2ImgPipeline(**components)
    img2img.set_progress_bar_config(disable=True)
    theirs = img2img(
        image=engine.init_latents("four_on_floor"),  # 4 channels: taken as latents
        strength=0.6,
        num_inference_steps=10,
        guidance_scale=5.0,
        prompt_embeds=engine.embed(end.prompt),
        negative_prompt_embeds=engine.embed(""),
        generator=torch.Generator().manual_seed(11),  # draws the same noise as seed 11
        output_type="latent",
    ).images
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_the_lowest_strength_the_page_allows_still_runs_one_denoising_step(tiny_engine):
    """0.05 x 15 steps rounds to no step at all with DPM-Solver (the embedded model's
    scheduler): the engine runs one instead of raising."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    from jam.model.engine import Engine

    components = dict(tiny_engine.pipe.components)
    components["scheduler"] = DPMSolverMultistepScheduler.from_config(
        tiny_engine.pipe.scheduler.config
    )
    pipe = StableDiffusionPipeline(**components)
    engine = Engine(Model(pipe, tiny_engine.params, tiny_engine.defaults, "dpm"), tiny_engine.seeds)
    tile = engine.render([engine.request("quiet pads", seed=3, strength=0.05, steps=15)])[0]
    assert len(engine.pipe.scheduler.timesteps) == 1
    assert torch.isfinite(tile.audio).all() and tile.audio.abs().max() > 0


def test_a_tempo_stretches_the_tile_and_a_blend_mixes_the_prompts_embeddings(tiny_engine):
    e = tiny_engine
    native = e.seeds.get(e.defaults.seed_image).bpm
    plain = e.request("warm pads", seed=3)
    fast = dataclasses.replace(plain, bpm=native * 1.5)
    tiles = e.render([plain, fast])
    width = stretched_width(e.defaults.tile_width, native, native * 1.5)
    assert tiles[0].audio.shape[-1] == e.tile_samples
    assert tiles[1].audio.shape[-1] == e.params.num_samples(width) < e.tile_samples
    half = blend(("warm pads", 0.5), ("hard drums", 0.5))
    mixed = e.embed_blend(half)
    expected = 0.5 * e.embed("warm pads") + 0.5 * e.embed("hard drums")
    torch.testing.assert_close(mixed, expected)
    torch.testing.assert_close(e.embed_blend(blend("warm pads")), e.embed("warm pads"))


@pytest.mark.parametrize("speed", [None, 1.25], ids=["seed tempo", "stretched"])
def test_a_tile_with_a_tail_plays_its_last_bar_again_past_its_image(tiny_engine, speed):
    e = tiny_engine
    loop = e.seeds.get(e.defaults.seed_image)
    bpm = None if speed is None else loop.bpm * speed
    plain = e.request("warm pads", seed=3, bpm=bpm)
    tailed = dataclasses.replace(plain, tail_beats=1)
    assert tailed != plain  # it sounds different: part of what the tile is
    torch.manual_seed(0)
    a, b = e.render([plain, tailed])
    width = e.width_for(plain)
    assert a.tail_samples == 0 and a.audio.shape[-1] == e.params.num_samples(width)
    assert b.audio.shape[-1] == e.params.num_samples(loop_frames(width, loop.beats, 1))
    assert b.tail_samples == b.audio.shape[-1] - a.audio.shape[-1]
    assert abs(b.tail_samples - a.audio.shape[-1] / loop.beats) <= e.params.hop_length
    # what it plays there is the last bar's first beat: its spectrogram, not the first bar's
    mel = e.converter.spectrogram_from_audio
    hop, beat = e.params.hop_length, b.tail_samples
    bar = round(a.audio.shape[-1] * (loop.beats - 4) / loop.beats)

    def db(x: torch.Tensor) -> torch.Tensor:
        return 10 * torch.log10(mel(x).clamp(min=1e-6))

    tail = db(b.audio[:, -beat + 4 * hop : -4 * hop])
    again = db(a.audio[:, bar + 4 * hop : bar + beat - 4 * hop])
    first = db(a.audio[:, 4 * hop : beat - 4 * hop])
    n = min(x.shape[-1] for x in (tail, again, first))
    near, far = ((tail[..., :n] - x[..., :n]).abs().mean() for x in (again, first))
    assert near < 0.7 * far, (float(near), float(far))


@pytest.mark.parametrize("speed", [None, 1.25], ids=["seed tempo", "stretched"])
def test_a_continued_tile_is_inverted_in_phase_with_the_tile_it_fades_in_under(tiny_engine, speed):
    """A tile and its stream successor, the successor rendered warm and cold in one batch (at
    another tempo too: the carried phase follows the stretched frames). Warm, the two correlate
    over their overlap; cold, they do not. The random model's tiles share little spectrum
    there, so the correlation stays small; the embedded model's reach 0.1-0.5
    (``benchmarks/bench_phase.py``)."""
    e = tiny_engine
    bpm = None if speed is None else e.seeds.get(e.defaults.seed_image).bpm * speed
    first = e.render([e.request("warm analog synth pads", seed=4, bpm=bpm)])[0]
    n = first.audio.shape[-1]
    beats = e.seeds.get(e.defaults.seed_image).beats
    slot, fade = round((beats - 1) * n / beats), round(n / beats)
    carried = Continuation.after(first.audio, slot, e.params.n_fft)
    follow = next_request(first.request, first.request.steps, 0.25, carried)
    assert carried.offset == e.params.n_fft // 2
    assert torch.equal(carried.audio, first.audio[:, slot - carried.offset :])
    torch.manual_seed(0)
    warm, cold = e.render([follow, dataclasses.replace(follow, continuation=None)])
    assert warm.warm and not cold.warm
    assert warm.audio.shape == cold.audio.shape == first.audio.shape
    under = first.audio[:, slot : slot + fade]
    r_warm = correlation(under, warm.audio[:, :fade])
    r_cold = correlation(under, cold.audio[:, :fade])
    assert r_warm > 0.08 and r_warm > r_cold + 0.05, (r_warm, r_cold)
    # after the overlap the warm start is forgotten: the tile is as loud as the cold one
    level = [float(t.audio[:, fade:].square().mean()) for t in (warm, cold)]
    assert level[0] == pytest.approx(level[1], rel=0.2)


def test_a_fresh_tile_batched_with_a_continued_one_is_inverted_as_in_a_cold_batch(tiny_engine):
    e = tiny_engine
    first = e.render([e.request("fast techno with acid bass", seed=1)])[0]
    carried = Continuation.after(first.audio, first.audio.shape[-1] // 2, e.params.n_fft)
    fresh = e.request("solo piano", seed=2)
    continued = dataclasses.replace(fresh, continuation=carried)
    assert continued == fresh and hash(continued) == hash(fresh)  # not part of the request
    torch.manual_seed(3)
    mixed = e.render([continued, fresh])
    torch.manual_seed(3)
    cold = e.render([fresh, fresh])
    assert [t.warm for t in mixed] == [True, False]
    torch.testing.assert_close(mixed[1].audio, cold[1].audio, rtol=0, atol=1e-4)
    assert (mixed[0].audio - cold[0].audio).abs().max() > 1e-2
