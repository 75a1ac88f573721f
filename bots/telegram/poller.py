"""At-least-once long polling around ``getUpdates``.

python-telegram-bot's ``Updater`` confirms an update (by asking for the next offset)
before handlers have stored it, so a crash there loses it. This loop inverts the order:

    fetch(offset) → handle(updates) → only then offset = last update_id + 1

and the new offset travels upstream with the *next* ``getUpdates``. A crash anywhere
before that call means Telegram sends the same updates again, and every handler dedupes
(customer messages on ``chat:message``, callbacks on the query id, everything else in
``processed_events``), so after a restart each update is stored exactly once.

When handling fails for a reason that may pass (the database is down, a file download
timed out) the offset stays put and the same batch is fetched again after a backoff.

Which process may poll is a question for ``leader`` (an injectable async predicate): with
several ``serve`` processes on PostgreSQL only the lease holder should call getUpdates,
or Telegram answers 409 Conflict to the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError

from posventa.bots.telegram.client import RetryLater, describe, retry_after_seconds
from posventa.core.errors import StorageUnavailable
from posventa.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Fetch = Callable[[int | None, float], Awaitable[list[dict[str, Any]]]]
Handle = Callable[[Sequence[dict[str, Any]]], Awaitable[None]]
Leader = Callable[[], Awaitable[bool]]


async def always_leader() -> bool:
    return True


class Poller:
    """Fetch, store, then confirm; see the module docstring."""

    def __init__(
        self,
        *,
        fetch: Fetch,
        handle: Handle,
        timeout: float,
        leader: Leader = always_leader,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        leader_retry: float = 5.0,
        confirm: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self._fetch = fetch
        self._handle = handle
        self._timeout = timeout
        self._leader = leader
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._leader_retry = leader_retry
        self._confirm = confirm
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._failures = 0
        #: The offset the next getUpdates sends: every update below it is stored.
        self.offset: int | None = None
        self.handled = 0
        self.batches = 0

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self.run(), name="telegram-poller")

    async def stop(self) -> None:
        """Stop polling; confirm what was stored so a restart does not fetch it again."""
        self._stopping.set()
        await cancel_and_wait([self._task])
        self._task = None
        if self._confirm is not None and self.offset is not None:
            try:
                await self._confirm(self.offset)
            except Exception as exc:  # the next start fetches them again; handlers dedupe
                log.info("telegram: could not confirm the last updates on stop (%s)", describe(exc))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                if not await self._leader():
                    await self._pause(self._leader_retry)
                    continue
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the loop die: log, back off, poll again
                log.exception("telegram: unexpected error in the poll loop")
                await self._pause(self._backoff())

    async def poll_once(self) -> int:
        """One fetch–store–advance round. Returns how many updates were stored."""
        try:
            updates = await self._fetch(self.offset, self._timeout)
        except RetryAfter as exc:
            await self._pause(retry_after_seconds(exc))
            return 0
        except InvalidToken:
            log.error("telegram: the Bot API server rejected the token; polling again in a minute")
            await self._pause(60.0)
            return 0
        except Conflict as exc:
            log.warning("telegram: getUpdates conflict (%s): another poller or a webhook is active", describe(exc))
            await self._pause(self._backoff())
            return 0
        except TelegramError as exc:
            log.warning("telegram: getUpdates failed (%s); retrying", describe(exc))
            await self._pause(self._backoff())
            return 0
        if not updates:
            self._failures = 0
            return 0
        try:
            await self._handle(updates)
        except (StorageUnavailable, RetryLater) as exc:
            # Not stored: keep the offset, so Telegram keeps these updates for us.
            log.warning("telegram: %d update(s) not stored yet (%s); will fetch them again", len(updates), exc)
            await self._pause(self._backoff())
            return 0
        self.offset = max(u["update_id"] for u in updates) + 1
        self._failures = 0
        self.handled += len(updates)
        self.batches += 1
        return len(updates)

    def _backoff(self) -> float:
        self._failures += 1
        delay = min(self._backoff_max, self._backoff_base * 2 ** min(self._failures - 1, 16))
        return delay * (0.5 + random.random() / 2)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=max(0.0, seconds))
