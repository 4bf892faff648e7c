"""Wire protocol: parse and validate client messages, encode server messages and frames.

Pure functions only (no sockets), so the server, tests and other clients share one definition.
``docs/protocol.md`` describes the same format for people writing clients.

Two kinds of websocket message go to the client:

* text: one JSON object with a ``type`` field (``welcome``, ``state``, ``health``, ``dropped``,
  ``error``);
* binary: a frame starting with a 4-byte magic — ``JAMA`` (audio: 16-bit PCM), ``JAMO``
  (audio: 20 ms Opus packets) or ``JAMI`` (a tile's spectrogram PNG) — then a fixed
  little-endian header, a JSON metadata block padded to a multiple of 4 bytes, the payload.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from jam.model.types import MAX_BLEND, MAX_PROMPT_CHARS, Blend, blend, clean_text
from jam.sound.pcm import pcm16
from jam.sound.tempo import BPM_RANGE
from jam.stream.controls import MAX_GLIDE_BEATS

PROTOCOL_VERSION = 1

# Limits (prompts: jam.model.types.MAX_PROMPT_CHARS, shared with the CLI and the engine).
# A client message larger than MAX_MESSAGE_BYTES is refused by the websocket layer itself
# (close code 1009); the parser re-checks so that the limit holds whoever calls it.
MAX_MESSAGE_BYTES = 4096
MAX_NAME_CHARS = 64
PROMPT_CHANGES_PER_WINDOW = 6
PROMPT_WINDOW_SECONDS = 10.0
STRENGTH_RANGE = (0.05, 0.95)
GUIDANCE_RANGE = (0.0, 20.0)
WEIGHT_RANGE = (0.0, 1.0)
GLIDE_RANGE = (0.0, float(MAX_GLIDE_BEATS))

# Close codes (4000-4999 are application codes).
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008  # too many messages or bytes, or no valid hello
CLOSE_TOO_SLOW = 4008
CLOSE_SESSION_ENDED = 4004
CLOSE_TRY_AGAIN = 1013  # the session store is away for a moment: reconnect

CODECS = ("opus", "pcm")  # what audio frames may carry

AUDIO_MAGIC = b"JAMA"
OPUS_MAGIC = b"JAMO"
IMAGE_MAGIC = b"JAMI"
# magic, seq u32, offset u64, sample_rate u32, channels u16, reserved u16, frames u32, meta_len u32
# (an Opus frame, JAMO, has the same layout with its packet count in the reserved slot)
AUDIO_HEADER = struct.Struct("<4sIQIHHII")
PACKET_LENGTH = struct.Struct("<H")
# magic, tile u32, offset u64, meta_len u32
IMAGE_HEADER = struct.Struct("<4sIQI")


class ProtocolError(ValueError):
    """A client message that breaks the protocol; ``code`` is a stable machine-readable name."""

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after  # seconds, for refusals that pass (server_full, ...)

    def to_message(self) -> str:
        """The ``error`` message that tells the client."""
        extra = {} if self.retry_after is None else {"retry_after": round(self.retry_after, 1)}
        return error_message(self.code, self.message, **extra)


# ---------------------------------------------------------------------------------------------
# Client -> server


@dataclass(frozen=True)
class Create:
    """Start a new session (the sender gets its control token)."""

    prompt: str | None = None
    seed_image: str | None = None
    codecs: tuple[str, ...] = ()  # what the client decodes, preferred first ("opus", "pcm")


@dataclass(frozen=True)
class Join:
    """Listen to an existing session; a valid ``token`` also grants control."""

    session: str
    token: str | None = None
    codecs: tuple[str, ...] = ()


@dataclass(frozen=True)
class SetPrompt:
    text: str


@dataclass(frozen=True)
class SetPrompts:
    """A blend of up to ``MAX_BLEND`` weighted prompts (validated and normalised)."""

    prompts: Blend


@dataclass(frozen=True)
class SetSeedImage:
    name: str


@dataclass(frozen=True)
class SetStrength:
    value: float


@dataclass(frozen=True)
class SetGuidance:
    value: float


@dataclass(frozen=True)
class SetBpm:
    value: float


@dataclass(frozen=True)
class SetGlide:
    beats: int


ClientMessage = (
    Create
    | Join
    | SetPrompt
    | SetPrompts
    | SetSeedImage
    | SetStrength
    | SetGuidance
    | SetBpm
    | SetGlide
)
CONTROL_MESSAGES = (SetPrompt, SetPrompts, SetSeedImage, SetStrength, SetGuidance, SetBpm, SetGlide)
PROMPT_MESSAGES = (SetPrompt, SetPrompts)  # the ones held to the prompt rate limit


def _text(obj: dict[str, Any], key: str, limit: int, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ProtocolError("bad_field", f"'{key}' must be a string")
    value = clean_text(value)  # no surrogates, control or bidi characters reach anyone
    if required and not value:
        raise ProtocolError("bad_field", f"'{key}' must not be empty")
    if len(value) > limit:
        raise ProtocolError("too_long", f"'{key}' is longer than {limit} characters")
    return value


def _number(
    obj: dict[str, Any], key: str, bounds: tuple[float, float], name: str | None = None
) -> float:
    """``obj[key]``, a finite number within ``bounds``; errors call it ``name`` (the control)."""
    value = obj.get(key)
    what = name or f"'{key}'"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError("bad_field", f"{what} must be a number")
    try:
        value = float(value)  # an integer literal beyond float range raises here
    except OverflowError:
        raise ProtocolError("bad_field", f"{what} is not a representable number") from None
    if not math.isfinite(value):
        raise ProtocolError("bad_field", f"{what} must be a finite number")
    lo, hi = bounds
    if not lo <= value <= hi:
        raise ProtocolError("out_of_range", f"{what} must be between {lo:g} and {hi:g}")
    return float(value)


def _blend(obj: dict[str, Any]) -> Blend:
    value = obj.get("prompts")
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_BLEND:
        raise ProtocolError("bad_field", f"'prompts' must be a list of 1 to {MAX_BLEND} prompts")
    pairs = []
    for item in value:
        if not isinstance(item, dict):
            raise ProtocolError("bad_field", "each of 'prompts' must be {text, weight}")
        text = _text(item, "text", MAX_PROMPT_CHARS)
        assert text is not None
        pairs.append((text, _number(item, "weight", WEIGHT_RANGE)))
    try:
        return blend(*pairs)
    except ValueError as e:
        raise ProtocolError("bad_value", str(e)) from None


def _codecs(obj: dict[str, Any]) -> tuple[str, ...]:
    """The codecs a client decodes, in its order of preference (unknown names are skipped)."""
    value = obj.get("codecs", [])
    if not isinstance(value, list) or len(value) > 8 or not all(isinstance(c, str) for c in value):
        raise ProtocolError("bad_field", "'codecs' must be a list of up to 8 codec names")
    return tuple(dict.fromkeys(c for c in value if c in CODECS))


def choose_codec(offered: tuple[str, ...], available: tuple[str, ...]) -> str:
    """The first codec the client offered that the server has; PCM when none (or no offer)."""
    return next((c for c in offered if c in available), "pcm")


def parse_client_message(data: str | bytes) -> ClientMessage:
    """Validate one websocket message from a client; raises ProtocolError with a clear reason."""
    if isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError("binary_not_accepted", "clients send JSON text messages only")
    if len(data.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"messages are limited to {MAX_MESSAGE_BYTES} bytes")
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise ProtocolError("bad_json", f"message is not valid JSON: {e}") from None
    except RecursionError:  # ~1000 nested brackets fit in the size limit
        raise ProtocolError("bad_json", "message nests too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", "message must be a JSON object")
    kind = obj.get("type")
    if kind == "create":
        return Create(
            prompt=_text(obj, "prompt", MAX_PROMPT_CHARS, required=False),
            seed_image=_text(obj, "seed_image", MAX_NAME_CHARS, required=False),
            codecs=_codecs(obj),
        )
    if kind == "join":
        session = _text(obj, "session", MAX_NAME_CHARS)
        assert session is not None
        token = _text(obj, "token", MAX_NAME_CHARS, required=False)
        return Join(session=session, token=token, codecs=_codecs(obj))
    if kind == "prompt":
        text = _text(obj, "text", MAX_PROMPT_CHARS)
        assert text is not None
        return SetPrompt(text)
    if kind == "prompts":
        return SetPrompts(_blend(obj))
    if kind == "bpm":
        return SetBpm(_number(obj, "value", BPM_RANGE, "the tempo (bpm)"))
    if kind == "glide":
        return SetGlide(round(_number(obj, "value", GLIDE_RANGE, "the glide (beats)")))
    if kind == "seed_image":
        name = _text(obj, "name", MAX_NAME_CHARS)
        assert name is not None
        return SetSeedImage(name)
    if kind == "strength":
        return SetStrength(_number(obj, "value", STRENGTH_RANGE, "the strength"))
    if kind == "guidance":
        return SetGuidance(_number(obj, "value", GUIDANCE_RANGE, "the guidance"))
    if not isinstance(kind, str):
        raise ProtocolError("bad_type", "message needs a string 'type' field")
    raise ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}")


# ---------------------------------------------------------------------------------------------
# Server -> client


def encode_message(kind: str, **fields: Any) -> str:
    """A JSON text message; ``kind`` becomes its ``type``."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"), allow_nan=False)


def error_message(code: str, message: str, **extra: Any) -> str:
    return encode_message("error", code=code, message=message, **extra)


def _meta_block(meta: dict[str, Any], header_size: int) -> bytes:
    """JSON metadata, space-padded so the payload is 4-byte aligned (Int16Array needs 2)."""
    raw = json.dumps(meta, separators=(",", ":"), allow_nan=False, default=str).encode()
    pad = -(header_size + len(raw)) % 4
    return raw + b" " * pad


def encode_audio_frame(
    seq: int, offset: int, sample_rate: int, audio: np.ndarray, meta: dict[str, Any]
) -> bytes:
    """A binary audio frame: header, JSON metadata, 16-bit PCM (interleaved)."""
    if audio.ndim != 2:
        raise ValueError(f"audio must be (channels, samples), got shape {audio.shape}")
    channels, frames = audio.shape
    block = _meta_block(meta, AUDIO_HEADER.size)
    header = AUDIO_HEADER.pack(
        AUDIO_MAGIC, seq, offset, sample_rate, channels, 0, frames, len(block)
    )
    return header + block + pcm16(audio).tobytes()


def encode_opus_frame(
    seq: int,
    offset: int,
    sample_rate: int,
    channels: int,
    packets: list[bytes],
    packet_samples: int,
    meta: dict[str, Any],
) -> bytes:
    """A binary Opus frame: header, JSON metadata, then each packet as u16 length + bytes.

    Packet ``i`` starts at stream sample ``offset + i * packet_samples`` (20 ms packets).
    """
    block = _meta_block(meta, AUDIO_HEADER.size)
    frames = len(packets) * packet_samples
    header = AUDIO_HEADER.pack(
        OPUS_MAGIC, seq, offset, sample_rate, channels, len(packets), frames, len(block)
    )
    body = b"".join(PACKET_LENGTH.pack(len(p)) + p for p in packets)
    return header + block + body


def encode_image_frame(tile: int, offset: int, png: bytes, meta: dict[str, Any]) -> bytes:
    """A binary tile image frame: header, JSON metadata, PNG bytes."""
    block = _meta_block(meta, IMAGE_HEADER.size)
    return IMAGE_HEADER.pack(IMAGE_MAGIC, tile, offset, len(block)) + block + png


@dataclass(frozen=True)
class AudioFrame:
    seq: int
    offset: int
    sample_rate: int
    channels: int
    frames: int
    meta: dict[str, Any]
    pcm: np.ndarray  # (channels, frames) int16

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class OpusFrame:
    seq: int
    offset: int
    sample_rate: int
    channels: int
    frames: int  # stream samples the packets cover
    meta: dict[str, Any]
    packets: list[bytes]

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class ImageFrame:
    tile: int
    offset: int
    meta: dict[str, Any]
    png: bytes


def decode_frame(data: bytes) -> AudioFrame | OpusFrame | ImageFrame:
    """Inverse of the encoders, for Python clients and tests."""
    magic = bytes(data[:4])
    if magic == OPUS_MAGIC:
        _, seq, offset, rate, channels, count, frames, meta_len = AUDIO_HEADER.unpack_from(data)
        start = AUDIO_HEADER.size
        meta = json.loads(data[start : start + meta_len])
        pos, packets = start + meta_len, []
        for _ in range(count):
            (length,) = PACKET_LENGTH.unpack_from(data, pos)
            packets.append(bytes(data[pos + 2 : pos + 2 + length]))
            pos += 2 + length
        if pos != len(data):
            raise ValueError(f"opus frame has {len(data) - pos} bytes after its {count} packets")
        return OpusFrame(seq, offset, rate, channels, frames, meta, packets)
    if magic == AUDIO_MAGIC:
        _, seq, offset, rate, channels, _, frames, meta_len = AUDIO_HEADER.unpack_from(data)
        start = AUDIO_HEADER.size
        meta = json.loads(data[start : start + meta_len])
        pcm = np.frombuffer(data, dtype="<i2", offset=start + meta_len)
        if pcm.size != channels * frames:
            raise ValueError(
                f"audio frame holds {pcm.size} samples, header says {channels * frames}"
            )
        return AudioFrame(
            seq, offset, rate, channels, frames, meta, pcm.reshape(frames, channels).T
        )
    if magic == IMAGE_MAGIC:
        _, tile, offset, meta_len = IMAGE_HEADER.unpack_from(data)
        start = IMAGE_HEADER.size
        return ImageFrame(
            tile,
            offset,
            json.loads(data[start : start + meta_len]),
            bytes(data[start + meta_len :]),
        )
    raise ValueError(f"unknown frame magic {magic!r}")


class HeldAudio:
    """What a client holds of a stream, as the protocol defines it (the reference for client
    writers, and what tests compare): each frame written at its offset; a frame with
    ``splice`` first discards everything held from its offset on."""

    def __init__(self, channels: int) -> None:
        self.start: int | None = None  # stream sample of the first sample held
        self.splices = 0
        self._audio = np.zeros((channels, 0), np.float32)

    @property
    def end(self) -> int:
        return (self.start or 0) + self._audio.shape[-1]

    @property
    def audio(self) -> np.ndarray:
        """``(channels, n)`` float32 from :attr:`start` (zeros where nothing arrived)."""
        return self._audio

    def write(self, offset: int, audio: np.ndarray, splice: bool = False) -> None:
        if self.start is None:
            self.start = offset
        at = offset - self.start
        if at < 0:
            raise ValueError(f"audio at {offset} is before the first held sample {self.start}")
        held = self._audio.shape[-1]
        if splice:
            self.splices += 1
        if splice or at < held:
            self._audio = self._audio[:, :at]
        elif at > held:  # frames dropped for this client: silence in their place
            gap = np.zeros((self._audio.shape[0], at - held), np.float32)
            self._audio = np.concatenate([self._audio, gap], axis=-1)
        self._audio = np.concatenate([self._audio, audio.astype(np.float32)], axis=-1)

    def add(self, frame: AudioFrame) -> None:
        """A decoded ``JAMA`` frame (Opus frames need a decoder first: ``jam.sound.opus``)."""
        splice = frame.meta.get("splice")
        self.write(frame.offset, frame.pcm / 32768.0, splice is not None)
