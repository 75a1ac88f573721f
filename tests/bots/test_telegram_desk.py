"""The agents' desk: one forum topic per case, agents answering customers on their own
channel (Telegram or email), commands, authorisation, flood control and blocked users."""

from __future__ import annotations

from sqlalchemy import select

from posventa.core.domain import ChannelName, InboundMessage, OutboxStatus, ThreadHints
from posventa.bots.telegram.tables import case_links
from posventa.core.persistence.schema import cases, contact_identities, messages, outbox
from tests.bots.conftest import AGENT, AGENTS_CHAT, OTHER_AGENT, STRANGER, eventually, rows, sqlite_only
from tests.fakes.telegram_api import FakeTelegram

ANA = 4201


async def topic_of_first_case(tg: FakeTelegram, service) -> int:
    """The first case's topic, once it shows the customer's message as the service knows
    it: an agent answers what the topic showed, and a copy whose sending the service has
    not recorded yet counts as unread (the stale-reply rule), so a reply sent in that gap
    (milliseconds, for a person) would be refused."""
    call = await tg.wait_for_call("createForumTopic")
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == AGENTS_CHAT
                           and c.params["text"].startswith("👤"))
    await eventually(lambda: desk_copies_recorded(service))
    return next(thread for (chat, thread) in tg.topics if chat == AGENTS_CHAT and
                tg.topics[(chat, thread)]["name"] == call.params["name"])


async def desk_copies_recorded(service) -> bool:
    """No copy for the desk is waiting or being sent."""
    return not await rows(service, select(outbox.c.id).where(
        outbox.c.channel == ChannelName.DESK.value,
        outbox.c.status.in_((OutboxStatus.QUEUED.value, OutboxStatus.INFLIGHT.value,
                             OutboxStatus.AWAITING_RETRY.value))))


def notices(tg: FakeTelegram, thread: int) -> list[str]:
    return [m["text"] for m in tg.sent_messages(AGENTS_CHAT, thread) if "text" in m]


async def test_agent_reply_in_the_topic_reaches_the_telegram_customer(start_service, tg: FakeTelegram):
    service = await start_service()
    tg.private_text(ANA, "¿Cuándo llega mi pedido 1234?")
    thread = await topic_of_first_case(tg, service)
    assert tg.topics[(AGENTS_CHAT, thread)]["name"] == "#1 · ¿Cuándo llega mi pedido 1234?"
    header = notices(tg, thread)[0]
    assert header.startswith("📋 Caso #1") and "Cliente: Ana" in header and "Canal: telegram" in header
    [link] = await rows(service, select(case_links).where(case_links.c.system == "telegram_topic"))
    assert (link.case_id, link.ref) == (1, f"{AGENTS_CHAT}:{thread}")

    tg.group_text(AGENTS_CHAT, AGENT, "Hola Ana: sale mañana <por la tarde> & con seguimiento", thread_id=thread,
                  first_name="María")
    reply = await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA and "mañana" in c.params["text"])
    assert tg.sent_messages(ANA)[-1]["text"] == "Hola Ana: sale mañana <por la tarde> & con seguimiento"
    assert reply.params["parse_mode"] == "HTML"
    case = await service.cases.get_case(1)
    assert [(m["author"], m["author_name"]) for m in case["messages"] if m["direction"] == "out"][-1] == (
        "agent", "María")

    # The customer's answer lands in the same topic.
    tg.private_text(ANA, "¡Gracias!")
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == AGENTS_CHAT
                           and c.params.get("message_thread_id") == thread and "¡Gracias!" in c.params["text"])
    assert len(tg.calls_to("createForumTopic")) == 1


async def test_agent_reply_to_an_email_customer_goes_out_as_threaded_email(start_service, tg: FakeTelegram):
    service = await start_service()
    email = service.channels[ChannelName.EMAIL]
    receipt = await service.inbox.receive(InboundMessage(
        channel=ChannelName.EMAIL, external_id="<m1.abc@cliente.com>", sender="ana@cliente.com",
        sender_name="Ana Pérez", subject="Factura duplicada", text="Me llegó dos veces la factura 77.",
        thread=ThreadHints(references=("<older@cliente.com>",))))
    ack = (await email.wait_for(1))[0]
    assert ack.kind == "ack"
    thread = await topic_of_first_case(tg, service)
    assert tg.topics[(AGENTS_CHAT, thread)]["name"] == f"#{receipt.case_number} · Factura duplicada"
    assert "Canal: email" in notices(tg, thread)[0] and "ana@cliente.com" in notices(tg, thread)[0]
    assert notices(tg, thread)[1] == "👤 Ana Pérez · email\nMe llegó dos veces la factura 77."

    tg.group_text(AGENTS_CHAT, AGENT, "Ya anulamos la duplicada.", thread_id=thread)
    sent = (await email.wait_for(2))[1]
    assert sent.recipient == "ana@cliente.com" and sent.text == "Ya anulamos la duplicada." and sent.kind == "reply"
    assert sent.email is not None and sent.email.in_reply_to == "<m1.abc@cliente.com>"
    assert "<m1.abc@cliente.com>" in sent.email.references and sent.email.message_id.startswith("<pv.")
    assert sent.case_number == receipt.case_number
    assert not [c for c in tg.calls_to("sendMessage") if c.params["chat_id"] != AGENTS_CHAT]


@sqlite_only
async def test_agent_commands_change_the_case_and_answer_in_the_topic(start_service, tg: FakeTelegram):
    service = await start_service()
    cat = await service.cases.create_category("Facturación")
    sub = await service.cases.create_category("Notas de crédito", parent_id=cat["id"])
    tg.private_text(ANA, "La nota de crédito no aparece")
    thread = await topic_of_first_case(tg, service)

    async def command(text: str, expected: str) -> None:
        tg.group_text(AGENTS_CHAT, AGENT, text, thread_id=thread, first_name="María")
        await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == AGENTS_CHAT and
                               c.params.get("message_thread_id") == thread and expected in c.params["text"])

    await command("/type reclamo", "✅ Tipo: Reclamo")
    await command("/category", f"{sub['id']} · Notas de crédito")
    await command(f"/category {cat['id']} {sub['id']}", "✅ Categoría: Facturación › Notas de crédito")
    await command("/category 9999", "⚠️ No se pudo: category 9999 is not a top-level category")
    await command("/derive Sistemas", "✅ Derivado a Sistemas")
    await command("/assign", "✅ Asignado a María")
    await command("/note Llamó por teléfono, está molesta", "📝 Nota interna")
    await command("/publish", "⚠️ No se pudo: write the answer in the KB tab")
    await command("/link ftp://x", "⚠️ No se pudo: url must be an http(s) link")
    await command("/link https://forum.example.com/t/notas/12", "✅ Vinculado a https://forum.example.com/t/notas/12")
    await command("/answer", "✅ Marcado: respuesta enviada")
    await command("/frobnicate", "Comando desconocido: /frobnicate")
    await command("/type", "Uso: /type request|complaint|incident")
    await command(f"/close@{tg.bot_user['username']}", "✅ Caso cerrado")
    await command("/derive Ventas", "⚠️ No se pudo: the case is closed")

    case = await service.cases.get_case(1)
    assert case["type"] == "complaint" and case["category"]["name"] == "Facturación"
    assert case["sector"] == "Sistemas" and case["assigned_agent"] == "María" and case["activity"] == "closed"
    assert case["kb"]["action"] == "link" and case["kb"]["url"].endswith("/12")
    notes = [m for m in case["messages"] if m["author"] == "note"]
    assert [n["text"] for n in notes] == ["Llamó por teléfono, está molesta"]
    # A note is internal: nothing but the ack with the type question and, on /close, the
    # closing notice ([cases] notify_closed) ever reached the customer.
    await tg.wait_for_call("sendMessage", lambda c: "Cerramos tu caso #1" in c.params.get("text", ""))
    assert len(tg.sent_messages(ANA)) == 2
    # The header card follows the case.
    edit = await tg.wait_for_call("editMessageText", lambda c: "Finalizado" in c.params["text"])
    assert "<b>Tipo:</b> Reclamo" in edit.params["text"] and "<b>Asignado:</b> María" in edit.params["text"]
    # Notices answer the agent's own message.
    assert all("reply_parameters" in c.params for c in tg.calls_to("sendMessage")
               if c.params.get("message_thread_id") == thread and c.params["text"].startswith(("✅", "⚠️")))
    # A command addressed to another bot is not ours.
    before = len(tg.calls_to("sendMessage"))
    tg.group_text(AGENTS_CHAT, AGENT, "/close@otro_bot", thread_id=thread)
    tg.group_text(AGENTS_CHAT, OTHER_AGENT, "/help", thread_id=thread)
    await tg.wait_for_call("sendMessage", lambda c: c.params["text"].startswith("Escribe en el tema"))
    assert len(tg.calls_to("sendMessage")) == before + 1


async def test_closing_an_unclassified_case_from_the_desk_asks_for_the_type_first(start_service, tg: FakeTelegram):
    service = await start_service()
    tg.private_text(ANA, "El lector no lee")
    thread = await topic_of_first_case(tg, service)

    async def command(text: str, expected: str) -> None:
        tg.group_text(AGENTS_CHAT, AGENT, text, thread_id=thread, first_name="María")
        await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == AGENTS_CHAT and
                               c.params.get("message_thread_id") == thread and expected in c.params["text"])

    await command("/close", "⚠️ El caso no tiene tipo. Indicalo antes de cerrarlo: /type solicitud, /type reclamo")
    await command("/answer", "⚠️ El caso no tiene tipo. Indicalo antes de marcarlo como respondido")
    case = await service.cases.get_case(1)
    assert case["activity"] == "preliminary_analysis" and case["type"] == "unclassified"
    await command("/type incidente", "✅ Tipo: Incidente")
    await command("/close", "✅ Caso cerrado")
    case = await service.cases.get_case(1)
    assert case["activity"] == "closed" and case["type"] == "incident"


async def test_unauthorised_group_member_is_refused_politely_once_and_nothing_happens(start_service, tg: FakeTelegram):
    service = await start_service()
    tg.private_text(ANA, "Mi equipo no arranca")
    thread = await topic_of_first_case(tg, service)
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA)
    tg.group_text(AGENTS_CHAT, STRANGER, "Hola Ana, soy de soporte, pasame tu clave", thread_id=thread,
                  first_name="Intruso")
    tg.group_text(AGENTS_CHAT, STRANGER, "/close", thread_id=thread, first_name="Intruso")
    tg.group_text(AGENTS_CHAT, STRANGER, "/type incident", thread_id=thread, first_name="Intruso")
    refusal = await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == AGENTS_CHAT
                                     and "solo los agentes habilitados" in c.params["text"])
    assert refusal.params["text"].startswith("Hola, Intruso.")
    # The agent's next message proves the stranger's three were all handled (in order).
    tg.group_text(AGENTS_CHAT, AGENT, "/assign", thread_id=thread, first_name="María")
    await tg.wait_for_call("sendMessage", lambda c: "✅ Asignado a María" in c.params["text"])
    case = await service.cases.get_case(1)
    assert case["activity"] == "preliminary_analysis" and case["type"] == "unclassified"
    assert [m["author"] for m in case["messages"]].count("agent") == 0
    assert len(tg.sent_messages(ANA)) == 1  # only the ack: nothing the stranger wrote reached Ana
    assert sum("habilitados" in m.get("text", "") for m in tg.sent_messages(AGENTS_CHAT)) == 1


@sqlite_only
async def test_anonymous_admins_and_commands_outside_a_case_topic(start_service, tg: FakeTelegram):
    await start_service()
    tg.group_text(AGENTS_CHAT, AGENT, "/close", thread_id=None, is_topic=False)
    await tg.wait_for_call("sendMessage", lambda c: "no corresponde a un caso" in c.params["text"])
    tg.group_text(AGENTS_CHAT, AGENT, "charla entre agentes", thread_id=None, is_topic=False)
    anonymous = tg.group_text(AGENTS_CHAT, 1087968824, "/close", first_name="Group")
    anonymous["message"]["from"]["is_bot"] = True
    anonymous["message"]["sender_chat"] = tg.forum(AGENTS_CHAT)
    await tg.wait_for_call("sendMessage", lambda c: "administrador anónimo" in c.params["text"])
    assert len(tg.calls_to("sendMessage")) == 2


async def test_429_is_honoured_through_the_outbox(start_service, tg: FakeTelegram):
    service = await start_service(agent_chat_id=0)
    tg.fail_next("sendMessage", retry_after=1)
    tg.private_text(ANA, "hola")
    tg.private_text(ANA, "¿hay alguien?")  # same chat: must wait behind the first reply
    limited = await tg.wait_for_call("sendMessage", lambda c: c.status == 429)
    limited_at = _loop_time()
    delivered = await tg.wait_for_call("sendMessage", lambda c: c.status == 200 and c.params["chat_id"] == ANA)
    waited = _loop_time() - limited_at
    assert limited.params["chat_id"] == ANA
    assert waited >= 0.9, f"retried after {waited:.2f}s, before Telegram's retry_after"
    calls = [c for c in tg.calls_to("sendMessage") if c.params["chat_id"] == ANA]
    assert [c.status for c in calls] == [429, 200]  # nothing hammered Telegram in between
    assert "abrimos el caso #1" in delivered.params["text"]
    [row] = await eventually(lambda: rows(service, select(outbox).where(outbox.c.channel == "telegram",
                                                                        outbox.c.status == "sent")))
    # Telegram pacing us is not a failed attempt: the outbox gives the attempt back.
    assert row.attempts == 1


def _loop_time() -> float:
    import asyncio

    return asyncio.get_running_loop().time()


async def test_blocked_user_marks_the_identity_unreachable(start_service, tg: FakeTelegram):
    service = await start_service()
    tg.private_text(ANA, "hola")
    thread = await topic_of_first_case(tg, service)
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA and c.status == 200)
    tg.block_user(ANA)
    tg.group_text(AGENTS_CHAT, AGENT, "¿Sigue el problema?", thread_id=thread)
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA and c.status == 403)
    [identity] = await eventually(lambda: rows(service, select(contact_identities).where(
        contact_identities.c.channel == "telegram", contact_identities.c.unreachable.is_(True))))
    assert identity.address == str(ANA)
    [failed] = await rows(service, select(outbox).where(outbox.c.status == "failed"))
    assert failed.attempts == 1 and "blocked" in failed.last_error.lower()
    # With no reachable channel left, the next reply is refused in the topic, not lost silently.
    tg.group_text(AGENTS_CHAT, AGENT, "¿Hola?", thread_id=thread)
    await tg.wait_for_call("sendMessage", lambda c: "No se envió al cliente" in c.params["text"])
    assert len([c for c in tg.calls_to("sendMessage") if c.params["chat_id"] == ANA]) == 2


async def test_a_redelivered_agent_reply_is_sent_once(start_service, tg: FakeTelegram):
    service = await start_service()
    tg.private_text(ANA, "hola")
    thread = await topic_of_first_case(tg, service)
    reply = tg.group_text(AGENTS_CHAT, AGENT, "Respuesta única", thread_id=thread)
    tg.push_update({"message": reply["message"]})
    tg.group_text(AGENTS_CHAT, AGENT, "/assign", thread_id=thread)
    await tg.wait_for_call("sendMessage", lambda c: "✅ Asignado" in c.params["text"])
    await eventually(lambda: _sent(service, "Respuesta única"))
    assert [m["text"] for m in tg.sent_messages(ANA)].count("Respuesta única") == 1
    assert len(await rows(service, select(messages).where(messages.c.text == "Respuesta única"))) == 1


async def _sent(service, text):
    return await rows(service, select(outbox).where(outbox.c.status == "sent", outbox.c.kind == "reply"))


@sqlite_only
async def test_a_deleted_topic_is_opened_again(start_service, tg: FakeTelegram):
    service = await start_service()
    tg.private_text(ANA, "hola")
    thread = await topic_of_first_case(tg, service)
    del tg.topics[(AGENTS_CHAT, thread)]  # an admin deleted the topic
    tg.private_text(ANA, "¿siguen ahí?")
    await tg.wait_for_call("createForumTopic", lambda c: len(tg.calls_to("createForumTopic")) == 2)
    await tg.wait_for_call("sendMessage", lambda c: "¿siguen ahí?" in c.params["text"] and c.status == 200)
    [link] = await rows(service, select(case_links).where(case_links.c.system == "telegram_topic"))
    assert link.ref != f"{AGENTS_CHAT}:{thread}"
    assert (await rows(service, select(cases.c.id))) == [(1,)]


async def test_available_and_away_switch_an_agents_automatic_assignments(start_service, tg: FakeTelegram):
    service = await start_service()
    tg.group_text(AGENTS_CHAT, AGENT, "/available", thread_id=None, is_topic=False)
    await tg.wait_for_call("sendMessage", lambda c: "id de Telegram" in c.params["text"])  # not linked yet
    user = await service.console.users.create("lucia", "correct horse battery staple", role="agent")
    await service.assigner.update_agent(user.id, telegram_user_id=AGENT)
    tg.group_text(AGENTS_CHAT, AGENT, "/available", thread_id=None, is_topic=False)
    await tg.wait_for_call("sendMessage", lambda c: c.params["text"].startswith("lucia: disponible"))
    assert (await service.assigner.get_agent(user.id))["telegram_available"] is True
    tg.group_text(AGENTS_CHAT, AGENT, "/away", thread_id=None, is_topic=False)
    await tg.wait_for_call("sendMessage", lambda c: c.params["text"].startswith("lucia: ausente"))
    agent = await service.assigner.get_agent(user.id)
    assert agent["telegram_available"] is False and agent["away_since"] is not None


async def test_m_sends_a_canned_response_in_the_customers_language(start_service, tg: FakeTelegram):
    from posventa.core.macros import MacroInput

    service = await start_service()
    await service.macros.create(MacroInput(name="Prazo", bodies={
        "es": "Hola {{ customer.name }}: su pedido sale mañana (caso #{{ case.number }}).",
        "pt": "Olá {{ customer.name }}: o seu pedido sai amanhã (caso #{{ case.number }})."},
        actions={"note": "Plazo informado"}))
    tg.private_text(ANA, "Quando chega o meu pedido?", language_code="pt-br", first_name="Ana")
    thread = await topic_of_first_case(tg, service)
    tg.group_text(AGENTS_CHAT, AGENT, "/m", thread_id=thread)
    await tg.wait_for_call("sendMessage", lambda c: c.params.get("message_thread_id") == thread
                           and "/m NAME" in c.params["text"] and "Prazo" in c.params["text"])
    tg.group_text(AGENTS_CHAT, AGENT, "/m prazo", thread_id=thread, first_name="María")
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA and "amanhã" in c.params["text"])
    assert tg.sent_messages(ANA)[-1]["text"] == "Olá Ana: o seu pedido sai amanhã (caso #1)."
    await tg.wait_for_call("sendMessage", lambda c: c.params.get("message_thread_id") == thread
                           and c.params["text"].startswith("📨"))
    case = await service.cases.get_case(1)
    assert [m["text"] for m in case["messages"] if m["author"] == "note"] == ["Plazo informado"]
    assert (await service.macros.find("Prazo", agent=None))["usage_count"] == 1
    tg.group_text(AGENTS_CHAT, AGENT, "/m nada", thread_id=thread)
    await tg.wait_for_call("sendMessage", lambda c: c.params.get("message_thread_id") == thread
                           and "nada" in c.params["text"] and c.params["text"].startswith("⚠️"))


async def test_a_reply_written_before_the_customers_newer_message_showed_in_the_topic_is_held(
        start_service, tg: FakeTelegram):
    service = await start_service()
    tg.private_text(ANA, "hola")
    thread = await topic_of_first_case(tg, service)
    await tg.wait_for_call("sendMessage", lambda c: c.params.get("message_thread_id") == thread
                           and "hola" in c.params["text"])
    # Ana writes again; her message is stored, but Telegram holds its copy back from the
    # topic for a second (flood control); the agent answers meanwhile.
    tg.fail_next("sendMessage", retry_after=1)
    tg.private_text(ANA, "¿Me lo cambian por otro modelo?")
    await tg.wait_for_call("sendMessage", lambda c: c.status == 429 and "otro modelo" in c.params["text"])
    tg.group_text(AGENTS_CHAT, AGENT, "Sale mañana", thread_id=thread, first_name="María")
    held = await tg.wait_for_call("sendMessage", lambda c: c.params.get("message_thread_id") == thread
                                  and c.params["text"].startswith("⚠️ No se envió: llegó algo nuevo"))
    assert "reply_parameters" in held.params
    assert "Sale mañana" not in [m.get("text") for m in tg.sent_messages(ANA)]
    assert [m["author"] for m in (await service.cases.get_case(1))["messages"]].count("agent") == 0
    # Once her message is in the topic, the same reply goes out.
    await tg.wait_for_call("sendMessage", lambda c: c.params.get("message_thread_id") == thread
                           and "otro modelo" in c.params["text"])
    tg.group_text(AGENTS_CHAT, AGENT, "Sale mañana, y sí: se lo cambiamos", thread_id=thread, first_name="María")
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA and "se lo cambiamos" in c.params["text"])


async def test_a_desk_reply_names_who_is_typing_in_the_console_and_stales_their_reply(start_service,
                                                                                       tg: FakeTelegram):
    from posventa.core.errors import StaleReply
    from posventa.intake.console.presence import PresenceReport

    service = await start_service()
    tg.private_text(ANA, "El lector no lee")
    thread = await topic_of_first_case(tg, service)
    await tg.wait_for_call("sendMessage", lambda c: c.params.get("message_thread_id") == thread
                           and "El lector no lee" in c.params["text"])
    read_in_console = max(m["id"] for m in (await service.cases.get_case(1))["messages"])
    # Bea has the case open in the console and is typing (her page's reports; on PostgreSQL
    # they reach every process's table through NOTIFY).
    viewers = service.console.live.viewers
    viewers.report(PresenceReport(1, "tab-of-bea-0001", "bea", "Bea Ruiz", "here"))
    viewers.report(PresenceReport(1, "tab-of-bea-0001", "bea", "Bea Ruiz", "typing"))
    await eventually(lambda: _async([v for v in viewers.on_case(1) if v.typing]))

    tg.group_text(AGENTS_CHAT, AGENT, "Probá limpiar el lente", thread_id=thread, first_name="María")
    await tg.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ANA and "limpiar el lente" in c.params["text"])
    warning = await tg.wait_for_call("sendMessage", lambda c: c.params.get("message_thread_id") == thread
                                     and c.params["text"].startswith("✍️"))
    assert warning.params["text"] == "✍️ Ojo: Bea Ruiz está escribiendo una respuesta a este caso en la consola."
    # Bea's reply, written before María's, asks her to confirm first (the console's 409).
    try:
        await service.cases.reply(1, "Reinicialo", agent="bea", seen_message_id=read_in_console)
    except StaleReply as exc:
        [newer] = exc.newer
        [desk_reply] = [m for m in (await service.cases.get_case(1))["messages"] if m["id"] == newer]
        assert (desk_reply["author"], desk_reply["author_name"]) == ("agent", "María")
    else:
        raise AssertionError("a reply written before the desk's was sent without asking")

    # Nobody typing: a desk reply says nothing more in the topic.
    viewers.report(PresenceReport(1, "tab-of-bea-0001", "bea", "Bea Ruiz", "idle"))
    await eventually(lambda: _async(not [v for v in viewers.on_case(1) if v.typing]))
    before = len(notices(tg, thread))
    tg.group_text(AGENTS_CHAT, AGENT, "¿Funcionó?", thread_id=thread, first_name="María")
    tg.group_text(AGENTS_CHAT, AGENT, "/assign", thread_id=thread, first_name="María")
    await tg.wait_for_call("sendMessage", lambda c: "✅ Asignado a María" in c.params["text"])
    assert not [n for n in notices(tg, thread)[before:] if n.startswith("✍️")]


async def _async(value):
    return value
