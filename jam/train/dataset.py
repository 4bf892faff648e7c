"""Training data for `jam train`: an audio folder and its captions -> cached spectrogram tiles.

Captions come from, in order of preference: ``captions.jsonl`` as `jam corpus` writes it (only
captions whose split is ``train``: held-out wordings and combinations are never trained on),
a ``captions.csv`` / ``captions.json`` sidecar of (file, caption) rows, or the file names
themselves ("deep_house-loop_02.wav" -> "deep house loop"). Audio is cut into whole tiles and
turned into spectrogram image rows once; the result is cached as one tensor file because the
STFT of thousands of clips costs minutes that every resumed run would otherwise repeat.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from jam.sound.files import AudioDecodeError, read_audio
from jam.sound.params import SpectrogramParams
from jam.sound.pcm import conform
from jam.sound.spectrogram import DEFAULT_MAX_VALUE, converter, pixels_from_spectrogram

AUDIO_SUFFIXES = (".wav", ".wave", ".mp3", ".flac", ".ogg")
CACHE_VERSION = 1


class DatasetError(ValueError):
    """Training input that cannot be used; the message says what and where."""


@dataclass(frozen=True)
class Item:
    """One audio file and the captions it may be trained with (style: a label, if known)."""

    path: Path
    captions: tuple[str, ...]
    style: str = ""


def caption_from_name(path: Path) -> str:
    """A caption from a file name: separators to spaces, trailing numbers dropped."""
    words = re.sub(r"[_\-.]+", " ", path.stem).split()
    while words and re.fullmatch(r"\d+", words[-1]):
        words.pop()
    words = [w for w in words if not re.fullmatch(r"\d+", w)]
    return " ".join(words) or path.stem


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)


def _jsonl_items(folder: Path, path: Path) -> list[Item]:
    items = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        texts = tuple(
            c["text"] for c in record.get("captions", []) if c.get("split", "train") == "train"
        )
        if texts:
            items.append(Item(folder / record["file"], texts, record.get("style", "")))
    return items


def _pair_rows(path: Path) -> list[tuple[str, str]]:
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        if rows and [c.strip().lower() for c in rows[0][:2]] == ["file", "caption"]:
            rows = rows[1:]
        return [(r[0].strip(), r[1].strip()) for r in rows if len(r) >= 2 and r[1].strip()]
    data = json.loads(path.read_text())
    if isinstance(data, dict):  # {"file.wav": "caption" or ["caption", ...]}
        return [(k, c) for k, v in data.items() for c in ([v] if isinstance(v, str) else v)]
    return [(r["file"], r["caption"]) for r in data]


def read_items(folder: str | Path) -> list[Item]:
    """The training items of ``folder`` (captions from the best sidecar present)."""
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder of audio")
    if (root / "captions.jsonl").is_file():
        items = _jsonl_items(root, root / "captions.jsonl")
    else:
        sidecar = next(
            (root / n for n in ("captions.csv", "captions.json") if (root / n).is_file()), None
        )
        if sidecar is not None:
            grouped: dict[Path, list[str]] = {}
            for name, text in _pair_rows(sidecar):
                grouped.setdefault(root / name, []).append(text)
            items = [Item(p, tuple(t)) for p, t in grouped.items()]
        else:
            items = [Item(p, (caption_from_name(p),)) for p in audio_files(root)]
    if not items:
        raise DatasetError(
            f"no audio files with captions in {root} (looked for {', '.join(AUDIO_SUFFIXES)} "
            "files, captions.jsonl, captions.csv or captions.json)"
        )
    missing = [str(i.path) for i in items if not i.path.is_file()]
    if missing:
        raise DatasetError(f"captions name {len(missing)} missing file(s), e.g. {missing[0]}")
    return items


def tile_audio(
    audio: torch.Tensor, rate: int, params: SpectrogramParams, width: int
) -> Iterator[torch.Tensor]:
    """Whole tiles of ``width`` frames (a clip shorter than one tile is repeated to fill it)."""
    audio = conform(audio, rate, params.channels, params.sample_rate)
    n = params.num_samples(width)
    if audio.shape[-1] < n:
        audio = audio.repeat(1, -(-n // audio.shape[-1]))
    for start in range(0, audio.shape[-1] - n + 1, n):
        yield audio[:, start : start + n]


def tile_pixels(audio: torch.Tensor, params: SpectrogramParams) -> torch.Tensor:
    """One tile's spectrogram image as ``(H, W)`` uint8, the exact pixels the engine reads."""
    mel = converter(params).spectrogram_from_audio(audio)
    return pixels_from_spectrogram(mel, params.power_for_image, DEFAULT_MAX_VALUE)[..., 0]


@dataclass
class TileSet:
    """Spectrogram tiles ``(N, H, W)`` uint8, each with its item index."""

    pixels: torch.Tensor
    item_index: torch.Tensor
    items: list[Item]

    def __len__(self) -> int:
        return len(self.item_index)


def build_tiles(
    items: list[Item], params: SpectrogramParams, width: int, progress: bool = True
) -> TileSet:
    from tqdm import tqdm

    tiles, owners = [], []
    for k, item in enumerate(tqdm(items, desc="spectrograms", unit="file", disable=not progress)):
        try:
            audio, rate = read_audio(item.path)
        except AudioDecodeError as e:
            raise DatasetError(str(e)) from e
        for tile in tile_audio(audio, rate, params, width):
            tiles.append(tile_pixels(tile, params))
            owners.append(k)
    return TileSet(torch.stack(tiles), torch.tensor(owners), items)


def atomic_save(obj: object, path: Path) -> None:
    """``torch.save`` that never leaves a half-written file where a reader could find it."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def cached_tiles(
    items: list[Item], params: SpectrogramParams, width: int, cache: Path, progress: bool = True
) -> TileSet:
    """:func:`build_tiles`, loaded from ``cache`` when it was built from the same inputs."""
    key = {
        "version": CACHE_VERSION,
        "params": params.to_dict(),
        "width": width,
        "files": [str(i.path) for i in items],
    }
    if cache.is_file():
        stored = torch.load(cache, weights_only=False)
        if stored.get("key") == key:
            return TileSet(stored["pixels"], stored["item_index"], items)
    tiles = build_tiles(items, params, width, progress)
    atomic_save({"key": key, "pixels": tiles.pixels, "item_index": tiles.item_index}, cache)
    return tiles
