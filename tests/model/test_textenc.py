"""The text encoder pack carried to the GPU machine encodes captions as MiniLM itself does."""

from __future__ import annotations

import random

import pytest
import torch

from jam.model import textenc
from jam.train.captions import caption_vocabulary, captions
from jam.train.composer import STYLES, compose
from jam.train.corpus import clip_meta


def corpus_captions(n: int) -> list[str]:
    """Captions made by the corpus's own wording code for varied clip settings."""
    rng = random.Random(3)
    texts: list[str] = []
    for i, style in enumerate(sorted(STYLES)[:n]):
        texts += [c["text"] for c in captions(clip_meta(compose(style, i)), rng)]
    return texts


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pack")
    info = textenc.write_pack(folder, caption_vocabulary())
    return folder, info


def test_pack_is_under_a_third_of_minilm_and_keeps_only_caption_tokens(pack):
    _, info = pack
    assert info["bytes"] < 30e6
    assert 300 < info["tokens"] < 2000


def test_packed_encoder_reproduces_minilm_on_corpus_captions(pack, monkeypatch):
    texts = corpus_captions(12)
    tok = textenc.load_tokenizer()
    ref = textenc.encode(tok, textenc.load_text_encoder(), texts)
    monkeypatch.setenv(textenc.PACK_ENV, str(pack[0]))
    got = textenc.encode(textenc.load_tokenizer(), textenc.load_text_encoder(), texts)
    assert ((got - ref).norm() / ref.norm()).item() < 5e-3  # float16 weights, nothing else


def test_packed_encoder_embeds_unpacked_words_as_unknown(pack, monkeypatch):
    monkeypatch.setenv(textenc.PACK_ENV, str(pack[0]))
    tok, enc = textenc.load_tokenizer(), textenc.load_text_encoder()
    outside, unknown = textenc.encode(tok, enc, ["bicycle groove", "[UNK] groove"])
    assert len(tok("bicycle")["input_ids"]) == 3  # one word piece, outside the captions
    torch.testing.assert_close(outside, unknown)
