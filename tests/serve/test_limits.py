"""Rate limits with plain timestamps: session changes, and one connection's traffic."""

from __future__ import annotations

import pytest

from jam.serve.limits import RateLimit, TokenBucket, TrafficLimits


def test_rate_limit_allows_a_burst_then_refuses_until_the_window_passes() -> None:
    limit = RateLimit(count=3, window=10.0)
    assert [limit.allow(t) for t in (0.0, 1.0, 2.0, 3.0)] == [True, True, True, False]
    assert limit.retry_after(3.0) == pytest.approx(7.0)
    assert limit.allow(10.5) is True


def test_a_connection_may_burst_then_only_send_at_its_rates() -> None:
    limits = TrafficLimits(messages_per_second=10, message_burst=5, byte_burst=1000)
    bucket = TokenBucket(limits, now=0.0)
    assert [bucket.take(10, now=0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(10, now=0.05) is False  # half a message refilled
    assert bucket.take(10, now=0.1) is True
    assert TokenBucket(limits, now=0.0).take(1001, now=0.0) is False  # bytes count too


def test_steady_traffic_below_the_rates_is_never_refused() -> None:
    bucket = TokenBucket(TrafficLimits(), now=0.0)
    assert all(bucket.take(200, now=0.2 * i) for i in range(1000))  # 5 msg/s of 200 bytes
