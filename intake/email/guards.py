"""Loop guards: named checks that run on every inbound email before routing.

An auto-reply to an auto-reply is how two robots mail each other forever. Every check
here answers one question, "may anything automatic go back to this sender?", and names
its reason so the case history can say why we stayed quiet. The message itself is
always stored; only automatic answers (acknowledgements, surveys, KB suggestions) are
suppressed. Agents can still reply by hand.

Order matters only for the reported reason: the cheapest, most certain signals first, and
the per-sender rate window last, so that it only spends a slot on mail that passed
everything else.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass

from posventa.intake.email.parse import ParsedEmail

__all__ = ["LoopVerdict", "SenderRateWindow", "loop_guard"]

#: RFC 2076 / common practice: mail sent to many, where an auto-reply is never wanted.
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list"})


@dataclass(frozen=True, slots=True)
class LoopVerdict:
    auto_reply_allowed: bool
    #: One of "bounce", "from-self", "auto-submitted", "x-autoreply", "precedence-bulk",
    #: "list-id", "sender-rate"; None when allowed.
    reason: str | None = None


class SenderRateWindow:
    """At most ``max_per_window`` auto-replies per sender per sliding window (Zammad-style).

    The last line of defence against a loop that none of the header checks catch (a
    robot that sets no headers). Memory is bounded: at most ``max_senders`` senders are
    tracked; idle ones are forgotten first.
    """

    def __init__(
        self,
        *,
        max_per_window: int = 10,
        window_seconds: float = 3600,
        clock: Callable[[], float] = time.monotonic,
        max_senders: int = 100_000,
    ) -> None:
        if max_per_window < 1 or window_seconds <= 0 or max_senders < 1:
            raise ValueError("SenderRateWindow needs max_per_window >= 1, window_seconds > 0, max_senders >= 1")
        self._max = max_per_window
        self._window = window_seconds
        self._clock = clock
        self._max_senders = max_senders
        self._sent: dict[str, deque[float]] = {}

    def allow(self, sender: str) -> bool:
        """True (and the slot is taken) when ``sender`` may get another auto-reply now."""
        now = self._clock()
        key = sender.strip().lower()
        stamps = self._sent.pop(key, None) or deque()
        while stamps and stamps[0] <= now - self._window:
            stamps.popleft()
        allowed = len(stamps) < self._max
        if allowed:
            stamps.append(now)
        if stamps:
            self._sent[key] = stamps  # re-inserted last: dict order is recency order
            self._evict()
        return allowed

    def _evict(self) -> None:
        while len(self._sent) > self._max_senders:
            oldest = next(iter(self._sent))
            del self._sent[oldest]


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().lower().rstrip(".")


def _base_address(address: str) -> str:
    """``Support+Token@Example.com`` → ``support@example.com`` (our reply addresses)."""
    local, _, domain = address.strip().strip("<>").lower().rpartition("@")
    return f"{local.partition('+')[0]}@{domain}" if local else ""


def _from_self(parsed: ParsedEmail, envelope_from: str, own_addresses: Collection[str], own_domains: Collection[str]) -> bool:
    addresses = {_base_address(a) for a in own_addresses if a}
    domains = {d.strip().lower().rstrip(".") for d in own_domains if d}
    for sender in (parsed.from_address, envelope_from):
        if sender and (_base_address(sender) in addresses or _domain(sender) in domains):
            return True
    # Our own outbound mail coming back (a forwarding rule pointing at us): its
    # Message-ID carries our domain.
    return bool(parsed.message_id and _domain(parsed.message_id.strip("<>")) in domains)


def loop_guard(
    parsed: ParsedEmail,
    *,
    envelope_from: str,
    own_addresses: Collection[str],
    own_domains: Collection[str],
    rate: SenderRateWindow | None = None,
) -> LoopVerdict:
    """Decide whether anything automatic may be sent back for ``parsed``.

    ``envelope_from`` is the SMTP ``MAIL FROM`` (empty for bounces, RFC 5321 §4.5.5).
    ``own_addresses``/``own_domains`` are the support addresses and domains we receive
    for. ``rate``, when given, is consulted last and only for otherwise-allowed mail.
    """
    envelope = envelope_from.strip().strip("<>").strip()
    if not envelope or parsed.is_bounce:
        return LoopVerdict(False, "bounce")
    if _from_self(parsed, envelope, own_addresses, own_domains):
        return LoopVerdict(False, "from-self")
    if parsed.auto_submitted and parsed.auto_submitted.split(";")[0].strip() != "no":
        return LoopVerdict(False, "auto-submitted")
    if parsed.x_autoreply:
        return LoopVerdict(False, "x-autoreply")
    if parsed.precedence in _BULK_PRECEDENCE:
        return LoopVerdict(False, "precedence-bulk")
    if parsed.list_id:
        return LoopVerdict(False, "list-id")
    if rate is not None and not rate.allow(parsed.from_address or envelope):
        return LoopVerdict(False, "sender-rate")
    return LoopVerdict(True, None)
