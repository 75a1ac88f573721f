"""The one seam to python-telegram-bot: building the ``Bot``, checking the token, fetching
raw updates, and translating PTB's errors into ours.

Nothing else in posventa talks to the Bot API library's error classes or request objects.
"""

from __future__ import annotations

import datetime as dtm
import logging
from collections.abc import Sequence
from typing import Any

from telegram import Bot
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

from posventa.core.config import TelegramConfig
from posventa.core.errors import ConfigError, DeliveryError, PermanentDeliveryError, TransientDeliveryError

log = logging.getLogger(__name__)

#: The update kinds we ask for; Telegram never even creates the others for us.
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")

#: Extra seconds a long poll may take on the wire beyond its ``timeout``.
POLL_GRACE_SECONDS = 10.0


class RetryLater(Exception):
    """An update could not be handled *yet* (a download timed out, Telegram said 429):
    leave it unconfirmed so it is fetched, or redelivered, again."""


def make_bot(config: TelegramConfig) -> Bot:
    """A ``Bot`` pointed at ``[telegram] api_base_url`` (Telegram, a self-hosted server, a fake).

    Long polls get their own connection pool so a poll held open for ``poll_timeout_seconds``
    never delays a send.
    """
    root = config.api_base_url.rstrip("/")
    return Bot(
        token=config.token,
        base_url=f"{root}/bot",
        base_file_url=f"{root}/file/bot",
        request=HTTPXRequest(connection_pool_size=64, read_timeout=15.0, write_timeout=30.0,
                             connect_timeout=10.0, pool_timeout=5.0),
        get_updates_request=HTTPXRequest(connection_pool_size=2, read_timeout=POLL_GRACE_SECONDS,
                                         connect_timeout=10.0, pool_timeout=5.0),
    )


async def connect(bot: Bot, *, source: str) -> None:
    """``getMe``: proves the token before anything else runs.

    PTB's own InvalidToken message quotes the token, so it is replaced, never chained into
    a traceback or a log line.
    """
    try:
        await bot.initialize()
    except InvalidToken:
        raise ConfigError("the Bot API server rejected telegram.token (getMe answered Unauthorized); "
                          "check the token from @BotFather", key="telegram.token", file=source) from None


async def fetch_updates(bot: Bot, *, offset: int | None, timeout: float, limit: int = 100) -> list[dict[str, Any]]:
    """``getUpdates`` as raw JSON objects.

    ``Bot.get_updates`` parses the whole list at once, so one update PTB cannot parse would
    fail every poll forever; raw dicts let the caller parse (and skip) them one by one.
    Passing ``offset`` is what confirms every earlier update upstream.
    """
    data: dict[str, Any] = {"timeout": int(timeout), "limit": limit, "allowed_updates": list(ALLOWED_UPDATES)}
    if offset is not None:
        data["offset"] = offset
    # Bot._post is PTB's single request seam (what every Bot method calls); do_api_request
    # would warn that getUpdates has a method of its own.
    result = await bot._post("getUpdates", data, read_timeout=timeout + POLL_GRACE_SECONDS)  # noqa: SLF001
    if not isinstance(result, list):
        return []
    return [u for u in result if isinstance(u, dict) and isinstance(u.get("update_id"), int)]


def retry_after_seconds(exc: RetryAfter) -> float:
    """Seconds to wait, without touching the deprecated int form of ``RetryAfter.retry_after``.

    PTB 22 keeps the value as a timedelta in ``_retry_after``; the public property warns
    unless PTB_TIMEDELTA is set (our package sets it, but a user's environment may not).
    """
    value = getattr(exc, "_retry_after", None)
    if isinstance(value, dtm.timedelta):
        return max(0.0, value.total_seconds())
    value = exc.retry_after
    if isinstance(value, dtm.timedelta):
        return max(0.0, value.total_seconds())
    return max(0.0, float(value))


def _says(exc: BaseException, *phrases: str) -> bool:
    # PTB rewords Telegram's descriptions (capitalisation, prefixes): match loosely.
    message = str(exc).lower()
    return any(p in message for p in phrases)


def is_unreachable(exc: BaseException) -> bool:
    """The recipient can never be written to again this way (blocked, deleted, unknown chat)."""
    if isinstance(exc, Forbidden):
        return True
    return isinstance(exc, BadRequest) and _says(exc, "chat not found", "user not found", "peer_id_invalid",
                                                  "user is deactivated")


def delivery_error(exc: TelegramError, *, what: str) -> DeliveryError:
    """Translate a PTB error from a send into the outbox's transient/permanent split.

    Order matters: BadRequest and TimedOut are NetworkError subclasses in PTB.
    """
    if isinstance(exc, RetryAfter):
        return TransientDeliveryError(f"{what}: Telegram flood control", retry_after=retry_after_seconds(exc))
    if isinstance(exc, Forbidden):
        return PermanentDeliveryError(f"{what}: {exc}", unreachable=True)
    if isinstance(exc, ChatMigrated):
        return PermanentDeliveryError(f"{what}: the chat became supergroup {exc.new_chat_id}; update the config")
    if isinstance(exc, BadRequest):
        return PermanentDeliveryError(f"{what}: {exc}", unreachable=is_unreachable(exc))
    if isinstance(exc, InvalidToken | EndPointNotFound):
        # A revoked token is an operator problem: keep the deliveries until it is fixed.
        return TransientDeliveryError(f"{what}: the Bot API server rejected the token", retry_after=60.0)
    if isinstance(exc, Conflict):
        return TransientDeliveryError(f"{what}: {exc}")
    if isinstance(exc, TimedOut | NetworkError):
        return TransientDeliveryError(f"{what}: network error ({type(exc).__name__})")
    return TransientDeliveryError(f"{what}: {type(exc).__name__}: {exc}")


def describe(exc: BaseException) -> str:
    """A short, token-free description for logs."""
    if isinstance(exc, InvalidToken):
        return "the Bot API server rejected the token"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def chunk_text(text: str, limit: int = 4096) -> Sequence[str]:
    """Split a long text into Telegram-sized parts, preferring line, then word boundaries.

    The limit counts characters after entity parsing, so split the raw text and escape
    each part afterwards.
    """
    text = text.strip() or "…"
    parts: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = text.rfind(" ", 0, limit)
        if cut < limit // 2:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        parts.append(text)
    return parts
