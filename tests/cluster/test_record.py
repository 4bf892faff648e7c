"""What the cluster keeps in Redis, in and out of its wire shape (pure)."""

from __future__ import annotations

import pytest

from jam.cluster.record import (
    AudioEntry,
    ClockEntry,
    EndEntry,
    Grid,
    ImageEntry,
    SessionRecord,
    TextEntry,
    entry_fields,
    parse_entry,
)
from jam.model.types import blend
from jam.serve.listener import Outgoing
from jam.stream.controls import Controls


def raw(fields: dict[str, bytes | str]) -> dict[bytes, bytes]:
    """As redis-py hands back a hash or stream entry: bytes both sides."""
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()}


def test_a_session_record_round_trips_with_its_blend_tempo_clock_and_grid() -> None:
    controls = Controls(blend(("lofi piano", 0.7), ("rain", 0.3)), "shuffle", 0.6, 5.5, 101.5, 8)
    record = SessionRecord(
        "sid", "ab" * 32, controls, 41, 12, 1.5, 2.5, 1.7e9, Grid(35700, 5100.0), "17-3"
    )
    assert SessionRecord.parse("sid", raw(record.fields())) == record
    fresh = SessionRecord("sid", "cd" * 32, controls, 1, 8, 1.0, 1.0)
    assert SessionRecord.parse("sid", raw(fresh.fields())) == fresh  # no clock, no grid yet


def test_a_record_missing_a_field_is_refused() -> None:
    fields = SessionRecord("s", "t", Controls(blend("x"), "drone", 0.5, 7.0, 90.0), 1, 8, 1, 1)
    broken = raw(fields.fields())
    del broken[b"controls"]
    with pytest.raises(KeyError):
        SessionRecord.parse("s", broken)


def test_every_frame_stream_entry_round_trips() -> None:
    audio = AudioEntry(
        {
            "pcm": Outgoing(b"JAMA...", 0.25, 4000, 8000),
            "opus": Outgoing(b"JAMO...", 0.24, 3840, 7680),
        },
        splice=4000,
    )
    entries = [
        audio,
        AudioEntry({"pcm": Outgoing(b"JAMA", 0.25, 0, 4000)}, None),
        ImageEntry(Outgoing(b"JAMI png", offset=35700, end=35700)),
        TextEntry('{"type":"state"}'),
        TextEntry('{"type":"error"}', controllers=True),
        TextEntry('{"type":"error"}', edge="edge-a", listener=7),
        ClockEntry(1.7e9 + 0.125),
        ClockEntry(None),
        EndEntry(4004, "nobody listened"),
    ]
    for entry in entries:
        back = parse_entry(raw(entry_fields(entry)), 16000, ("opus", "pcm"))
        assert back == entry


def test_an_unknown_or_incomplete_entry_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown frame stream entry kind"):
        parse_entry(raw({"k": "z"}), 16000, ("pcm",))
    only_opus = entry_fields(AudioEntry({"opus": Outgoing(b"x", 0.1, 0, 10)}, None))
    with pytest.raises(ValueError, match="without its PCM"):
        parse_entry(raw(only_opus), 16000, ("opus", "pcm"))


def test_the_next_beat_of_a_grid_is_at_or_after_the_sample_asked() -> None:
    grid = Grid(origin=35700, beat=5100.0)
    assert grid.next_beat(35700) == 35700
    assert grid.next_beat(35701) == 40800
    assert grid.next_beat(0) == 35700 - 7 * 5100  # before the origin, the grid goes on
    odd = Grid(origin=0, beat=4593.75)  # a beat that is not a whole number of samples
    assert [odd.next_beat(n) for n in (1, 4594, 9187)] == [4594, 9188, 9188]
