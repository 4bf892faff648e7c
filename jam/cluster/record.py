"""What a cluster keeps in Redis, and in which shape (pure: no I/O).

Per session ``S`` (every key under one prefix, ``jam:`` by default; ``S`` in braces, a Redis
Cluster hash tag):

- ``jam:s:{S}`` — the record (a hash): the controls, the control token's SHA-256, the noise seed
  at the live edge, the stream clock (the wall time stream sample 0 plays), the beat grid, the
  last control applied, created/updated times;
- ``jam:f:{S}`` — the frames (a stream capped at a few tens of seconds): audio encoded once per
  codec, tile images, JSON messages, clock moves, and the end;
- ``jam:c:{S}`` — the controls sent from any edge, in order, for the session's worker;
- ``jam:lease:{S}`` — the worker that owns the session, while it renews it (``SET NX PX``);
- ``jam:n:{S}`` — listeners per edge (a hash), each count valid until its edge's deadline;

and ``jam:sessions``, the set of live session ids workers look through.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from jam.model.types import WeightedPrompt
from jam.serve.listener import Outgoing
from jam.stream.controls import Controls


@dataclass(frozen=True)
class ClusterSettings:
    """Leases, presence and the size of what Redis holds per session."""

    prefix: str = "jam:"
    # a worker that stops renewing loses its sessions after this long: most of the silence a
    # dead worker's listeners hear; three renewals a lease ride out a busy moment
    lease_ms: int = 1500
    renew_every: float = 0.4  # seconds between a worker's lease renewals (and claims)
    presence_ms: int = 3000  # an edge's listener count lapses this long after its last renewal
    presence_every: float = 1.0  # seconds between an edge's renewals of its counts
    frames_seconds: float = 30.0  # audio a session's frame stream keeps
    record_days: float = 1.0  # a record nobody touches for this long expires
    capacity: int = 8  # sessions one worker renders at most (its device load also decides)
    # a session nobody owns and nobody hears is ended after this long without frames: longer
    # than a restart takes, so pages reconnecting to a restarted server find their jam
    abandon_seconds: float = 120.0

    def frames_maxlen(self, chunk_seconds: float) -> int:
        """Stream entries for ``frames_seconds`` of audio: two codecs per chunk, plus images
        and messages (about one of each per chunk, generously)."""
        return math.ceil(self.frames_seconds / chunk_seconds) * 4


@dataclass(frozen=True)
class Keys:
    """The key names of one cluster (one prefix)."""

    prefix: str = "jam:"

    @property
    def sessions(self) -> str:
        return f"{self.prefix}sessions"

    # A session's keys name it in braces: Redis Cluster hashes only that part, so all of them
    # live on one shard and a MULTI over them stays on one node.

    def record(self, sid: str) -> str:
        return f"{self.prefix}s:{{{sid}}}"

    def frames(self, sid: str) -> str:
        return f"{self.prefix}f:{{{sid}}}"

    def controls(self, sid: str) -> str:
        return f"{self.prefix}c:{{{sid}}}"

    def lease(self, sid: str) -> str:
        return f"{self.prefix}lease:{{{sid}}}"

    def listeners(self, sid: str) -> str:
        return f"{self.prefix}n:{{{sid}}}"

    def all_of(self, sid: str) -> tuple[str, ...]:
        return (
            self.record(sid),
            self.frames(sid),
            self.controls(sid),
            self.lease(sid),
            self.listeners(sid),
        )


@dataclass(frozen=True)
class Grid:
    """A session's beat grid in stream samples: a downbeat and the length of a beat."""

    origin: int
    beat: float

    def next_beat(self, pos: int) -> int:
        """The first beat at or after stream sample ``pos``."""
        return self.origin + round(math.ceil((pos - self.origin) / self.beat - 1e-9) * self.beat)


def controls_json(c: Controls) -> str:
    return json.dumps(
        {
            "prompts": [[p.text, p.weight] for p in c.prompts],
            "seed_image": c.seed_image,
            "strength": c.strength,
            "guidance": c.guidance,
            "bpm": c.bpm,
            "glide": c.glide,
            "negative_prompt": c.negative_prompt,
        }
    )


def controls_from_json(raw: str) -> Controls:
    d = json.loads(raw)
    return Controls(
        tuple(WeightedPrompt(str(t), float(w)) for t, w in d["prompts"]),
        str(d["seed_image"]),
        float(d["strength"]),
        float(d["guidance"]),
        float(d["bpm"]),
        int(d["glide"]),
        str(d["negative_prompt"]),
    )


@dataclass(frozen=True)
class SessionRecord:
    """A session as Redis holds it: enough for any edge to admit a join and for any worker
    to continue the stream where it is, as it was steered."""

    id: str
    token_digest: str  # SHA-256 of the control token: the token itself is never stored
    controls: Controls
    seed: int  # the noise seed at the live edge
    steps: int
    created: float  # wall times
    updated: float
    t0: float | None = None  # the wall time stream sample 0 plays (None: not started)
    grid: Grid | None = None
    applied: str = "0-0"  # the id of the last control (``jam:c:S``) applied

    def fields(self) -> dict[str, str]:
        out = {
            "token": self.token_digest,
            "controls": controls_json(self.controls),
            "seed": str(self.seed),
            "steps": str(self.steps),
            "created": repr(self.created),
            "updated": repr(self.updated),
            "applied": self.applied,
            "t0": "" if self.t0 is None else repr(self.t0),
        }
        if self.grid is not None:
            out |= grid_fields(self.grid)
        return out

    @classmethod
    def parse(cls, sid: str, raw: dict[bytes, bytes]) -> SessionRecord:
        """From HGETALL; ValueError (KeyError included) for a record that is not whole."""
        f = {k.decode(): v.decode() for k, v in raw.items()}
        grid = Grid(int(f["origin"]), float(f["beat"])) if f.get("origin") else None
        return cls(
            sid,
            f["token"],
            controls_from_json(f["controls"]),
            int(f["seed"]),
            int(f["steps"]),
            float(f["created"]),
            float(f["updated"]),
            float(f["t0"]) if f.get("t0") else None,
            grid,
            f.get("applied", "0-0"),
        )


def grid_fields(grid: Grid) -> dict[str, str]:
    return {"origin": str(grid.origin), "beat": repr(grid.beat)}


# --- frame stream entries ----------------------------------------------------------------------


@dataclass(frozen=True)
class AudioEntry:
    encoded: dict[str, Outgoing]  # per codec
    splice: int | None


@dataclass(frozen=True)
class ImageEntry:
    item: Outgoing


@dataclass(frozen=True)
class TextEntry:
    message: str
    controllers: bool = False
    edge: str = ""  # with ``listener``: only for that listener of that edge
    listener: int | None = None


@dataclass(frozen=True)
class ClockEntry:
    t0: float | None  # wall time


@dataclass(frozen=True)
class EndEntry:
    code: int
    reason: str


Entry = AudioEntry | ImageEntry | TextEntry | ClockEntry | EndEntry


def entry_fields(entry: Entry) -> dict[str, bytes | str]:
    match entry:
        case AudioEntry(encoded, splice):
            out: dict[str, bytes | str] = {"k": "a", "sp": "" if splice is None else str(splice)}
            for codec, item in encoded.items():
                out |= {
                    codec: item.data,
                    f"{codec}.o": str(item.offset),
                    f"{codec}.e": str(item.end),
                }
            return out
        case ImageEntry(item):
            return {"k": "i", "d": item.data, "o": str(item.offset)}
        case TextEntry(message, controllers, edge, listener):
            to = "" if listener is None else f"{edge}/{listener}"
            return {"k": "t", "d": message, "c": "1" if controllers else "", "to": to}
        case ClockEntry(t0):
            return {"k": "c", "t0": "" if t0 is None else repr(t0)}
        case EndEntry(code, reason):
            return {"k": "x", "code": str(code), "d": reason}
    raise TypeError(f"not a frame stream entry: {entry!r}")


def parse_entry(raw: dict[bytes, bytes], sample_rate: int, codecs: tuple[str, ...]) -> Entry:
    """From XREAD; ValueError for an entry this version cannot read."""
    kind = raw.get(b"k", b"").decode()
    if kind == "a":
        encoded = {}
        for codec in codecs:
            if (data := raw.get(codec.encode())) is None:
                continue
            offset, end = int(raw[f"{codec}.o".encode()]), int(raw[f"{codec}.e".encode()])
            encoded[codec] = Outgoing(data, (end - offset) / sample_rate, offset, end)
        if "pcm" not in encoded:
            raise ValueError("an audio entry without its PCM frame")
        splice = raw.get(b"sp", b"").decode()
        return AudioEntry(encoded, int(splice) if splice else None)
    if kind == "i":
        offset = int(raw[b"o"])
        return ImageEntry(Outgoing(raw[b"d"], offset=offset, end=offset))
    if kind == "t":
        to = raw.get(b"to", b"").decode()
        edge, _, listener = to.partition("/")
        return TextEntry(
            raw[b"d"].decode(), raw.get(b"c") == b"1", edge, int(listener) if listener else None
        )
    if kind == "c":
        t0 = raw.get(b"t0", b"").decode()
        return ClockEntry(float(t0) if t0 else None)
    if kind == "x":
        return EndEntry(int(raw[b"code"]), raw.get(b"d", b"").decode())
    raise ValueError(f"unknown frame stream entry kind {kind!r}")
