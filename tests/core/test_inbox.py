"""The inbound pipeline on both databases: dedupe, identify, thread, ack, group commit."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from posventa.core.domain import ChannelName, ChoiceAnswer, InboundMessage, ThreadHints
from posventa.core.errors import StorageUnavailable
from posventa.core.inbox import HookContext, InboxService
from posventa.core.outgoing import Outgoing
from posventa.core.persistence.schema import cases, contact_identities, messages, outbox
from tests.support import FakeClock


@pytest.fixture
async def inbox(db):
    service = InboxService(db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=5), clock=FakeClock(),
                           default_language="es", desk_enabled=True)
    async with service:
        yield service


def tg(sender: str, ext: str, text: str = "hola, mi pedido no llegó", **kw) -> InboundMessage:
    return InboundMessage(channel=ChannelName.TELEGRAM, external_id=ext, sender=sender, text=text, **kw)


def mail(sender: str, msgid: str, text: str = "Hello", **kw) -> InboundMessage:
    return InboundMessage(channel=ChannelName.EMAIL, external_id=msgid, sender=sender, text=text, **kw)


async def count(db, table, *where) -> int:
    async with db.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()


async def test_first_message_opens_case_and_queues_localized_ack(db, inbox):
    receipt = await inbox.receive(tg("1001", "1001:1", language="pt"))
    assert receipt.new_case and not receipt.duplicate and receipt.case_number
    async with db.engine.connect() as conn:
        case = (await conn.execute(select(cases).where(cases.c.id == receipt.case_number))).one()
        acks = (await conn.execute(select(outbox).where(outbox.c.kind == "ack"))).all()
        desk = (await conn.execute(select(outbox).where(outbox.c.channel == "desk"))).all()
    assert case.case_type == "unclassified" and case.activity == "preliminary_analysis"
    assert case.kb_problem == case.description == "hola, mi pedido no llegó"
    assert len(acks) == 1 and acks[0].recipient == "1001" and acks[0].channel == "telegram"
    assert f"#{receipt.case_number}" in acks[0].payload["text"] and "Obrigado" in acks[0].payload["text"]
    # The type is unknown, so the ack asks for it with three buttons.
    assert [c["value"] for c in acks[0].payload["choices"]] == ["request", "complaint", "incident"]
    assert acks[0].payload["question"] == f"case_type:{receipt.case_number}"
    assert len(desk) == 1 and desk[0].recipient == str(receipt.case_number)


async def test_same_external_id_twice_stores_nothing_new(db, inbox):
    first = await inbox.receive(tg("1001", "1001:7"))
    again = await inbox.receive(tg("1001", "1001:7", text="different text, same id"))
    assert again.duplicate and again.message_id == first.message_id and again.case_number == first.case_number
    assert await count(db, messages, messages.c.direction == "in") == 1
    assert await count(db, outbox, outbox.c.kind == "ack") == 1


async def test_duplicates_inside_one_batch_share_the_first_receipt(db, inbox):
    results = await asyncio.gather(*(inbox.receive(tg("1001", "1001:9")) for _ in range(5)))
    assert len({r.message_id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert await count(db, messages, messages.c.direction == "in") == 1


async def test_concurrent_messages_share_transactions(db, inbox):
    """Group commit: 300 concurrent messages from 30 customers commit in far fewer batches."""
    msgs = [tg(str(2000 + i % 30), f"{2000 + i % 30}:{i}", text=f"mensaje {i}") for i in range(300)]
    receipts = await asyncio.gather(*(inbox.receive(m) for m in msgs))
    assert len({r.message_id for r in receipts}) == 300
    assert inbox.batches_committed < 300
    # Chat channels thread into the customer's open case: one case per customer.
    assert len({r.case_number for r in receipts}) == 30
    assert await count(db, cases) == 30
    assert await count(db, contact_identities) == 30
    assert await count(db, outbox, outbox.c.kind == "ack") == 30


async def test_concurrent_batches_keep_each_senders_messages_in_order(db):
    """Two batches in flight (as on PostgreSQL): every message stored once, each customer's
    in the order sent and in one case, as with a single batcher."""
    inbox = InboxService(db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=5), clock=FakeClock(),
                         max_batch=8, max_concurrent_batches=2)
    senders = [str(4000 + s) for s in range(20)]
    msgs = [tg(sender, f"{sender}:{n}", text=f"mensaje {n}") for n in range(10) for sender in senders]
    async with inbox:
        receipts = await asyncio.gather(*(inbox.receive(m) for m in msgs))
    assert inbox.peak_batches_in_flight == 2
    assert not any(r.duplicate for r in receipts) and len({r.message_id for r in receipts}) == len(msgs)
    for sender in senders:
        mine = [r for m, r in zip(msgs, receipts, strict=True) if m.sender == sender]
        assert [r.message_id for r in mine] == sorted(r.message_id for r in mine)
        assert len({r.case_number for r in mine}) == 1 and mine[0].new_case
        assert not any(r.new_case for r in mine[1:])
    assert await count(db, cases) == 20
    assert await count(db, contact_identities) == 20
    assert await count(db, outbox, outbox.c.kind == "ack") == 20


async def test_one_senders_messages_never_share_the_batches_in_flight(db):
    inbox = InboxService(db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=5), clock=FakeClock(),
                         max_batch=8, max_concurrent_batches=2)
    msgs = [tg("4100", f"4100:{n}", text=f"mensaje {n}") for n in range(60)]
    async with inbox:
        receipts = await asyncio.gather(*(inbox.receive(m) for m in msgs))
    assert inbox.peak_batches_in_flight == 1
    assert [r.message_id for r in receipts] == sorted(r.message_id for r in receipts)
    assert inbox.batches_committed >= 60 // 8


async def test_chat_threads_into_open_case_but_email_opens_new_ones(db, inbox):
    a = await inbox.receive(tg("1001", "1001:1"))
    b = await inbox.receive(tg("1001", "1001:2", text="¿novedades?"))
    assert b.case_number == a.case_number and not b.new_case
    m1 = await inbox.receive(mail("ana@cliente.com", "<m1@mail>", subject="Factura"))
    m2 = await inbox.receive(mail("ana@cliente.com", "<m2@mail>", subject="Otro tema"))
    assert m1.case_number != m2.case_number


async def test_explicit_new_case(inbox):
    a = await inbox.receive(tg("1001", "1001:1"))
    b = await inbox.receive(tg("1001", "1001:2", new_case=True))
    assert b.new_case and b.case_number != a.case_number


async def test_email_threading_by_reply_token_references_and_subject(db, inbox):
    first = await inbox.receive(mail("ana@cliente.com", "<m1@mail>", subject="Pedido 55"))
    async with db.engine.connect() as conn:
        token = (await conn.execute(select(cases.c.reply_token).where(cases.c.id == first.case_number))).scalar_one()
        ack_id = (await conn.execute(select(messages.c.external_id).where(
            messages.c.direction == "out", messages.c.case_id == first.case_number))).scalar_one()
    assert ack_id.startswith("<pv.") and ack_id.endswith("@example.com>")
    by_ref = await inbox.receive(mail("ana@cliente.com", "<m2@mail>", thread=ThreadHints(references=(ack_id,))))
    by_tag = await inbox.receive(mail("ana@cliente.com", "<m3@mail>", thread=ThreadHints(case_number=first.case_number)))
    # A reply token is a capability: a colleague in CC replying with it joins the case.
    by_token = await inbox.receive(mail("boss@cliente.com", "<m4@mail>", thread=ThreadHints(reply_token=token)))
    assert by_ref.case_number == by_tag.case_number == by_token.case_number == first.case_number


async def test_headers_and_subject_tags_never_join_a_strangers_case(db, inbox):
    first = await inbox.receive(mail("ana@cliente.com", "<m1@mail>", subject="Pedido"))
    forged = await inbox.receive(mail("eve@evil.com", "<e1@mail>",
                                      thread=ThreadHints(references=("<m1@mail>",), case_number=first.case_number)))
    assert forged.new_case and forged.case_number != first.case_number


async def test_closed_case_is_not_reopened_by_a_reply(db, inbox):
    first = await inbox.receive(tg("1001", "1001:1"))
    async with db.transaction() as conn:
        await conn.execute(cases.update().where(cases.c.id == first.case_number).values(activity="closed"))
    later = await inbox.receive(tg("1001", "1001:2"))
    assert later.new_case and later.case_number != first.case_number


async def test_case_type_button_sets_the_type_only_for_the_owner(db, inbox):
    first = await inbox.receive(tg("1001", "1001:1"))
    q = f"case_type:{first.case_number}"
    await inbox.receive(tg("1002", "1002:1"))
    await inbox.receive(tg("1002", "1002:2", text="Reclamo", choice=ChoiceAnswer(q, "complaint")))
    async with db.engine.connect() as conn:
        assert (await conn.execute(select(cases.c.case_type).where(cases.c.id == first.case_number))).scalar() == "unclassified"
    await inbox.receive(tg("1001", "1001:2", text="Incidente", choice=ChoiceAnswer(q, "incident")))
    async with db.engine.connect() as conn:
        assert (await conn.execute(select(cases.c.case_type).where(cases.c.id == first.case_number))).scalar() == "incident"


async def test_loop_guarded_mail_is_stored_without_any_reply(db, inbox):
    r = await inbox.receive(mail("noreply@list.com", "<auto@x>", auto_reply_allowed=False))
    assert r.case_number
    assert await count(db, outbox, outbox.c.kind == "ack") == 0


async def test_record_edit_keeps_history(db, inbox):
    await inbox.receive(tg("1001", "1001:1", text="primer texto"))
    assert await inbox.record_edit(ChannelName.TELEGRAM, "1001:1", "texto corregido")
    async with db.engine.connect() as conn:
        text = (await conn.execute(select(messages.c.text).where(messages.c.external_id == "1001:1"))).scalar()
    assert text == "texto corregido"
    assert not await inbox.record_edit(ChannelName.TELEGRAM, "nope", "x")


class ExplodingHook:
    """A conversation hook that fails on one poison text: the batch must survive it."""

    async def active_contacts(self, conn, contact_ids):
        return set(contact_ids)

    async def handle(self, ctx: HookContext) -> bool:
        if ctx.message.text == "poison":
            raise RuntimeError("boom")
        return False


async def test_one_poison_message_does_not_take_its_batch_down(db):
    inbox = InboxService(db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=5), clock=FakeClock(),
                         hooks=[ExplodingHook()])
    async with inbox:
        results = await asyncio.gather(
            *(inbox.receive(tg(str(3000 + i), f"p:{i}", text="poison" if i == 5 else "fine")) for i in range(20)),
            return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1 and isinstance(failures[0], StorageUnavailable)
    assert await count(db, messages, messages.c.direction == "in") == 19


async def test_receive_refuses_when_not_running(db):
    inbox = InboxService(db=db, outgoing=Outgoing(email_domain="e.com", max_attempts=5), clock=FakeClock())
    with pytest.raises(StorageUnavailable):
        await inbox.receive(tg("1", "1:1"))
