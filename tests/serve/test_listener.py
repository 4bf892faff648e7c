"""A listener's bounded queue and the drop/kick policy, driven with plain timestamps."""

from __future__ import annotations

import asyncio
import json

from jam.serve import protocol
from jam.serve.listener import Listener, Outgoing


def audio(seq: int, seconds: float = 0.25) -> Outgoing:
    return Outgoing(bytes([seq]), seconds=seconds, offset=seq, end=seq + 1)


def drain(listener: Listener) -> list[bytes | str]:
    async def take() -> list[bytes | str]:
        return [await listener.next() for _ in range(len(listener))]

    return asyncio.run(take())


def test_a_full_queue_drops_its_oldest_audio_keeps_text_and_says_how_much():
    listener = Listener(1, control=False, max_seconds=1.0, kick_after=8.0)
    listener.offer(Outgoing(protocol.encode_message("state", state={})), now=0.0)
    for seq in range(6):  # 1.5 s of audio into a 1 s queue
        listener.offer(audio(seq), now=0.1 * seq)
    frames = drain(listener)
    kept_audio = [f[0] for f in frames if isinstance(f, bytes)]
    assert kept_audio == [2, 3, 4, 5]
    texts = [json.loads(f) for f in frames if isinstance(f, str)]
    assert texts[0]["type"] == "state", "control messages survive a drop"
    dropped = [t for t in texts if t["type"] == "dropped"]
    assert [d["count"] for d in dropped] == [1, 1] and dropped[-1]["total"] == 2
    assert listener.dropped == 2 and not listener.closed.is_set()


def test_a_listener_that_keeps_dropping_for_kick_after_seconds_is_closed_too_slow():
    listener = Listener(1, control=False, max_seconds=1.0, kick_after=2.0)
    for seq in range(4):
        listener.offer(audio(seq), now=0.0)
    listener.offer(audio(4), now=10.0)  # first drop: the clock of being behind starts
    assert not listener.closed.is_set()
    listener.offer(audio(5), now=11.9)
    assert not listener.closed.is_set()
    listener.offer(audio(6), now=12.0)
    assert listener.closed.is_set() and listener.close_code == protocol.CLOSE_TOO_SLOW


def test_catching_up_below_half_the_queue_forgives_earlier_drops():
    listener = Listener(1, control=False, max_seconds=1.0, kick_after=2.0)
    for seq in range(5):
        listener.offer(audio(seq), now=0.0)  # drops once at t=0
    assert listener.behind_since == 0.0
    drain(listener)  # the client read everything
    assert listener.behind_since is None
    for seq in range(5):
        listener.offer(audio(seq), now=5.0)  # behind again, a fresh window from t=5
    assert not listener.closed.is_set() and listener.behind_since == 5.0
