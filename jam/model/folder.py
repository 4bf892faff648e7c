"""A model folder: where a checkpoint comes from, what it recommends, and loading it once.

A model is any Stable-Diffusion-1.x checkpoint: a diffusers folder, a single
``.safetensors``/``.ckpt`` file, or a hub id (the local cache first). A folder may carry
``spectrogram_params.json`` (its spectrogram format; Riffusion's when absent) and ``jam.json``
(:class:`ModelDefaults`, the one home of the render defaults every layer starts from).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from jam.sound.params import SpectrogramParams

log = logging.getLogger(__name__)

DEFAULTS_FILENAME = "jam.json"
DEFAULT_MODEL_DIR = Path(__file__).parent / "default"


class ModelError(RuntimeError):
    """A model that cannot be found or loaded; the message says why and what to do."""


@dataclass(frozen=True)
class ModelDefaults:
    """Render settings a model recommends (``jam.json``); Riffusion's when absent.

    Sessions, ``jam render`` and the benchmarks all start from these; nothing else repeats them.
    """

    tile_width: int = 512
    steps: int = 50
    strength: float = 0.75
    guidance: float = 7.0
    seed_image: str = "four_on_floor"
    # The tempo its training music had, per style phrase ("deep house": 123). A model that draws
    # every style at one image tempo (jam's) plays a style at its own: a session whose first
    # prompt names one starts there (jam.sound.tempo stretches the tiles). Empty: no table.
    tempos: tuple[tuple[str, float], ...] = ()

    @classmethod
    def load(cls, folder: Path) -> ModelDefaults:
        path = folder / DEFAULTS_FILENAME
        if not path.is_file():
            return cls()
        values = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        if unknown := set(values) - known:
            raise ModelError(f"{path}: unknown settings {sorted(unknown)}; known: {sorted(known)}")
        if "tempos" in values:
            values["tempos"] = _tempos(values["tempos"], path)
        return cls(**values)

    def save(self, folder: Path) -> None:
        values = asdict(self) | {"tempos": dict(self.tempos)}
        if not self.tempos:
            del values["tempos"]
        (folder / DEFAULTS_FILENAME).write_text(json.dumps(values, indent=2) + "\n")

    def tempo_for(self, prompt: str) -> float | None:
        """The tempo of the style ``prompt`` names: the longest phrase of :attr:`tempos` in it,
        as whole words ("lo-fi hip hop" before "hip hop"); None when it names none."""
        words = _words(prompt)
        found = [(len(p), bpm) for p, bpm in self.tempos if (w := _words(p)) and w in words]
        return max(found)[1] if found else None


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def _tempos(values: object, path: Path) -> tuple[tuple[str, float], ...]:
    """``{"phrase": bpm}`` from jam.json, checked: phrases, and tempi the stream can play."""
    from jam.sound.tempo import BPM_RANGE

    lo, hi = BPM_RANGE
    if not isinstance(values, dict):
        raise ModelError(f"{path}: tempos must map style phrases to bpm, got {values!r}")
    for phrase, bpm in values.items():
        if not _words(phrase).strip() or not isinstance(bpm, int | float) or not lo <= bpm <= hi:
            raise ModelError(f"{path}: tempo {phrase!r}: {bpm!r} must be in {lo:g}-{hi:g} bpm")
    return tuple(sorted((str(p), float(b)) for p, b in values.items()))


@dataclass(frozen=True)
class Model:
    """A loaded pipeline with the spectrogram format and defaults of the folder it came from."""

    pipe: object  # a diffusers StableDiffusionPipeline, already on its device
    params: SpectrogramParams
    defaults: ModelDefaults
    name: str


def pick_device(device: str | None = None) -> torch.device:
    """The device named, else CUDA when present, else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _load_pipeline(model: str, dtype: torch.dtype):
    from diffusers import StableDiffusionPipeline

    kwargs = dict(torch_dtype=dtype, safety_checker=None, requires_safety_checker=False)
    path = Path(model).expanduser()
    if path.is_file():
        if path.suffix not in (".safetensors", ".ckpt"):
            raise ModelError(f"{path}: a single-file checkpoint must be .safetensors or .ckpt")
        try:
            return StableDiffusionPipeline.from_single_file(str(path), **kwargs)
        except Exception as e:  # diffusers raises many kinds here; say what and why
            raise ModelError(
                f"could not load single-file checkpoint {path}: {e}. Loading a single file needs "
                "the SD-1.x configs from the hub or its cache; offline, convert it once to a "
                "diffusers folder where you have network, or pass a diffusers folder."
            ) from e
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelError(f"{path} is not a diffusers model folder (no model_index.json)")
        try:  # a text encoder referenced by the folder (jam's MiniLM) loads from its package
            from jam.model.textenc import referenced_components

            return StableDiffusionPipeline.from_pretrained(
                str(path), **referenced_components(path, dtype), **kwargs
            )
        except Exception as e:
            raise ModelError(f"could not load the model in {path}: {e}") from e
    if model.count("/") != 1 or model.startswith(("/", ".", "~")):
        raise ModelError(
            f"model {model!r} is neither a local folder/file nor a hub id like 'org/name'"
        )
    try:  # the local cache first: instant, and works offline
        return StableDiffusionPipeline.from_pretrained(model, local_files_only=True, **kwargs)
    except Exception:
        pass
    try:
        return StableDiffusionPipeline.from_pretrained(model, **kwargs)
    except Exception as e:
        raise ModelError(
            f"model {model!r} is not in the local Hugging Face cache and could not be fetched "
            f"from the hub ({type(e).__name__}: {e}). Download it where there is network "
            "(huggingface-cli download ...) or pass --model a local folder."
        ) from e


def open_model(model: str | Path | None = None, device: str | None = None) -> Model:
    """Load a model by folder, single file or hub id (None: jam's embedded default model).

    The device is chosen here, once: fp16 on CUDA, fp32 on the CPU.
    """
    if model is None:
        if not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
            raise ModelError(
                "no model given and the embedded default model is missing from "
                f"{DEFAULT_MODEL_DIR}; pass --model (a diffusers folder, a .safetensors file, "
                "or a hub id such as riffusion/riffusion-model-v1)"
            )
        model = DEFAULT_MODEL_DIR
    dev = pick_device(device)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    t0 = time.perf_counter()
    pipe = _load_pipeline(str(model), dtype)
    folder = Path(str(model)).expanduser()
    params = SpectrogramParams.load(folder) if folder.is_dir() else SpectrogramParams()
    defaults = ModelDefaults.load(folder) if folder.is_dir() else ModelDefaults()
    log.info("loaded %s on %s (%s) in %.1f s", model, dev, dtype, time.perf_counter() - t0)
    return Model(pipe.to(dev), params, defaults, str(model))
