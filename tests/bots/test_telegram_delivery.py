"""Delivery guarantees: at-least-once polling (stored before confirmed, exactly once after
a crash), webhook mode (secret, 200 only after commit), start-up errors, and the token
never reaching a log line."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from sqlalchemy import select

from posventa.bots.telegram.client import fetch_updates
from posventa.bots.telegram.poller import Poller
from posventa.cli import RedactSecrets, secrets_of
from posventa.core.errors import ConfigError
from posventa.core.persistence.schema import messages, outbox
from posventa.service import Service
from tests.bots.conftest import eventually, rows, sqlite_only, telegram_section
from tests.fakes.telegram_api import FakeTelegram
from tests.support import make_config

ANA = 4201
OURS = ("bots", "posventa", "core", "service", "intake")


async def stored(service: Service, external_id: str) -> list:
    return await rows(service, select(messages).where(messages.c.channel == "telegram",
                                                      messages.c.external_id == external_id))


async def polling(tg: FakeTelegram) -> None:
    await eventually(lambda: _true(tg.waiting_polls > 0))


async def _true(value: bool) -> bool:
    return value


async def test_crash_between_store_and_confirm_stores_the_update_exactly_once(start_service, tg: FakeTelegram):
    """Kill the poll loop after the handler stored an update but before the next getUpdates
    confirmed it; a new loop gets the update again, and it is still one row."""
    service = await start_service(agent_chat_id=0)
    await service.telegram.poller.stop()  # we drive the loop ourselves below
    bot = service.telegram.bot
    router = service.telegram.router
    handled = asyncio.Event()

    async def handle_then_die(updates):
        await router.handle_batch(updates)  # stored and committed...
        handled.set()
        await asyncio.Event().wait()  # ...and the process dies before confirming

    def poller(handle) -> Poller:
        return Poller(fetch=lambda offset, timeout: fetch_updates(bot, offset=offset, timeout=timeout),
                      handle=handle, timeout=1)

    update = tg.private_text(ANA, "¿me escuchan?")
    external = f"{ANA}:{update['message']['message_id']}"
    first = poller(handle_then_die)
    task = asyncio.create_task(first.run())
    await asyncio.wait_for(handled.wait(), 10)
    task.cancel()  # kill -9, as far as the poll loop can tell
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(await stored(service, external)) == 1
    assert tg.confirmed_offset < update["update_id"] + 1  # Telegram still holds it
    assert [u["update_id"] for u in tg.pending_updates] == [update["update_id"]]

    second = poller(router.handle_batch)  # the restarted process
    assert await second.poll_once() == 1  # Telegram sent it again...
    assert len(await stored(service, external)) == 1  # ...and it is still one row
    assert await second.poll_once() == 0  # this call carried the offset: confirmed
    assert tg.confirmed_offset == update["update_id"] + 1 and tg.pending_updates == []


async def test_a_restarted_service_stores_an_unconfirmed_update_once(database_url, tmp_path, tg: FakeTelegram):
    config = make_config(database_url, tmp_path, telegram=telegram_section(tg, agent_chat_id=0))
    service = Service(config)
    await service.start()
    try:
        await polling(tg)
        tg.token_valid = False  # every later call fails: the offset is never confirmed
        update = tg.private_text(ANA, "pedido 991 no llegó")
        external = f"{ANA}:{update['message']['message_id']}"
        await eventually(lambda: stored(service, external))
    finally:
        await service.stop()  # its last confirm fails too, as after a crash
    assert tg.confirmed_offset < update["update_id"] + 1

    tg.token_valid = True
    again = Service(config)
    await again.start()
    try:
        await tg.wait_for_call("getUpdates", lambda c: c.params.get("offset") == update["update_id"] + 1)
        assert len(await stored(again, external)) == 1
        acks = await rows(again, select(outbox).where(outbox.c.kind == "ack"))
        assert len(acks) == 1  # one case, acknowledged once (sent when the token works again)
    finally:
        await again.stop()


@sqlite_only
async def test_storage_unavailable_keeps_the_offset_until_the_update_is_stored(start_service, tg: FakeTelegram):
    service = await start_service(agent_chat_id=0)
    await polling(tg)
    await service.inbox.stop()  # the inbox answers StorageUnavailable, as when the database is down
    update = tg.private_text(ANA, "hola")
    await tg.wait_for_call("getUpdates", lambda c: c.params.get("offset") is None and
                           len(tg.calls_to("getUpdates")) >= 2)
    assert tg.confirmed_offset < update["update_id"] + 1 and tg.pending_updates
    await service.inbox.start()
    await tg.wait_for_call("getUpdates", lambda c: c.params.get("offset") == update["update_id"] + 1, timeout=10)
    assert len(await stored(service, f"{ANA}:{update['message']['message_id']}")) == 1


async def test_webhook_mode_checks_the_secret_and_answers_200_only_after_commit(start_service, tg: FakeTelegram):
    secret = "s3cr3t_Webhook-token"
    service = await start_service(mode="webhook", webhook_secret=secret, agent_chat_id=0)
    assert tg.webhook == {"url": f"{service.config.http.public_url}/telegram/webhook", "secret_token": secret}
    url = f"http://127.0.0.1:{service.http.bound_port}/telegram/webhook"
    update = tg.private_text(ANA, "por webhook")
    external = f"{ANA}:{update['message']['message_id']}"

    assert await tg.deliver_webhook(url, update, None) == 403
    assert await tg.deliver_webhook(url, update, "wrong-secret") == 403
    assert await tg.deliver_webhook(url, update, secret[:-1]) == 403
    assert await stored(service, external) == []

    assert await tg.deliver_webhook(url, update, secret) == 200
    assert len(await stored(service, external)) == 1  # durable by the time Telegram saw 200
    assert await tg.deliver_webhook(url, update, secret) == 200  # Telegram retries: still one row
    assert len(await stored(service, external)) == 1

    await service.inbox.stop()
    later = tg.private_text(ANA, "segundo")
    assert await tg.deliver_webhook(url, later, secret) == 503  # not stored: Telegram will retry
    await service.inbox.start()
    assert await tg.deliver_webhook(url, later, secret) == 200
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=b"{not json", headers={"X-Telegram-Bot-Api-Secret-Token": secret}) as r:
            assert r.status == 400
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA)
    assert tg.calls_to("getUpdates") == []  # webhook mode never polls


@sqlite_only
async def test_invalid_token_fails_start_up_with_one_clear_line(database_url, tmp_path, tg: FakeTelegram, caplog):
    caplog.set_level(logging.DEBUG)
    tg.token_valid = False
    service = Service(make_config(database_url, tmp_path, telegram=telegram_section(tg)))
    with pytest.raises(ConfigError) as caught:
        await service.start()
    message = str(caught.value)
    assert "telegram.token" in message and "\n" not in message
    assert tg.token not in message and tg.token.split(":")[1] not in message
    assert not [r for r in caplog.records if r.name.startswith(OURS) and tg.token in r.getMessage()]


@sqlite_only
async def test_webhook_secret_with_characters_telegram_refuses_is_a_config_error(database_url, tmp_path, tg):
    service = Service(make_config(database_url, tmp_path, telegram=telegram_section(
        tg, mode="webhook", webhook_secret="has spaces and ü")))
    with pytest.raises(ConfigError, match="telegram.webhook_secret"):
        await service.start()


@sqlite_only
async def test_the_token_never_reaches_a_log_line(start_service, tg: FakeTelegram, caplog):
    """Our own log lines never carry the token; the libraries' (httpx, PTB log request URLs
    at INFO/DEBUG) are caught by the redaction filter ``posventa serve`` installs."""
    caplog.set_level(logging.DEBUG)
    service = await start_service()
    tg.fail_next("sendMessage", retry_after=1)
    tg.fail_next("getUpdates", status=502)
    tg.private_text(ANA, "hola")
    await tg.wait_for_call("sendMessage", lambda c: c.status == 429)
    await service.inbox.stop()
    tg.private_text(ANA, "de nuevo")
    await tg.wait_for_call("getUpdates", lambda c: len(tg.calls_to("getUpdates")) > 4)
    await service.inbox.start()
    ours = [r for r in caplog.records if r.name.startswith(OURS)]
    assert ours and not [r for r in ours if tg.token in r.getMessage() or tg.token in (r.exc_text or "")]

    redact = RedactSecrets(secrets_of(service.config))
    leaked = [r for r in caplog.records if redact.filter(r) and tg.token in r.getMessage()]
    assert leaked == []


@sqlite_only
async def test_an_unreachable_bot_api_at_start_up_does_not_stop_the_service(database_url, tmp_path):
    fake = FakeTelegram(max_long_poll=1.0)
    await fake.start()
    base = fake.api_base_url
    await fake.stop()  # nothing listens there now
    config = make_config(database_url, tmp_path, telegram=telegram_section(fake, api_base_url=base))
    service = Service(config)
    await service.start()
    try:
        assert not service.telegram.link.ready  # the other channels are up; Telegram keeps trying
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{service.http.bound_port}/healthz") as r:
                assert r.status == 200
    finally:
        await service.stop()


async def test_a_send_in_flight_at_shutdown_finishes_before_the_bot_closes(start_service, tg: FakeTelegram):
    """Stopping closes the doors first, then lets the outbox finish its batch, and only then
    closes the Bot's HTTP client. Closed earlier, a reply still being answered by Telegram
    was cut off: an error for a message Telegram may well have delivered, and a retry."""
    service = await start_service(agent_chat_id=0)
    slow = tg.hold("sendMessage")
    tg.private_text(ANA, "hola")
    await eventually(lambda: _true(tg.held > 0))
    stopping = asyncio.create_task(service.stop())
    await eventually(lambda: _true(not service.telegram.poller.running))
    await asyncio.sleep(0.3)  # the rest of the bot's stop; before the fix it closed the Bot here
    assert not stopping.done()  # the outbox is waiting for its send
    slow.set()
    await stopping
    sends = tg.calls_to("sendMessage")
    assert sends and all(c.status == 200 for c in sends)
    sent = await rows(service, select(outbox.c.status).where(outbox.c.channel == "telegram"))
    await service.db.engine.dispose()  # the stopped service had closed its pool; rows() reopened it
    assert sent and [s for (s,) in sent if s != "queued"] == ["sent"] * len(sends)
