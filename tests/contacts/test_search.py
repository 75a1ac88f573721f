"""Contact search with several words: the rarest word drives and the others are checked on
each candidate's own terms, unless every word is common, when the matches are
intersected. Both ways must find exactly the contacts that hold every word, newest first,
paged; on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import event, insert, update

from posventa.core.cases import CaseService
from posventa.core.contacts import service as contact_service
from posventa.core.contacts.identities import EMAIL, PHONE, Newcomer, identify
from posventa.core.contacts.service import ContactService
from posventa.core.outgoing import Outgoing
from posventa.core.persistence.schema import contacts, organizations
from tests.support import FakeClock

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
#: Small enough for "ana" and "garomi" to be common words here.
CAP = 10


@pytest.fixture
async def people(db):
    """(id, name, address) of each contact: many Anas and Garomis, a few of both."""
    names = ([f"Ana Lopez{i}" for i in range(12)] + [f"Juan Garomi{i}" for i in range(12)]
             + ["Ana Garomi", "Ana Garomini", "Anabel Garomi", "Ana Gar", "Bea Garomi", "Ana Be Garo"])
    made = []
    for i, name in enumerate(names):
        key = (PHONE, f"+54911{i:08d}") if i % 5 == 0 else (EMAIL, f"c{i}.{name.split()[-1].lower()}@x{i % 3}.example")
        async with db.transaction() as conn:
            found = await identify(conn, {key: Newcomer(name=name)}, now=NOW)
        made.append((found[key].contact_id, name, key[1]))
    return made


@pytest.fixture
def service(db):
    clock = FakeClock(NOW)
    return ContactService(db=db, clock=clock, cases=CaseService(
        db=db, outgoing=Outgoing(email_domain="t.example", max_attempts=1), clock=clock))


def expected(people, *words: str) -> list[int]:
    """By brute force: every word starts some word of the name or the address."""
    def holds(name: str, address: str, word: str) -> bool:
        terms = name.lower().split() + [address, address.split("@")[-1], address.lstrip("+")]
        return any(t == word if len(word) < 3 else t.startswith(word) for t in terms)
    return sorted((cid for cid, name, address in people if all(holds(name, address, w) for w in words)), reverse=True)


@pytest.fixture
def statements(db):
    """The SQL the search sends (read, not changed)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine.sync_engine, "before_cursor_execute", record)


@pytest.mark.parametrize("query,words,driven", [
    ("Ana Garomi", ("ana", "garomi"), False),   # both common here: the matches intersected
    ("garomi ana", ("garomi", "ana"), False),
    ("Ana Garomin", ("ana", "garomin"), True),  # "garomin" is rare: it drives
    ("Anab garo", ("anab", "garo"), True),
    ("ana be", ("ana", "be"), True),            # a two-letter word is matched whole
    ("ana x1.example", ("ana", "x1.example"), True),
    ("garomi lopez3", ("garomi", "lopez3"), True),  # nobody
])
async def test_several_words_find_who_holds_them_all(monkeypatch, people, service, statements, query, words,
                                                       driven):
    monkeypatch.setattr(contact_service, "PROBE_CAP", CAP)
    want = expected(people, *words)
    assert [c["id"] for c in await service.search(query, limit=200)] == want
    # Paged: the pages put together are the whole list, in order.
    pages = [c["id"] for offset in range(0, 12, 3) for c in await service.search(query, limit=3, offset=offset)]
    assert pages == want[:12]
    search_sql = [s for s in statements if "contact_terms" in s and "LIMIT" in s.upper() and "matched" in s]
    assert search_sql and all(("INTERSECT" not in s.upper()) == driven for s in search_sql), query


async def test_organization_filter_with_a_rare_word(monkeypatch, db, people, service):
    monkeypatch.setattr(contact_service, "PROBE_CAP", CAP)
    [garomini] = [cid for cid, name, _ in people if name == "Ana Garomini"]
    async with db.transaction() as conn:
        org = (await conn.execute(insert(organizations).values(name="Acme", created_at=NOW)
                                  .returning(organizations.c.id))).scalar_one()
        await conn.execute(update(contacts).where(contacts.c.id == garomini).values(organization_id=org))
    for query in ("ana garomi", "garomini ana", "garomi"):
        assert [c["id"] for c in await service.search(query, organization_id=org)] == [garomini], query
    assert await service.search("ana lopez1", organization_id=org) == []


async def test_contacts_holding_a_word_many_times_are_listed_once(db, service, statements):
    """A page reads OVERFETCH times its rows; contacts holding the word in every term
    (name words and addresses) fill those rows with repeats, and the search then asks for
    distinct ids: every page is still whole and in order."""
    made = []
    for i in range(9):
        key = (EMAIL, f"ana.anita{i}@anabel.example")  # the address and its domain start "ana" too
        async with db.transaction() as conn:
            found = await identify(conn, {key: Newcomer(name=f"Ana Anabel Anita Anahí Ananda {i}")}, now=NOW)
        made.append(found[key].contact_id)
    newest_first = sorted(made, reverse=True)
    for limit in (1, 2, 3, 4, 50):
        pages = [c["id"] for offset in range(0, 9, limit)
                 for c in await service.search("ana", limit=limit, offset=offset)]
        assert pages == newest_first, limit
    assert any("DISTINCT" in s.upper() and "matched" in s for s in statements)  # it had to


@pytest.mark.parametrize("query,org_driven", [
    ("ana", True),             # 18 "ana…" terms, 5 contacts in the organization: it drives
    ("ana garomi", True),
    ("lopez", True),
    ("garomini", False),       # one match: the word drives, as without an organization
    ("bea garomi", False),
])
async def test_a_small_organization_drives_a_common_word(monkeypatch, db, people, service, statements, query,
                                                          org_driven):
    """With an organization smaller than the rarest word's matches, the search reads the
    organization's contacts and checks each for every word on its own terms; either way
    it finds exactly the organization's contacts holding every word, newest first, paged."""
    monkeypatch.setattr(contact_service, "PROBE_CAP", 1000)
    members = [cid for cid, name, _ in people
               if name in ("Ana Lopez1", "Ana Lopez7", "Ana Garomi", "Ana Garomini", "Bea Garomi")]
    async with db.transaction() as conn:
        org = (await conn.execute(insert(organizations).values(name="Acme", created_at=NOW)
                                  .returning(organizations.c.id))).scalar_one()
        await conn.execute(update(contacts).where(contacts.c.id.in_(members)).values(organization_id=org))
    want = [cid for cid in expected(people, *query.split()) if cid in members]
    statements.clear()
    assert [c["id"] for c in await service.search(query, organization_id=org)] == want
    assert want, query
    pages = [c["id"] for offset in range(0, 6, 2) for c in await service.search(query, organization_id=org,
                                                                                   limit=2, offset=offset)]
    assert pages == want
    search_sql = [s for s in statements if "LIMIT" in s.upper() and "count" not in s.lower()
                  and "organization_id" in s and "contact_terms" in s]
    assert search_sql and all(("matched" not in s) == org_driven for s in search_sql), search_sql


@pytest.mark.parametrize("query,holders_among_newest", [
    ("ana", 5),     # 17 "ana…" contacts; 5 of them among the 8 newest
    ("garomi", 6),  # Juan Garomi10-11, Ana Garomi, Ana Garomini, Anabel and Bea Garomi; 10 older ones
    ("lopez", 0),   # only the 12 oldest contacts: the walk finds nobody, the range reads them
])
async def test_a_common_word_looks_among_the_newest_contacts_first(monkeypatch, people, service, statements, query,
                                                                   holders_among_newest):
    """One common word (PROBE_CAP matches or more): the newest NEWEST_WALK contacts'
    own terms are read backwards first, and when fewer of them hold the word than the page
    needs, the word's matches are read as for a rare word. Every page is the same either way."""
    monkeypatch.setattr(contact_service, "PROBE_CAP", CAP)
    monkeypatch.setattr(contact_service, "NEWEST_WALK", 8)
    want = expected(people, query)
    assert len(want) >= CAP
    for limit in (1, 2, 3, 50):
        statements.clear()
        pages = [c["id"] for offset in range(0, len(want), limit)
                 for c in await service.search(query, limit=limit, offset=offset)]
        assert pages == want, limit
        walks = [s for s in statements if "substr" in s.lower()]
        ranges = [s for s in statements if "matched" in s]
        assert len(walks) == -(-len(want) // limit), limit  # every page looked among the newest first
        # The range is read only for the pages the newest contacts cannot fill.
        assert len(ranges) == sum(1 for offset in range(0, len(want), limit)
                                  if min(offset + limit, len(want)) > holders_among_newest), limit
