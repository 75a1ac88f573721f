"""The one token bucket (core.rate_limit) and its keyed limiter, driven by the time the test gives it."""

from __future__ import annotations

import pytest

from posventa.core.rate_limit import RateLimiter, TokenBucket


def test_a_full_bucket_lets_a_burst_through_then_says_how_long_to_wait():
    bucket = TokenBucket.full(per_minute=6, capacity=3, now=100.0)  # a token every 10 s
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(10.0)
    assert bucket.take(105.0) == pytest.approx(5.0)  # asking does not spend
    assert bucket.take(110.0) == 0.0
    assert bucket.take(110.0, cost=2) == pytest.approx(20.0)


def test_refill_stops_at_capacity_and_a_full_bucket_says_so():
    bucket = TokenBucket.full(per_minute=60, capacity=2, now=0.0)
    bucket.take(0.0)
    assert not bucket.is_full(0.5) and bucket.is_full(1.0)
    bucket.refill(1_000.0)
    assert bucket.tokens == 2.0


def test_float_rounding_never_leaves_a_bucket_just_short_of_a_token():
    bucket = TokenBucket.full(per_minute=50, capacity=1, now=0.0)
    bucket.take(0.0)
    # 1.2 s at 50/min is one token, give or take the last bit of a float.
    assert bucket.take(0.1 + 0.2 + 0.9) == 0.0 and bucket.tokens >= 0.0


def test_emptied_until_a_moment_it_refills_only_from_then():
    bucket = TokenBucket.full(per_minute=60, capacity=5, now=0.0)
    bucket.empty_until(30.0)
    assert bucket.take(10.0) == pytest.approx(1.0)  # still nothing: refilling starts at 30
    assert bucket.take(31.0) == 0.0


@pytest.mark.parametrize(("per_minute", "capacity"), [(0, 1), (-1, 1), (60, 0)])
def test_nonsense_rates_are_refused(per_minute, capacity):
    with pytest.raises(ValueError):
        TokenBucket.full(per_minute=per_minute, capacity=capacity, now=0.0)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_keyed_buckets_allow_a_burst_then_refill_at_the_rate():
    clock = Clock()
    limiter = RateLimiter(per_minute=6, clock=clock)  # one token every 10 s, burst of 6
    assert [limiter.allow("a") for _ in range(6)] == [0.0] * 6
    wait = limiter.allow("a")
    assert wait == pytest.approx(10.0)
    assert limiter.allow("b") == 0.0  # keys are independent
    clock.t += 9.9
    assert limiter.allow("a") > 0
    clock.t += 0.2
    assert limiter.allow("a") == 0.0
    clock.t += 3600
    assert [limiter.allow("a") for _ in range(7)].count(0.0) == 6  # never more than the burst


def test_keyed_buckets_memory_is_bounded():
    clock = Clock()
    limiter = RateLimiter(per_minute=60, clock=clock, max_keys=100)
    for i in range(1000):
        limiter.allow(f"k{i}")
        clock.t += 0.001
    assert len(limiter) <= 100
    limiter.forget("k999")
    assert "k999" not in limiter


def test_one_token_a_key_is_once_per_interval_and_refusals_do_not_spend_it():
    """The Telegram desk's one refusal per stranger per ten minutes."""
    clock = Clock()
    once = RateLimiter(per_minute=60 / 600, capacity=1, clock=clock, max_keys=10)
    assert once.allow(42) == 0.0
    clock.t += 599
    assert once.allow(42) == pytest.approx(1.0)  # asking again does not restart the ten minutes
    assert once.allow(7) == 0.0  # another person
    clock.t += 1
    assert once.allow(42) == 0.0
    assert once.allow(42) > 0


def test_a_limiter_refuses_a_nonsense_rate():
    with pytest.raises(ValueError):
        RateLimiter(per_minute=0)

