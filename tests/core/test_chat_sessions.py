"""core.chat_sessions and core.chat_history, the ports the web chat keeps its visitors and
replays their conversation through, on both databases."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select

from posventa.core.chat_history import ChatHistory
from posventa.core.chat_sessions import ChatSessions
from posventa.core.domain import ChannelName
from posventa.core.persistence.schema import contact_identities, contacts, messages
from tests.support import FakeClock


async def test_a_visitor_s_contact_and_identity_come_with_the_session_and_follow_it(db):
    clock = FakeClock()
    sessions = ChatSessions(db=db, clock=clock)
    created = await sessions.create(token_hash="a" * 64, public_id="wc-1", language="es", name=None,
                                    email="ana@example.com")
    async with db.engine.connect() as conn:
        identity = (await conn.execute(select(contact_identities.c.contact_id, contact_identities.c.verified)
                                       .where(contact_identities.c.channel == "webchat",
                                              contact_identities.c.address == "wc-1"))).one()
        # The typed address stays on the contact, never an email identity.
        kinds = (await conn.execute(select(contact_identities.c.channel)
                                    .where(contact_identities.c.contact_id == created.contact_id))).scalars().all()
    assert tuple(identity) == (created.contact_id, True) and kinds == ["webchat"]

    resumed = await sessions.resume("a" * 64, language="pt", name="Ana", email="other@example.com")
    assert (resumed.language, resumed.name, resumed.email) == ("pt", "Ana", "ana@example.com")
    again = await sessions.resume("a" * 64, language=None, name="Somebody", email=None)
    assert (again.language, again.name) == ("pt", "Ana")
    async with db.engine.connect() as conn:
        contact = (await conn.execute(select(contacts.c.name, contacts.c.language)
                                      .where(contacts.c.id == created.contact_id))).one()
    assert tuple(contact) == ("Ana", "pt")
    assert await sessions.resume("b" * 64, language=None, name=None, email=None) is None
    assert await sessions.find("a" * 64) == again

    clock.advance(minutes=10)
    assert not await sessions.seen_since("wc-1", clock.now() - timedelta(minutes=1))
    await sessions.mark_seen({"wc-1", "wc-nobody"})
    assert await sessions.seen_since("wc-1", clock.now())
    assert not await sessions.seen_since("wc-nobody", clock.now() - timedelta(days=1))


async def test_messages_reach_each_session_of_their_contact_and_the_replay_skips_notes(db):
    clock = FakeClock()
    sessions = ChatSessions(db=db, clock=clock)
    first = await sessions.create(token_hash="a" * 64, public_id="wc-1", language="es", name=None, email=None)
    other = await sessions.create(token_hash="b" * 64, public_id="wc-2", language="es", name=None, email=None)
    row = {"channel": ChannelName.WEBCHAT.value, "contact_id": first.contact_id, "created_at": clock.now()}
    async with db.transaction() as conn:
        ids = [(await conn.execute(insert(messages).values(**row, **values).returning(messages.c.id))).scalar_one()
               for values in ({"direction": "in", "author": "customer", "text": "hola", "external_id": "wc-1:c1"},
                              {"direction": "out", "author": "agent", "text": "buenas"},
                              {"direction": "out", "author": "note", "text": "internal"})]
    # Outbound only, and only to the sessions of the message's contact.
    found = await sessions.messages_to(ids[:2])
    assert [(m.id, m.public_id, m.author, m.text) for m in found] == [(ids[1], "wc-1", "agent", "buenas")]
    assert other.contact_id != first.contact_id

    replay = await ChatHistory(db=db).replay(contact_id=first.contact_id, channel=ChannelName.WEBCHAT,
                                             recipient="wc-1", last_seen=None, limit=10)
    assert [(line.id, line.text) for line in replay.lines] == [(ids[0], "hola"), (ids[1], "buenas")]
    assert replay.undelivered == []
    later = await ChatHistory(db=db).replay(contact_id=first.contact_id, channel=ChannelName.WEBCHAT,
                                            recipient="wc-1", last_seen=ids[0], limit=10)
    assert [line.id for line in later.lines] == [ids[1]]
