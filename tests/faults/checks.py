"""After the storm: what the database holds and what reached the far side, compared with
what the senders were told. Plain SQL over the real database, and the fakes' own records.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from posventa.core.persistence import Database
from tests.fakes.smtp_sink import SmtpSink
from tests.faults.harness import RestartableTelegram
from tests.faults.load import EmailCustomers, TelegramCustomers, WebchatVisitors

_ANGLE = re.compile(r"^<(.*)>$")


def bare_id(message_id: str | None) -> str:
    value = (message_id or "").strip()
    m = _ANGLE.match(value)
    return m.group(1) if m else value


async def inbound_counts(db: Database) -> dict[str, collections.Counter[str]]:
    """channel → external_id → how many inbound rows carry it."""
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT channel, external_id, count(*) FROM messages WHERE direction = 'in' "
            "GROUP BY channel, external_id"))).all()
    out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for channel, external_id, count in rows:
        out[channel][external_id] = count
    return out


def assert_stored_exactly_once(counts: dict[str, collections.Counter[str]], *, emails: EmailCustomers | None,
                               visitors: WebchatVisitors | None, telegram: TelegramCustomers | None,
                               context: str) -> dict[str, int]:
    """Every acknowledged message is in ``messages`` once; nothing else came in."""
    stored: dict[str, int] = {}
    for channel, per_id in counts.items():
        twice = {k: v for k, v in per_id.items() if v != 1}
        assert not twice, f"{context}: {channel} messages stored more than once: {list(twice.items())[:5]}"
    if emails is not None:
        in_db = {bare_id(k) for k in counts.get("email", {})}
        acked = {bare_id(k) for k in emails.acked}
        missing = acked - in_db
        assert not missing, f"{context}: {len(missing)} emails answered 250 are not in the database: {sorted(missing)[:5]}"
        assert not emails.unacknowledged, f"{context}: emails never accepted: {emails.unacknowledged[:5]}"
        unknown = in_db - {bare_id(k) for k in emails.sent}
        assert not unknown, f"{context}: emails in the database nobody sent: {sorted(unknown)[:5]}"
        stored["email"] = len(in_db)
    if visitors is not None:
        in_db = {k.rsplit(":", 1)[1] for k in counts.get("webchat", {})}
        acked = set(visitors.acked)
        missing = acked - in_db
        assert not missing, f"{context}: {len(missing)} acked web chat messages are not in the database: {sorted(missing)[:5]}"
        assert not visitors.unacknowledged, f"{context}: web chat messages never acked: {visitors.unacknowledged[:5]}"
        unknown = in_db - set(visitors.written)
        assert not unknown, f"{context}: web chat messages in the database nobody wrote: {sorted(unknown)[:5]}"
        stored["webchat"] = len(in_db)
    if telegram is not None:
        in_db = set(counts.get("telegram", {}))
        expected = telegram.external_ids
        assert in_db == expected, (f"{context}: Telegram messages missing {sorted(expected - in_db)[:5]}, "
                                   f"unexpected {sorted(in_db - expected)[:5]}")
        stored["telegram"] = len(in_db)
    return stored


async def outbox_rows(db: Database, channels: Collection[str]) -> list[dict[str, Any]]:
    names = ", ".join(f"'{c}'" for c in channels)  # our own constants, not input
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text(
            f"SELECT id, channel, recipient, kind, status, attempts, last_error, payload FROM outbox "
            f"WHERE channel IN ({names}) ORDER BY id"))).mappings().all()
    out = []
    for r in rows:
        row = dict(r)
        if isinstance(row["payload"], str):  # raw SQL: SQLite hands JSON back as text
            row["payload"] = json.loads(row["payload"])
        out.append(row)
    return out


async def wait_delivered(db: Database, channels: Collection[str], *, timeout: float, context: str) -> float:
    """Wait until every outbox item of ``channels`` is ``sent``; fail at once on ``failed``.
    Returns how long it took."""
    started = time.monotonic()
    while True:
        rows = await outbox_rows(db, channels)
        failed = [r for r in rows if r["status"] == "failed"]
        assert not failed, f"{context}: deliveries failed for good: {[(r['id'], r['last_error']) for r in failed[:5]]}"
        waiting = [r for r in rows if r["status"] != "sent"]
        if not waiting:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            summary = collections.Counter((r["channel"], r["status"]) for r in waiting)
            raise AssertionError(f"{context}: {len(waiting)} deliveries still pending after {timeout}s: "
                                 f"{dict(summary)}; e.g. {[(r['id'], r['last_error']) for r in waiting[:3]]}")
        await asyncio.sleep(0.3)


@dataclass(frozen=True)
class EmailDelivery:
    items: int
    copies: int          # messages the relay received (a resend after a crash is a second copy)
    distinct: int        # distinct Message-IDs among them

    @property
    def extra_copies(self) -> int:
        return self.copies - self.distinct


def check_email_delivery(rows: list[dict[str, Any]], sink: SmtpSink, *, context: str,
                         acked_inbound: Collection[str] | None = None) -> EmailDelivery:
    """Every email outbox item reached the relay under its own Message-ID, to its own
    recipient; the relay got nothing else. Copies of one Message-ID are the same item."""
    items = {bare_id(r["payload"]["email"]["message_id"]): r for r in rows if r["channel"] == "email"}
    assert len(items) == sum(1 for r in rows if r["channel"] == "email"), f"{context}: two items share a Message-ID"
    seen = collections.Counter()
    for captured in sink.messages:
        mid = bare_id(captured.message["Message-ID"])
        seen[mid] += 1
        item = items.get(mid)
        assert item is not None, f"{context}: the relay got a message that is no outbox item: {mid}"
        assert list(captured.rcpt_tos) == [item["recipient"]], f"{context}: {mid} went to {captured.rcpt_tos}"
    missing = set(items) - set(seen)
    assert not missing, f"{context}: {len(missing)} email outbox items never reached the relay: {sorted(missing)[:5]}"
    # A second copy only ever comes from a second claim (a resend after a crash or an
    # unrecorded outcome), never from one claim sending twice.
    resent = {mid: (n, items[mid]["attempts"]) for mid, n in seen.items() if n > items[mid]["attempts"]}
    assert not resent, f"{context}: more copies than delivery attempts (copies, attempts): {resent}"
    if acked_inbound is not None:
        # One acknowledgement per accepted email (each opens its own case), in reply to it.
        acks = collections.Counter(bare_id(r["payload"]["email"].get("in_reply_to"))
                                   for r in rows if r["channel"] == "email" and r["kind"] == "ack")
        expected = {bare_id(m) for m in acked_inbound}
        assert set(acks) == expected, (f"{context}: acks missing for {sorted(expected - set(acks))[:5]}, "
                                       f"unexpected for {sorted(set(acks) - expected)[:5]}")
        assert all(c == 1 for c in acks.values()), f"{context}: an email was acknowledged twice"
    return EmailDelivery(items=len(items), copies=sum(seen.values()), distinct=len(seen))


def check_telegram_delivery(rows: list[dict[str, Any]], telegram: RestartableTelegram,
                            customers: TelegramCustomers | None, *, context: str) -> int:
    """Every telegram outbox item is sent and Telegram accepted at least that many messages
    for its chat; every customer who wrote got an answer."""
    per_chat = collections.Counter(int(r["recipient"]) for r in rows if r["channel"] == "telegram")
    got = telegram.chat_ids_sent_to()
    short = {chat: (n, got.get(chat, 0)) for chat, n in per_chat.items() if got.get(chat, 0) < n}
    assert not short, f"{context}: Telegram chats got fewer messages than queued (queued, got): {short}"
    if customers is not None:
        wrote = {int(u["message"]["chat"]["id"]) for u in customers.updates}
        silent = wrote - set(got)
        assert not silent, f"{context}: Telegram customers who never got an answer: {sorted(silent)}"
    return sum(per_chat.values())
