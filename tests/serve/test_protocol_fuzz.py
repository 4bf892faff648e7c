"""Property-based fuzzing of the wire parser and the binary frame codecs.

Whatever a client sends, ``parse_client_message`` must either return one of the message
dataclasses, holding only clean, bounded text and finite in-range numbers, or raise a
``ProtocolError`` whose code is one the parser is known to raise and ``docs/protocol.md`` lists.
Anything else (another exception type, an undocumented code, a dirty string let through) would
reach the server's handlers, which only catch ``ProtocolError``. The codes are read from the
source, so a new code that is not documented fails here rather than surprising a client author.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jam.serve import protocol
from jam.serve.protocol import (
    AUDIO_HEADER,
    GUIDANCE_RANGE,
    MAX_NAME_CHARS,
    MAX_PROMPT_CHARS,
    STRENGTH_RANGE,
    AudioFrame,
    ImageFrame,
    ProtocolError,
    decode_frame,
    encode_audio_frame,
    encode_image_frame,
    parse_client_message,
)

ROOT = Path(__file__).resolve().parents[2]
SERVE = ROOT / "jam" / "serve"
DOCS = ROOT / "docs" / "protocol.md"
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MESSAGE_TYPES = {
    "create": protocol.Create,
    "join": protocol.Join,
    "prompt": protocol.SetPrompt,
    "seed_image": protocol.SetSeedImage,
    "strength": protocol.SetStrength,
    "guidance": protocol.SetGuidance,
}
FIELD_NAMES = ["prompt", "seed_image", "session", "token", "text", "name", "value", "type"]
PROMPT_FIELDS = {"prompt", "text"}  # the rest are names (ids, tokens, seed names)
RANGES = {protocol.SetStrength: STRENGTH_RANGE, protocol.SetGuidance: GUIDANCE_RANGE}
BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def raised_codes(path: Path) -> set[str]:
    """Codes given literally to ``ProtocolError(...)`` or ``error_message(...)`` in a module."""
    codes = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        first = node.args[0]
        literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
        if name in ("ProtocolError", "error_message") and literal:
            codes.add(first.value)
    return codes


def documented_codes() -> set[str]:
    """The codes in docs/protocol.md's ``error`` bullet ("Codes: `a`, `b`, ...")."""
    text = DOCS.read_text()
    match = re.search(r"Codes:(.*?)Errors never", text, re.S)
    assert match, "docs/protocol.md lists the error codes after 'Codes:'"
    return set(re.findall(r"`([a-z_]+)`", match.group(1)))


PARSER_CODES = raised_codes(SERVE / "protocol.py")


# -- strategies ---------------------------------------------------------------------------------

NASTY = [
    "\ud800",  # lone surrogates
    "\udfff",
    "\x00",
    "\x1b",
    "\x7f",
    "\x85",  # control characters (NEL is also whitespace)
    "\t",
    "\n",
    "\r",
    "\u2028",
    "\u3000",
    "\u200b",  # whitespace and zero-width space
    *(chr(c) for c in sorted(BIDI)),
    "\ufeff",
    "\ufffd",
    "\U0001f3b5",
    "\u0301",  # a lone combining accent
]
chars = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),
    st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]),
    st.sampled_from(NASTY),
)
texts = st.text(chars, max_size=40)
words = st.text(st.one_of(st.characters(categories=["L", "N", "P", "Zs"]), chars), min_size=1)
# Text made of JSON's own punctuation and keywords, so that random text often nearly parses.
json_ish = st.text(
    st.one_of(st.sampled_from(list('{}[]":,0123456789.eE-+ \\utrfalsn')), st.sampled_from(NASTY)),
    max_size=80,
)
# Around the limits, and past the message size limit.
long_texts = st.one_of(
    st.integers(MAX_NAME_CHARS - 2, MAX_NAME_CHARS + 2).map(lambda n: "n" * n),
    st.integers(MAX_PROMPT_CHARS - 2, MAX_PROMPT_CHARS + 2).map(lambda n: "p" * n),
    st.integers(MAX_PROMPT_CHARS - 2, MAX_PROMPT_CHARS + 2).map(lambda n: "é " * (n // 2)),
    st.integers(MAX_PROMPT_CHARS - 2, MAX_PROMPT_CHARS + 2).map(lambda n: "\u202e" + "b" * n),
)
huge_texts = st.integers(4000, 4200).map(lambda n: "x" * n)  # past the message size limit
numbers = st.one_of(
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, 2**1024, 0, 1, 5, 20, 21]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-0.1, 21.0),
)
json_leaves = st.one_of(st.none(), st.booleans(), numbers, texts, long_texts, huge_texts)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(texts, st.just("type")), inner)
    ),
    max_leaves=12,
)
# Values a field plausibly holds (so that plenty of messages are accepted), or anything at all.
field_values = st.one_of(texts, long_texts, numbers, json_values)
random_messages = st.builds(
    lambda kind, fields: {**fields, "type": kind},
    st.sampled_from(sorted(MESSAGE_TYPES)),
    st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), texts), field_values, max_size=4),
)
# Each type's own fields, mostly with values of the right kind: these get accepted often.
OWN_FIELDS = {
    "create": ([], ["prompt", "seed_image", "codecs"]),
    "join": (["session"], ["token", "codecs"]),
    "prompt": (["text"], []),
    "seed_image": (["name"], []),
    "strength": (["value"], []),
    "guidance": (["value"], []),
}


def plausible(field: str) -> st.SearchStrategy[Any]:
    if field == "codecs":
        names = st.sampled_from(["opus", "pcm", "mp3", "", "OPUS"])
        return st.one_of(st.lists(names, max_size=10), field_values)
    if field == "value":
        return st.one_of(st.floats(0.0, 1.0), st.integers(0, 25), numbers, field_values)
    return st.one_of(words, words, texts, long_texts, field_values)


def own_fields(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    required, optional = OWN_FIELDS[kind]
    return st.fixed_dictionaries(
        {"type": st.just(kind), **{f: plausible(f) for f in required}},
        optional={f: plausible(f) for f in optional} | {"extra": json_values},
    )


near_valid = st.sampled_from(sorted(OWN_FIELDS)).flatmap(own_fields)
messages = st.one_of(random_messages, near_valid, near_valid)


@st.composite
def mutated_json(draw: st.DrawFn) -> str:
    """A real message's JSON text with a few characters inserted, deleted or replaced."""
    raw = json.dumps(draw(near_valid), ensure_ascii=draw(st.booleans()))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        cut = draw(st.integers(0, 2))
        raw = raw[:at] + draw(st.text(chars, max_size=2)) + raw[at + cut :]
    return raw


def dumps(value: Any, ascii_only: bool) -> str:
    """JSON text as a client might send it: escaped (``\\ud800``) or raw characters."""
    return json.dumps(value, ensure_ascii=ascii_only)


# -- the checks ---------------------------------------------------------------------------------


def check_clean(key: str, value: str) -> None:
    limit = MAX_PROMPT_CHARS if key in PROMPT_FIELDS else MAX_NAME_CHARS
    assert len(value) <= limit, (key, len(value))
    for ch in value:
        assert unicodedata.category(ch) not in ("Cs", "Cc"), (key, ascii(ch))
        assert ord(ch) not in BIDI, (key, ascii(ch))
    assert value == " ".join(value.split()), f"{key} is whitespace-collapsed"
    value.encode("utf-8")  # sendable to every listener as a websocket text frame


def check(raw: str | bytes) -> protocol.ClientMessage | ProtocolError:
    """Parse; accepted messages are clean, refusals carry a known code. Returns either."""
    try:
        message = parse_client_message(raw)
    except ProtocolError as e:
        assert e.code in PARSER_CODES, e.code
        assert isinstance(e.message, str) and e.message
        protocol.error_message(e.code, e.message).encode("utf-8")  # the server can send it
        return e
    assert isinstance(message, tuple(MESSAGE_TYPES.values())), message
    for field in dataclasses.fields(message):
        value = getattr(message, field.name)
        if isinstance(value, str):
            check_clean(field.name, value)
        elif isinstance(value, float):
            lo, hi = RANGES[type(message)]
            assert math.isfinite(value) and lo <= value <= hi, value
        elif field.name == "codecs":  # known names only, each once
            assert set(value) <= set(protocol.CODECS) and len(set(value)) == len(value), value
        else:
            assert value is None and field.name in ("prompt", "seed_image", "token"), field
    if isinstance(message, protocol.Join | protocol.SetPrompt | protocol.SetSeedImage):
        required = {"session", "text", "name"}
        assert all(getattr(message, f) for f in required if hasattr(message, f)), "not empty"
    if isinstance(message, protocol.SetStrength | protocol.SetGuidance):
        assert type(message.value) is float
    return message


def test_every_code_the_server_sends_is_documented() -> None:
    documented = documented_codes()
    for path in sorted(SERVE.glob("*.py")):
        missing = raised_codes(path) - documented
        assert not missing, f"{path.name} raises codes docs/protocol.md does not list: {missing}"
    assert {"bad_json", "bad_field", "too_large", "binary_not_accepted"} <= PARSER_CODES


@FUZZ
@given(st.one_of(st.text(chars, max_size=200), json_ish, mutated_json()))
def test_arbitrary_text_is_parsed_or_refused_with_a_documented_code(raw: str) -> None:
    check(raw)


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(bytearray)))
def test_binary_messages_are_refused(raw: bytes) -> None:
    result = check(raw)
    assert isinstance(result, ProtocolError) and result.code == "binary_not_accepted"


@FUZZ
@given(json_values, st.booleans())
def test_arbitrary_json_values_are_parsed_or_refused(value: Any, ascii_only: bool) -> None:
    result = check(dumps(value, ascii_only))
    if not isinstance(value, dict):
        assert isinstance(result, ProtocolError) and result.code in ("bad_json", "too_large")


@FUZZ
@given(messages, st.booleans())
def test_messages_of_every_type_with_random_fields_are_clean_or_refused(
    message: dict[str, Any], ascii_only: bool
) -> None:
    result = check(dumps(message, ascii_only))
    if not isinstance(result, ProtocolError):
        assert type(result) is MESSAGE_TYPES[message["type"]]


@FUZZ
@given(
    st.sampled_from(["prompt", "text", "session", "name", "token", "seed_image"]),
    st.text(chars, min_size=1, max_size=60),
)
def test_text_fields_keep_their_printable_characters(key: str, value: str) -> None:
    """Cleaning removes only what must not reach a screen: the printable rest survives."""
    kind = {"prompt": "create", "text": "prompt", "session": "join", "name": "seed_image"}
    kind |= {"token": "join", "seed_image": "create"}
    message = {"type": kind[key], "session": "s", key: value}
    raw = json.dumps(message)
    sent = json.loads(raw)[key]  # JSON joins an escaped surrogate pair into one character
    result = check(raw)
    kept = [
        ch
        for ch in sent
        if not ch.isspace() and unicodedata.category(ch) not in ("Cs", "Cc") and ord(ch) not in BIDI
    ]
    if isinstance(result, ProtocolError):
        assert result.code == "bad_field" and not kept
    else:
        got = dataclasses.asdict(result)[key]
        assert (got or "").replace(" ", "") == "".join(kept)


@FUZZ
@given(st.sampled_from(["strength", "guidance"]), numbers)
def test_numbers_are_finite_floats_in_range_or_refused(kind: str, value: Any) -> None:
    result = check(json.dumps({"type": kind, "value": value}))
    lo, hi = STRENGTH_RANGE if kind == "strength" else GUIDANCE_RANGE
    if lo <= value <= hi:
        assert not isinstance(result, ProtocolError), result
        assert result.value == float(value)
    elif isinstance(value, int) and abs(value) > sys.float_info.max:
        # An integer no float can hold: refused either way (today as "not representable").
        assert isinstance(result, ProtocolError)
        assert result.code in ("bad_field", "out_of_range")
    else:
        assert isinstance(result, ProtocolError)
        assert result.code == ("out_of_range" if math.isfinite(value) else "bad_field")


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 2000,
        "[" * 1500 + "]" * 1500,
        '{"type":"prompt","text":' + "[" * 2000,
        '{"":[' * 800,
    ],
    ids=["open-arrays", "closed-arrays", "inside-a-field", "objects"],
)
def test_deeply_nested_json_is_refused_as_bad_json(raw: str) -> None:
    assert len(raw.encode()) <= protocol.MAX_MESSAGE_BYTES
    result = check(raw)
    assert isinstance(result, ProtocolError) and result.code == "bad_json"


# -- binary frames ------------------------------------------------------------------------------

# Metadata is the server's own (cleaned prompts, numbers): no surrogates, which JSON would pair.
meta_texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
meta_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        meta_texts,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(meta_texts, inner, max_size=3)
    ),
    max_leaves=8,
)
metas = st.dictionaries(meta_texts, meta_values, max_size=5)
samples = st.one_of(
    st.floats(-1.0, 1.0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5 / 32767, 1.5 / 32767, -0.5 / 32767, 1.0 - 1e-9, -1.0]),
)


@st.composite
def audio_arrays(draw: st.DrawFn) -> np.ndarray:
    """Random audio (fast, from a drawn numpy seed), some of it hot, with special samples
    (NaN, inf, exact half-steps) drawn into random places."""
    channels = draw(st.integers(1, 4))
    frames = draw(st.integers(0, 2000))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    audio = rng.uniform(-1.0, 1.0, (channels, frames)) * draw(st.sampled_from([0.01, 1.0, 2.0]))
    if frames:
        for value in draw(st.lists(samples, max_size=8)):
            audio[rng.integers(channels), rng.integers(frames)] = value
    with np.errstate(over="ignore"):
        return audio.astype(dtype)


def expected_pcm(audio: np.ndarray) -> np.ndarray:
    """The spec: NaN plays as silence, then clip to [-1, 1], scale by 32767, round to nearest."""
    x = np.where(np.isnan(audio), 0.0, audio).astype(np.float64)
    return np.rint(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int64)


@FUZZ
@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(1, 2**32 - 1),
    audio_arrays(),
    metas,
)
def test_audio_frames_round_trip(
    seq: int, offset: int, rate: int, audio: np.ndarray, meta: dict[str, Any]
) -> None:
    data = encode_audio_frame(seq, offset, rate, audio, meta)
    channels, frames = audio.shape
    meta_len = AUDIO_HEADER.unpack_from(data)[-1]
    assert (AUDIO_HEADER.size + meta_len) % 4 == 0, "the PCM is 4-byte aligned"
    assert len(data) == AUDIO_HEADER.size + meta_len + 2 * channels * frames
    frame = decode_frame(data)
    assert isinstance(frame, AudioFrame)
    assert (frame.seq, frame.offset, frame.sample_rate) == (seq, offset, rate)
    assert (frame.channels, frame.frames) == (channels, frames)
    assert frame.meta == meta
    assert frame.pcm.shape == (channels, frames) and frame.pcm.dtype == np.int16
    # float32 input is scaled in float32 by the encoder: allow that one rounding step.
    tolerance = 0 if audio.dtype == np.float64 else 1
    diff = np.abs(frame.pcm.astype(np.int64) - expected_pcm(audio))
    assert diff.size == 0 or diff.max() <= tolerance


@FUZZ
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), st.binary(max_size=300), metas)
def test_image_frames_round_trip(tile: int, offset: int, png: bytes, meta: dict[str, Any]) -> None:
    frame = decode_frame(encode_image_frame(tile, offset, png, meta))
    assert isinstance(frame, ImageFrame)
    assert (frame.tile, frame.offset, frame.meta, frame.png) == (tile, offset, meta, png)
