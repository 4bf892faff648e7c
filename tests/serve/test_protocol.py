"""The wire format: client message validation, limits, and binary frame round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jam.model.types import blend
from jam.serve import protocol
from jam.serve.protocol import ProtocolError, parse_client_message


def test_parse_accepts_each_client_message_type() -> None:
    assert parse_client_message('{"type":"create"}') == protocol.Create()
    assert parse_client_message('{"type":"create","prompt":"a","seed_image":"b"}') == (
        protocol.Create("a", "b")
    )
    assert parse_client_message('{"type":"join","session":"x1","token":"t"}') == (
        protocol.Join("x1", "t")
    )
    assert parse_client_message('{"type":"prompt","text":"  lofi \\n beats "}') == (
        protocol.SetPrompt("lofi beats")
    )
    assert parse_client_message('{"type":"seed_image","name":"og_beat"}') == (
        protocol.SetSeedImage("og_beat")
    )
    assert parse_client_message('{"type":"strength","value":0.5}') == protocol.SetStrength(0.5)
    assert parse_client_message('{"type":"guidance","value":7}') == protocol.SetGuidance(7.0)
    assert parse_client_message('{"type":"bpm","value":120}') == protocol.SetBpm(120.0)
    assert parse_client_message('{"type":"glide","value":3.6}') == protocol.SetGlide(4)
    blended = parse_client_message(
        '{"type":"prompts","prompts":[{"text":"lofi","weight":0.3},{"text":"jazz","weight":0.9}]}'
    )
    assert blended == protocol.SetPrompts(blend(("jazz", 0.75), ("lofi", 0.25)))


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('{"text": "no type"}', "bad_type"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "prompt"}', "bad_field"),
        ('{"type": "prompt", "text": "   "}', "bad_field"),
        ('{"type": "prompt", "text": 5}', "bad_field"),
        ('{"type": "strength", "value": "high"}', "bad_field"),
        ('{"type": "strength", "value": true}', "bad_field"),
        ('{"type": "strength", "value": 1.5}', "out_of_range"),
        ('{"type": "strength", "value": NaN}', "bad_field"),
        ('{"type": "join"}', "bad_field"),
        ('{"type": "bpm", "value": 59}', "out_of_range"),
        ('{"type": "bpm", "value": 181}', "out_of_range"),
        ('{"type": "glide", "value": 17}', "out_of_range"),
        ('{"type": "prompts", "prompts": []}', "bad_field"),
        ('{"type": "prompts", "prompts": "lofi"}', "bad_field"),
        ('{"type": "prompts", "prompts": ["lofi"]}', "bad_field"),
        ('{"type": "prompts", "prompts": [{"text": "a", "weight": 2}]}', "out_of_range"),
        ('{"type": "prompts", "prompts": [{"text": "a", "weight": 0}]}', "bad_value"),
        ('{"type": "prompts", "prompts": [{"text": "", "weight": 1}]}', "bad_field"),
        (
            json.dumps({"type": "prompts", "prompts": [{"text": "p", "weight": 1}] * 5}),
            "bad_field",
        ),
        (b"\x00\x01", "binary_not_accepted"),
    ],
)
def test_parse_rejects_malformed_messages_with_a_code(raw: str | bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as e:
        parse_client_message(raw)
    assert e.value.code == code
    assert e.value.message


def test_parse_enforces_prompt_length_and_message_size_limits() -> None:
    long_prompt = "x" * (protocol.MAX_PROMPT_CHARS + 1)
    with pytest.raises(ProtocolError) as e:
        parse_client_message(json.dumps({"type": "prompt", "text": long_prompt}))
    assert e.value.code == "too_long"
    padded = json.dumps({"type": "prompt", "text": "ok", "pad": "y" * protocol.MAX_MESSAGE_BYTES})
    with pytest.raises(ProtocolError) as e:
        parse_client_message(padded)
    assert e.value.code == "too_large"


def test_text_loses_surrogates_control_and_bidi_characters_before_anyone_sees_it() -> None:
    raw = '{"type":"prompt","text":"lo\\ud800fi \\u202ebeats\\u0007 \\u2066ok\\u2069\\tnow"}'
    assert parse_client_message(raw) == protocol.SetPrompt("lofi beats ok now")
    with pytest.raises(ProtocolError) as e:  # nothing left once cleaned
        parse_client_message('{"type":"prompt","text":"\\ud800\\u202e"}')
    assert e.value.code == "bad_field"


def test_a_number_beyond_float_range_is_a_bad_field_not_a_crash() -> None:
    with pytest.raises(ProtocolError) as e:
        parse_client_message('{"type":"strength","value":1' + "0" * 309 + "}")
    assert e.value.code == "bad_field"


def test_audio_frame_round_trips_pcm_and_metadata() -> None:
    rng = np.random.default_rng(0)
    audio = rng.uniform(-1, 1, size=(2, 1001)).astype(np.float32)
    audio[0, 0], audio[1, 0] = 1.5, -1.5  # clipped, not wrapped
    meta = {"prompt": "ünïcode ✓", "alpha": 0.25}
    frame = protocol.encode_audio_frame(7, 123456789012, 16000, audio, meta)
    assert frame[:4] == b"JAMA"
    decoded = protocol.decode_frame(frame)
    assert isinstance(decoded, protocol.AudioFrame)
    assert (decoded.seq, decoded.offset, decoded.sample_rate) == (7, 123456789012, 16000)
    assert (decoded.channels, decoded.frames) == (2, 1001)
    assert decoded.meta == meta
    expected = np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)
    np.testing.assert_array_equal(decoded.pcm, expected)
    # the PCM starts 4-byte aligned so browsers can view it as an Int16Array in place
    meta_len = int.from_bytes(frame[28:32], "little")
    assert (protocol.AUDIO_HEADER.size + meta_len) % 4 == 0


def test_image_frame_round_trips_png_bytes() -> None:
    png = b"\x89PNG\r\n\x1a\nfake"
    frame = protocol.encode_image_frame(3, 4096, png, {"tile": 3})
    decoded = protocol.decode_frame(frame)
    assert isinstance(decoded, protocol.ImageFrame)
    assert (decoded.tile, decoded.offset, decoded.meta, decoded.png) == (3, 4096, {"tile": 3}, png)


def test_decode_rejects_unknown_magic() -> None:
    with pytest.raises(ValueError, match="magic"):
        protocol.decode_frame(b"NOPE" + bytes(40))


def test_held_audio_applies_a_splice_from_its_offset_and_appends_what_follows() -> None:
    held = protocol.HeldAudio(1)
    held.write(100, np.ones((1, 50), np.float32))
    held.write(150, np.ones((1, 50), np.float32))
    held.write(130, np.full((1, 40), 2.0, np.float32), splice=True)  # replaces 130..
    held.write(170, np.full((1, 10), 3.0, np.float32))
    assert (held.start, held.end, held.splices) == (100, 180, 1)
    np.testing.assert_array_equal(held.audio[0], [1.0] * 30 + [2.0] * 40 + [3.0] * 10)
    held.write(200, np.ones((1, 5), np.float32))  # dropped frames: silence in their place
    assert held.end == 205 and held.audio[0, 80:100].max() == 0
    with pytest.raises(ValueError):
        held.write(50, np.ones((1, 5), np.float32))
