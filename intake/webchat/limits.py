"""Rate limits for the web chat: token buckets (``core.rate_limit.RateLimiter``) keyed by
session, IP or connection.

A bucket holds ``capacity`` tokens and refills at ``per_minute / 60`` tokens a second, so
a visitor may send a short burst (a queue flushed after a reconnect) but not a flood.
The clock is injected (monotonic seconds) so tests move time by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from posventa.core.rate_limit import RateLimiter

Monotonic = Callable[[], float]


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
