"""KB suggestions on a new case: computed after the case committed, under a timeout.

A slow or broken knowledge base can therefore never lose or delay a case; at worst the
customer gets no suggestions.

The suggestions ask "did this solve it?" (question ``"kb_feedback:<case>"``); the
customer's answer is ``KbFeedbackAnswers``, which the inbox calls through
``core.inbox_hooks.ChoiceAnswers``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.case_type_question import ENDED, ask_case_type, close_self_served
from posventa.core.domain import ChannelName, Choice
from posventa.core.inbox_hooks import ChoiceContext, StoredMessage
from posventa.core.outgoing import CUSTOMER_CHANNELS, Outgoing, ComposedMessage, Recipient
from posventa.core.persistence import Database
from posventa.core.persistence.schema import case_suggestions, cases, contact_identities, messages
from posventa.core.ports import AnswerSuggester, Clock
from posventa.core.texts import text

log = logging.getLogger(__name__)

KB_FEEDBACK_QUESTION = "kb_feedback"


class KbFeedbackAnswers:
    """Implements ``core.inbox_hooks.ChoiceAnswers`` for "did this solve it?"."""

    question = KB_FEEDBACK_QUESTION

    async def answer(self, ctx: ChoiceContext) -> list[ComposedMessage]:
        value, case = ctx.value, ctx.case
        if value not in ("yes", "no"):
            return []
        await ctx.conn.execute(update(case_suggestions).where(case_suggestions.c.case_id == case.id)
                               .values(feedback=value))
        if value == "yes" and case.activity not in ENDED:
            if await close_self_served(ctx, case.case_type):
                return [ctx.say("self_served")]
            # The type is mandatory before closing (core.workflow): remember that the
            # customer solved it, ask the type, and close when it is answered.
            await ctx.conn.execute(update(cases).where(cases.c.id == case.id).values(self_served=True,
                                                                                     updated_at=ctx.now))
            return [ask_case_type(ctx.say("self_served_ask_type"), case.id, ctx.language)]
        return [ctx.say("agent_will_answer")]


class SuggestionFlow:
    def __init__(self, *, db: Database, suggester: AnswerSuggester, outgoing: Outgoing, clock: Clock,
                 min_score: float, limit: int, timeout_seconds: float, on_commit: Callable[[], None],
                 max_concurrent: int = 4) -> None:
        self._db = db
        self._suggester = suggester
        self._outgoing = outgoing
        self._clock = clock
        self._min_score = min_score
        self._limit = limit
        self._timeout = timeout_seconds
        self._on_commit = on_commit
        self._limiter = asyncio.Semaphore(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()

    def on_stored(self, stored: Sequence[StoredMessage]) -> None:
        """Inbox listener: start a suggestion task per new case (never awaited by the inbox)."""
        for s in stored:
            if s.new_case and s.case_id is not None and s.auto_reply_allowed and s.channel in CUSTOMER_CHANNELS:
                task = asyncio.create_task(self.suggest_for_case(s))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def suggest_for_case(self, s: StoredMessage) -> int:
        async with self._limiter:
            try:
                found = await asyncio.wait_for(
                    self._suggester.suggest(s.text, language=s.language, limit=self._limit), self._timeout)
            except TimeoutError:
                log.warning("KB suggestions for case %s timed out", s.case_id)
                return 0
            except Exception as exc:
                log.warning("KB suggestions for case %s failed: %s", s.case_id, type(exc).__name__)
                return 0
            good = [x for x in found if x.score >= self._min_score][: self._limit]
            if not good:
                return 0
            now = self._clock.now()
            try:
                async with self._db.transaction() as conn:
                    case = (await conn.execute(select(cases.c.title, cases.c.reply_token)
                                               .where(cases.c.id == s.case_id))).first()
                    ident = (await conn.execute(
                        select(contact_identities.c.id, contact_identities.c.channel, contact_identities.c.address)
                        .join(messages, messages.c.identity_id == contact_identities.c.id)
                        .where(messages.c.id == s.message_id))).first()
                    if case is None or ident is None:
                        return 0
                    await conn.execute(insert(case_suggestions), [
                        {"case_id": s.case_id, "article_id": x.article_id or x.url, "title": x.title[:300],
                         "url": x.url[:1000], "score": float(x.score), "rank": i, "created_at": now}
                        for i, x in enumerate(good)])
                    body = f"{text('suggestions_intro', s.language)}\n" + "\n".join(
                        f"- {x.title}: {x.url}" for x in good) + f"\n{text('did_it_solve', s.language)}"
                    await self._outgoing.add(conn, [ComposedMessage(
                        recipient=Recipient(ChannelName(ident.channel), ident.address, ident.id, s.contact_id),
                        text=body, kind="suggestions", case_id=s.case_id, case_title=case.title,
                        language=s.language, automatic=True, suggestions=tuple(good),
                        choices=(Choice(text("yes", s.language), "yes"), Choice(text("no", s.language), "no")),
                        question=f"{KB_FEEDBACK_QUESTION}:{s.case_id}", reply_token=case.reply_token,
                    )], now=now)
            except Exception as exc:
                log.warning("could not store suggestions for case %s: %s", s.case_id, type(exc).__name__)
                return 0
            self._on_commit()
            return len(good)


# --- what solved cases teach the knowledge base (read by kb.index) ---------------------------

async def confirmed_suggestions(conn: AsyncConnection) -> list[tuple[str, str | None]]:
    """(article id, the case's description) of every suggestion the customer said solved
    their case, newest first."""
    rows = await conn.execute(
        select(case_suggestions.c.article_id, cases.c.description)
        .join(cases, cases.c.id == case_suggestions.c.case_id)
        .where(case_suggestions.c.feedback == "yes").order_by(case_suggestions.c.id.desc()))
    return [(r.article_id, r.description) for r in rows]


async def linked_posts(conn: AsyncConnection) -> list[tuple[str, str | None]]:
    """(KB post URL, the case's description) of every case an agent solved by linking a
    post, newest first."""
    rows = await conn.execute(select(cases.c.kb_url, cases.c.description)
                              .where(cases.c.kb_action == "link", cases.c.kb_url.is_not(None))
                              .order_by(cases.c.id.desc()))
    return [(r.kb_url, r.description) for r in rows]
