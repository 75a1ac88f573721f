"""The outbound channels at our ``Channel.send`` seam, with the real PTB Bot talking to the
fake Bot API: keyboards, suggestion links, long texts resumed after a 429, errors."""

from __future__ import annotations

import asyncio

import pytest

from posventa.bots.telegram.channel import BotLink, TelegramChannel
from posventa.bots.telegram.client import chunk_text, make_bot
from posventa.bots.telegram.store import BotStore
from posventa.core.config import TelegramConfig
from posventa.core.domain import ChannelName, Choice, ClaimedDelivery, Suggestion
from posventa.core.errors import PermanentDeliveryError, TransientDeliveryError
from posventa.core.outgoing import Outgoing
from tests.bots.conftest import sqlite_only
from tests.fakes.telegram_api import FakeTelegram
from tests.support import FakeClock

ANA = 4201


@pytest.fixture
async def channel(db, tg: FakeTelegram):
    bot = make_bot(TelegramConfig(enabled=True, token=tg.token, api_base_url=tg.api_base_url))
    await bot.initialize()
    link = BotLink(bot)
    link.set_ready()
    store = BotStore(db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=5), clock=FakeClock(),
                     on_commit=lambda: None)
    yield TelegramChannel(link=link, store=store)
    await bot.shutdown()


def outbound(text: str, outbox_id: int = 1, **kw) -> ClaimedDelivery:
    return ClaimedDelivery(outbox_id=outbox_id, channel=ChannelName.TELEGRAM, recipient=str(ANA), text=text,
                           kind="bot", **kw)


@sqlite_only
async def test_suggestions_become_link_buttons_above_the_choices(channel, tg: FakeTelegram):
    message = outbound("Esto puede ayudarte", suggestions=(
        Suggestion("Cómo reiniciar el router", "https://kb.example.com/t/router/7", 88.0),
        Suggestion("no-link", "javascript:alert(1)", 70.0)),
        choices=(Choice("Sí", "yes"), Choice("No", "no")), question="kb_feedback:12")
    external = await channel.send(message)
    sent = tg.sent_messages(ANA)[-1]
    assert external == f"{ANA}:{sent['message_id']}"
    assert sent["reply_markup"]["inline_keyboard"] == [
        [{"text": "Cómo reiniciar el router", "url": "https://kb.example.com/t/router/7"}],
        [{"text": "Sí", "callback_data": "K12|yes"}, {"text": "No", "callback_data": "K12|no"}]]

    # A Bot API server that refuses the link buttons still gets the message, with choices only.
    tg.fail_next("sendMessage", status=400, description="Bad Request: BUTTON_URL_INVALID")
    await channel.send(message)
    assert tg.sent_messages(ANA)[-1]["reply_markup"]["inline_keyboard"] == [
        [{"text": "Sí", "callback_data": "K12|yes"}, {"text": "No", "callback_data": "K12|no"}]]


@sqlite_only
async def test_a_long_reply_resumes_after_a_429_without_repeating_parts(channel, tg: FakeTelegram):
    text = "\n".join(f"Paso {i}: " + "detalle " * 60 for i in range(25))  # ~12k characters
    tg.fail_next("sendMessage", retry_after=4)  # the first part is refused
    with pytest.raises(TransientDeliveryError) as caught:
        await channel.send(outbound(text, outbox_id=7))
    assert caught.value.retry_after == 4
    with pytest.raises(TransientDeliveryError):  # the chat is held back without asking Telegram
        await channel.send(outbound("otro", outbox_id=8))
    assert len(tg.calls_to("sendMessage")) == 1

    channel._sender._gate._until.clear()  # the retry_after has passed  # noqa: SLF001
    attempt = asyncio.create_task(channel.send(outbound(text, outbox_id=7)))
    await tg.wait_for_call("sendMessage", lambda c: c.status == 200)  # the first part went out...
    tg.fail_next("sendMessage", status=502)  # ...and the second meets a gateway error
    with pytest.raises(TransientDeliveryError):
        await attempt
    await channel.send(outbound(text, outbox_id=7))  # the outbox's retry resumes at part two
    expected = chunk_text(text)
    assert len(expected) == 4
    assert [c.status for c in tg.calls_to("sendMessage")] == [429, 200, 502] + [200] * 3
    parts = [m["text"] for m in tg.sent_messages(ANA)]
    assert "".join(parts).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")
    assert parts == list(expected)  # each part once, in order


@sqlite_only
async def test_bad_requests_are_permanent_and_blocked_users_unreachable(channel, tg: FakeTelegram):
    with pytest.raises(PermanentDeliveryError) as caught:
        await channel.send(ClaimedDelivery(outbox_id=1, channel=ChannelName.TELEGRAM, recipient="@ana", text="x",
                                           kind="bot"))
    assert caught.value.unreachable
    tg.block_user(ANA)
    with pytest.raises(PermanentDeliveryError) as caught:
        await channel.send(outbound("hola"))
    assert caught.value.unreachable and "blocked" in str(caught.value).lower()
