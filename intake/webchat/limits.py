"""Rate limits for the web chat: token buckets (``core.rate_limit``) keyed by session,
IP or connection.

A bucket holds ``capacity`` tokens and refills at ``per_minute / 60`` tokens a second, so
a visitor may send a short burst (a queue flushed after a reconnect) but not a flood.
The clock is injected (monotonic seconds) so tests move time by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from posventa.core.rate_limit import TokenBucket

Monotonic = Callable[[], float]


class RateLimiter:
    """``allow(key)`` spends one token or answers how long to wait.

    Memory is bounded: at most ``max_keys`` buckets; when full, buckets that have
    refilled completely (they carry no information) are dropped first, and if that is
    not enough the oldest half goes.
    """

    def __init__(self, *, per_minute: float, capacity: float | None = None, clock: Monotonic = time.monotonic,
                 max_keys: int = 100_000) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self._per_minute = per_minute
        self._capacity = float(capacity if capacity is not None else per_minute)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, key: str, cost: float = 1.0) -> float:
        """0.0 when allowed (the token is spent), else the seconds until it would be."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._prune(now)
            bucket = self._buckets[key] = TokenBucket.full(per_minute=self._per_minute, capacity=self._capacity,
                                                           now=now)
        return bucket.take(now, cost)

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.is_full(now)]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self._max_keys:
            oldest = sorted(self._buckets, key=lambda k: self._buckets[k].updated)[: len(self._buckets) // 2]
            for k in oldest:
                del self._buckets[k]


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """The numbers, from ``[webchat]``."""

    messages_per_minute_per_session: int
    messages_per_minute_per_ip: int
    new_sessions_per_minute_per_ip: int
    frames_per_second_per_connection: int


class Limits:
    """Every limit the web chat applies, sharing one clock."""

    def __init__(self, settings: LimitSettings, *, clock: Monotonic = time.monotonic) -> None:
        self.session = RateLimiter(per_minute=settings.messages_per_minute_per_session, clock=clock)
        self.ip = RateLimiter(per_minute=settings.messages_per_minute_per_ip, clock=clock)
        self.new_session = RateLimiter(per_minute=settings.new_sessions_per_minute_per_ip, clock=clock)
        # Any frame at all (junk included) costs a token here, so garbage is cheap to refuse.
        fps = settings.frames_per_second_per_connection
        self.frames = RateLimiter(per_minute=fps * 60, capacity=fps * 2, clock=clock)
        self.clock = clock

    def message(self, session_key: str, ip: str) -> float:
        """A customer message or choice: both the session's and the IP's budget."""
        wait = self.session.allow(session_key)
        if wait:
            return wait
        return self.ip.allow(ip)
