"""Which text encoder generalises to wordings never trained on? A quick, training-free proxy.

For each held-out wording in a corpus, find the nearest *train* caption (cosine similarity)
and check that it describes a clip of the same style. Frozen all-MiniLM-L6-v2 (mean-pooled
hidden states) is compared with a bag of CLIP BPE tokens (TF-IDF): the most a small text model
trained here from the CLIP tokenizer can know about a word is whether it saw that token in
training, so token overlap approximates its reach. Usage:
    python benchmarks/bench_text_encoder.py CORPUS_DIR [--clips 600]
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections import Counter
from pathlib import Path

import torch

from jam.train.corpus import read_captions


def split_captions(records: list[dict]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    train, held = [], []
    for r in records:
        for c in r["captions"]:
            (train if c["split"] == "train" else held).append((c["text"], r["style"]))
    return train, held


def nearest_style_accuracy(train_vecs, held_vecs, train_styles, held_styles) -> float:
    sims = held_vecs @ train_vecs.T
    best = sims.argmax(dim=1).tolist()
    return sum(train_styles[b] == s for b, s in zip(best, held_styles, strict=True)) / len(best)


def minilm_vectors(texts: list[str]) -> torch.Tensor:
    from jam.model.textenc import load_text_encoder, load_tokenizer

    tok, enc = load_tokenizer(), load_text_encoder()
    out = []
    for i in range(0, len(texts), 128):
        t = tok(texts[i : i + 128], padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            h = enc(**t)[0]
        m = t.attention_mask.unsqueeze(-1).float()
        out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1))
    return torch.cat(out)


def clip_bag_vectors(texts: list[str], fit: list[str]) -> torch.Tensor:
    import tempfile

    from jam.model.clip_tokenizer import write_clip_tokenizer

    tok = write_clip_tokenizer(tempfile.mkdtemp())
    fit_ids = [set(tok(t).input_ids[1:-1]) for t in fit]
    df = Counter(i for ids in fit_ids for i in ids)
    vocab = {i: k for k, i in enumerate(df)}
    idf = torch.tensor([math.log(len(fit) / df[i]) for i in vocab])
    rows = torch.zeros(len(texts), len(vocab))
    for r, t in enumerate(texts):
        for i in tok(t).input_ids[1:-1]:
            if i in vocab:  # a token never seen in training carries nothing
                rows[r, vocab[i]] = 1.0
    return torch.nn.functional.normalize(rows * idf, dim=-1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("corpus", type=Path)
    p.add_argument("--clips", type=int, default=600)
    args = p.parse_args()
    torch.set_num_threads(1)
    records = read_captions(args.corpus / "captions.jsonl")
    random.Random(0).shuffle(records)
    train, held = split_captions(records[: args.clips])
    texts_t, styles_t = zip(*train, strict=True)
    texts_h, styles_h = zip(*held, strict=True)
    t0 = time.perf_counter()
    mt, mh = minilm_vectors(list(texts_t)), minilm_vectors(list(texts_h))
    ms = (time.perf_counter() - t0) / (len(texts_t) + len(texts_h)) * 1000
    ct = clip_bag_vectors(list(texts_t), list(texts_t))
    ch = clip_bag_vectors(list(texts_h), list(texts_t))
    print(f"{len(held)} held-out captions vs {len(train)} train captions")
    acc_m = nearest_style_accuracy(mt, mh, styles_t, styles_h)
    acc_c = nearest_style_accuracy(ct, ch, styles_t, styles_h)
    print(f"MiniLM (frozen)      nearest-caption style accuracy {acc_m:.1%} ({ms:.1f} ms/caption)")
    print(f"CLIP-BPE token bag   nearest-caption style accuracy {acc_c:.1%}")


if __name__ == "__main__":
    main()
