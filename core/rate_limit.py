"""The token bucket: the one rate limit arithmetic of posventa.

A bucket holds up to ``capacity`` tokens and refills at ``rate`` tokens a second; taking
costs tokens, so a short burst passes and a flood waits. Time is given by the caller
(monotonic seconds), so the bucket has no clock of its own and tests move time by hand.
``RateLimiter`` keeps one bucket per key (a session, an address, a person) in bounded
memory, on a clock it is given.

Used by the web chat's per-session, per-address and per-connection limits
(``intake.webchat.limits.Limits``, ``RateLimiter``s), the Telegram desk's one refusal per
stranger per ten minutes (``bots.telegram.desk``, a ``RateLimiter`` of one token) and the
Discourse client's self-throttle (``kb.discourse.Throttle``, one bucket it waits on). Two
other brakes are not rate limits and keep their own rule: the email auto-reply cap is a
sliding window (N replies per sender within the last hour, exactly), and the console's
login brake doubles a delay per failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

#: Float rounding must not leave a bucket at 0.99999… tokens, waiting for less than the
#: clock's resolution forever.
_ROUNDING = 1e-9


@dataclass(slots=True)
class TokenBucket:
    capacity: float
    #: Tokens a second.
    rate: float
    tokens: float
    #: When ``tokens`` was last brought up to date (monotonic seconds).
    updated: float

    @classmethod
    def full(cls, *, per_minute: float, capacity: float, now: float) -> TokenBucket:
        if per_minute <= 0 or capacity <= 0:
            raise ValueError("a token bucket needs a positive rate and capacity")
        return cls(capacity=float(capacity), rate=per_minute / 60.0, tokens=float(capacity), updated=now)

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float, cost: float = 1.0) -> float:
        """0.0 when ``cost`` tokens were taken, else the seconds until they would be."""
        self.refill(now)
        if self.tokens >= cost - _ROUNDING:
            self.tokens = max(0.0, self.tokens - cost)
            return 0.0
        return (cost - self.tokens) / self.rate

    def is_full(self, now: float) -> bool:
        """True once refilled to capacity: such a bucket carries no information."""
        return self.tokens + max(0.0, now - self.updated) * self.rate >= self.capacity

    def empty_until(self, moment: float) -> None:
        """No token before ``moment`` (a server told us to wait), refilling from then on."""
        self.tokens = 0.0
        self.updated = max(self.updated, moment)


class RateLimiter:
    """``allow(key)`` spends one token of ``key``'s bucket or answers how long to wait.

    Every key has a bucket of ``capacity`` tokens (``per_minute`` unless given) refilled
    at ``per_minute``. Memory is bounded: at most ``max_keys`` buckets; when full, buckets
    that have refilled completely (they carry no information) are dropped first, and if
    that is not enough the oldest half goes.
    """

    def __init__(self, *, per_minute: float, capacity: float | None = None,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self._per_minute = per_minute
        self._capacity = float(capacity if capacity is not None else per_minute)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[Hashable, TokenBucket] = {}

    def allow(self, key: Hashable, cost: float = 1.0) -> float:
        """0.0 when allowed (the token is spent), else the seconds until it would be."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._prune(now)
            bucket = self._buckets[key] = TokenBucket.full(per_minute=self._per_minute, capacity=self._capacity,
                                                           now=now)
        return bucket.take(now, cost)

    def forget(self, key: Hashable) -> None:
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._buckets

    def _prune(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.is_full(now)]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self._max_keys:
            oldest = sorted(self._buckets, key=lambda k: self._buckets[k].updated)[: len(self._buckets) // 2]
            for k in oldest:
                del self._buckets[k]
