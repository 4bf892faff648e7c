"""The Redis layer against a real redis-server: leases, listener counts, records, outages."""

from __future__ import annotations

import asyncio

import pytest

from jam.cluster.record import ClusterSettings, EndEntry, SessionRecord, TextEntry, parse_entry
from jam.cluster.store import Store, StoreUnavailable
from jam.model.types import blend
from jam.stream.controls import Controls
from tests.cluster.redis_server import RedisServer

QUICK = ClusterSettings(lease_ms=300, presence_ms=300)


@pytest.fixture
async def store(redis_server: RedisServer):
    if redis_server.process is None:
        redis_server.start()
    s = Store(redis_server.url, QUICK, block_ms=200)
    await s.redis.flushdb()
    yield s
    await s.close()


def record(sid: str = "s1") -> SessionRecord:
    return SessionRecord(
        sid, "d" * 64, Controls(blend("lofi"), "drone", 0.5, 7.0, 90.0), 3, 8, 1, 1
    )


async def test_one_worker_holds_a_lease_until_it_lapses_then_another_may_take_it(store) -> None:
    assert await store.claim("s1", "w1")
    assert not await store.claim("s1", "w2")
    assert await store.renew("s1", "w1")
    assert not await store.renew("s1", "w2")  # not w2's to renew
    await asyncio.sleep(0.4)  # w1 stopped renewing
    assert await store.owner("s1") is None
    assert await store.claim("s1", "w2")
    assert not await store.renew("s1", "w1")  # w1 comes back: the session is w2's now
    await store.release("s1", "w1")  # releasing what is not yours does nothing
    assert await store.owner("s1") == "w2"
    await store.release("s1", "w2")
    assert await store.owner("s1") is None


async def test_a_lease_that_lapsed_unclaimed_is_taken_back_by_its_owner(store) -> None:
    assert await store.claim("s1", "w1")
    await asyncio.sleep(0.4)  # e.g. Redis was away longer than the lease
    assert await store.renew("s1", "w1")
    assert await store.owner("s1") == "w1"


async def test_listener_counts_add_up_across_edges_and_a_silent_edge_lapses(store) -> None:
    assert await store.set_listeners("s1", "edge-a", 2) == 2
    assert await store.set_listeners("s1", "edge-b", 3) == 5
    assert await store.set_listeners("s1", "edge-a", 0) == 3
    await asyncio.sleep(0.2)
    assert await store.set_listeners("s1", "edge-a", 1) == 4
    await asyncio.sleep(0.15)  # edge-b's count is past its deadline; edge-a's is not
    assert await store.listeners("s1") == 1


async def test_a_record_is_kept_whole_and_ending_a_session_leaves_only_its_last_words(
    store,
) -> None:
    await store.create(record())
    assert await store.sessions() == ["s1"]
    assert await store.load("s1") == record()
    assert await store.update("s1", {"seed": "9"})
    assert (await store.load("s1")).seed == 9
    await store.publish("s1", [TextEntry('{"type":"health"}')], 100)
    await store.send_control("s1", '{"type":"prompt","text":"x"}', "edge-a", 1)
    await store.end("s1", EndEntry(4004, "nobody listened"))
    assert await store.sessions() == [] and await store.load("s1") is None
    assert not await store.update("s1", {"seed": "10"})  # no stub comes back
    assert await store.load("s1") is None
    last = (await store.recent_frames("s1", 5.0))[-1][1]
    assert parse_entry(last, 16000, ("pcm",)) == EndEntry(4004, "nobody listened")
    assert await store.read_controls("s1", "0-0") == []


async def test_a_stopped_redis_is_unavailable_and_a_restarted_one_is_used_again(
    store, redis_server
) -> None:
    await store.create(record("kept"))
    redis_server.stop()
    try:
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await store.load("kept")
        with pytest.raises(StoreUnavailable):
            await store.read_frames("kept", "0-0")
    finally:
        redis_server.start()
    assert await store.load("kept") == record("kept")  # it kept its data (append-only file)


async def test_the_sessions_a_worker_may_claim_are_those_nobody_holds(store) -> None:
    await store.create(record("a"))
    await store.create(record("b"))
    assert await store.unowned() == ["a", "b"]
    assert await store.claim("a", "w1")
    assert await store.unowned() == ["b"]
    await asyncio.sleep(0.4)  # w1's lease lapsed
    assert await store.unowned() == ["a", "b"]
