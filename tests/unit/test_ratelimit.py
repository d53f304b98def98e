"""Token buckets: a burst, then the rate; the wait a refused request is told; idle callers
forgotten."""

from __future__ import annotations

from shared.ratelimit import Buckets, Limit


def test_a_burst_then_the_rate() -> None:
    buckets = Buckets(Limit(rate=2, burst=3))
    assert [buckets.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = buckets.take("a", now=0.0)
    assert wait == 0.5  # one token comes back every half second
    assert buckets.take("b", now=0.0) == 0.0  # another caller is not affected
    assert buckets.take("a", now=0.5) == 0.0
    assert buckets.take("a", now=0.5) > 0


def test_a_caller_that_keeps_flooding_stays_limited_to_the_rate() -> None:
    buckets = Buckets(Limit(rate=10, burst=10))
    admitted = sum(buckets.take("flood", now=i / 1000) == 0.0 for i in range(10_000))
    assert 100 <= admitted <= 110  # 10 s at 10/s, plus the burst


def test_idle_full_buckets_are_forgotten() -> None:
    buckets = Buckets(Limit(rate=100, burst=10), max_keys=1000)
    for i in range(1000):
        buckets.take(f"k{i}", now=0.0)
    buckets.take("late", now=10.0)  # over max_keys: the idle ones are dropped
    assert len(buckets) == 1
