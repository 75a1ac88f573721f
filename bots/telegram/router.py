"""Routing raw updates to the customer side or the desk, by chat, keeping each chat's order.

One batch from ``getUpdates`` (or one webhook POST) is parsed update by update, so one
that cannot be parsed is logged and skipped instead of blocking every later poll. Chats
are handled concurrently (their messages then share the inbox's group commit) while the
updates of one chat run in order, stopping at the first that fails so nothing overtakes
it. Groups other than the agents' one are ignored: the bot serves private chats only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from telegram import Update
from telegram.constants import ChatType

from posventa.bots.telegram.channel import BotLink
from posventa.bots.telegram.client import RetryLater, describe
from posventa.bots.telegram.customer import CustomerSide
from posventa.bots.telegram.desk import DeskSide
from posventa.bots.telegram.shape import update_problem
from posventa.core.errors import StorageUnavailable

log = logging.getLogger(__name__)

#: An update that keeps failing for an unexpected reason is given up after this many tries
#: (logged with its id), so one poison update cannot stop the channel.
MAX_TRIES = 5


class UpdateRouter:
    def __init__(self, *, link: BotLink, customer: CustomerSide, desk: DeskSide | None, agent_chat_id: int,
                 max_tries: int = MAX_TRIES) -> None:
        self._link = link
        self._customer = customer
        self._desk = desk
        self._agent_chat = agent_chat_id
        self._max_tries = max_tries
        self._tries: dict[int, int] = {}
        self.ignored = 0

    async def handle_batch(self, raw: Sequence[dict[str, Any]]) -> None:
        """Store every update of the batch, or raise so that none of it is confirmed."""
        by_chat: dict[int, list[Update]] = {}
        for data in raw:
            update = self._parse(data)
            if update is not None:
                by_chat.setdefault(_chat_key(update), []).append(update)
        results = await asyncio.gather(*(self._chat_in_order(updates) for updates in by_chat.values()),
                                       return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            if not isinstance(failure, StorageUnavailable | RetryLater):
                raise failure
        if failures:
            raise failures[0]

    async def handle_one(self, data: dict[str, Any]) -> None:
        update = self._parse(data)
        if update is not None:
            await self._handle(update)

    def _parse(self, data: dict[str, Any]) -> Update | None:
        problem = update_problem(data)
        if problem is not None:
            # Malformed beyond what our handlers can read: skipped now, not retried (see shape.py).
            log.error("telegram: skipping malformed update %s (%s)", str(data.get("update_id"))[:30], problem)
            return None
        try:
            return Update.de_json(data, self._link.bot)
        except Exception as exc:
            log.error("telegram: skipping update %s that could not be parsed (%s)", data.get("update_id"),
                      type(exc).__name__)
            return None

    async def _chat_in_order(self, updates: list[Update]) -> None:
        for update in updates:
            await self._handle(update)

    async def _handle(self, update: Update) -> None:
        try:
            await self._dispatch(update)
        except (StorageUnavailable, RetryLater):
            raise
        except Exception as exc:
            tries = self._tries.get(update.update_id, 0) + 1
            if tries >= self._max_tries:
                self._tries.pop(update.update_id, None)
                log.error("telegram: giving up on update %s after %d tries (%s)", update.update_id, tries,
                          describe(exc))
                return
            if len(self._tries) > 1000:
                self._tries.clear()
            self._tries[update.update_id] = tries
            log.exception("telegram: update %s failed (try %d of %d)", update.update_id, tries, self._max_tries)
            raise RetryLater(f"update {update.update_id} failed: {type(exc).__name__}") from exc
        self._tries.pop(update.update_id, None)

    async def _dispatch(self, update: Update) -> None:
        if update.callback_query is not None:
            query = update.callback_query
            chat = query.message.chat if query.message is not None else None
            if chat is None or chat.type == ChatType.PRIVATE:
                await self._customer.on_callback(query)
            else:
                await self._quiet_answer(query)
            return
        message = update.message or update.edited_message
        if message is None:
            self.ignored += 1
            return
        if message.chat.type == ChatType.PRIVATE:
            if update.message is not None:
                await self._customer.on_message(message)
            else:
                await self._customer.on_edit(message)
            return
        if message.chat.id == self._agent_chat and self._desk is not None:
            if update.message is not None:  # an agent's edit cannot unsend a reply: ignored
                await self._desk.on_message(message)
            return
        self.ignored += 1  # a group a stranger added the bot to

    @staticmethod
    async def _quiet_answer(query) -> None:
        try:
            await query.answer()
        except Exception as exc:
            log.debug("telegram: answerCallbackQuery skipped (%s)", describe(exc))


def _chat_key(update: Update) -> int:
    if update.callback_query is not None:
        q = update.callback_query
        return q.message.chat.id if q.message is not None else q.from_user.id
    message = update.message or update.edited_message
    return message.chat.id if message is not None else 0
