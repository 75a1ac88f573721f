"""The token bucket: the one rate limit arithmetic of posventa.

A bucket holds up to ``capacity`` tokens and refills at ``rate`` tokens a second; taking
costs tokens, so a short burst passes and a flood waits. Time is given by the caller
(monotonic seconds), so the bucket has no clock of its own and tests move time by hand.

Used by the web chat's per-session, per-address and per-connection limits
(``intake.webchat.limits.RateLimiter``, many buckets by key) and by the Discourse
client's self-throttle (``kb.discourse.Throttle``, one bucket it waits on). Two other
brakes are not rate limits and keep their own rule: the email auto-reply cap is a
sliding window (N replies per sender within the last hour, exactly), and the console's
login brake doubles a delay per failure.
"""

from __future__ import annotations

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
