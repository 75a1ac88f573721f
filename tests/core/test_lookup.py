"""Batch lookups: one probe per key on PostgreSQL, IN (...) on SQLite; any_key; bulk inserts."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from core.persistence.bulk import insert_ids
from core.persistence.lookup import any_key, by_unique_key, key_values
from core.persistence.schema import contact_identities, contacts, messages


async def test_by_unique_key_finds_each_existing_key_once(db):
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        (contact,) = await insert_ids(conn, contacts, [{"name": None, "email": None, "language": "es",
                                                        "created_at": now}])
        ids = await insert_ids(conn, messages, [
            {"contact_id": contact, "channel": "webchat", "direction": "in", "author": "customer",
             "external_id": f"s:{n}", "text": "hola", "created_at": now} for n in range(5)])
    wanted = {"s:1", "s:3", "s:404", "s:1 "}

    def query(match):
        return select(messages.c.id, messages.c.external_id).where(
            messages.c.channel == "webchat", messages.c.direction == "in", match(messages.c.external_id))

    async with db.engine.connect() as conn:
        rows = await by_unique_key(conn, wanted, query)
        assert sorted((r.external_id, r.id) for r in rows) == [("s:1", ids[1]), ("s:3", ids[3])]
        assert await by_unique_key(conn, set(), query) == []


async def test_any_key_matches_exactly_the_given_ids(db):
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        ids = await insert_ids(conn, contacts, [{"name": f"c{n}", "email": None, "language": "es",
                                                 "created_at": now} for n in range(12)])
    # More values than one padding step, repeats and a missing id: the same rows either way.
    wanted = [ids[0], ids[3], ids[3], ids[11], 10**9] + ids[5:10]
    async with db.engine.connect() as conn:
        dialect = conn.dialect.name
        by_id = select(contacts.c.id).where(any_key(dialect, contacts.c.id, "ids"))
        rows = await conn.execute(by_id, {"ids": key_values(dialect, wanted)})
        assert sorted(r.id for r in rows) == sorted({ids[0], ids[3], ids[11], *ids[5:10]})
        rows = await conn.execute(by_id, {"ids": key_values(dialect, [10**9])})
        assert rows.all() == []


async def test_any_key_is_one_statement_for_any_values_and_matches_exactly(db):
    """The static form: one statement object, values bound at execution (JSON on SQLite,
    an array on PostgreSQL), including text JSON would escape and ints."""
    now = datetime.now(UTC)
    odd = ['say "hi"', "back\\slash", "emoji 😀 ñ", "comma, [bracket]", "null"]
    async with db.transaction() as conn:
        ids = await insert_ids(conn, contacts, [{"name": name, "email": None, "language": "es", "created_at": now}
                                                for name in [*odd, "other"]])
    async with db.engine.connect() as conn:
        dialect = conn.dialect.name
        by_name = select(contacts.c.id).where(any_key(dialect, contacts.c.name, "names"))
        by_id = select(contacts.c.name).where(any_key(dialect, contacts.c.id, "ids"))
        rows = await conn.execute(by_name, {"names": key_values(dialect, odd)})
        assert sorted(r.id for r in rows) == sorted(ids[:len(odd)])
        rows = await conn.execute(by_name, {"names": key_values(dialect, ["missing"])})
        assert rows.all() == []
        rows = await conn.execute(by_id, {"ids": key_values(dialect, [ids[-1], 10**12])})
        assert [r.name for r in rows] == ["other"]


async def test_insert_ids_returns_each_rows_id_in_order_with_defaults_and_types(db):
    """Ids in row order, every value stored as given (JSON, aware times, NULLs), and a
    left-out column with a Python default gets it, on both databases."""
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        (contact,) = await insert_ids(conn, contacts, [{"name": "c", "email": None, "language": "es",
                                                        "created_at": now}])
        rows = [{"contact_id": contact, "channel": "webchat", "direction": "in", "author": "customer",
                 "external_id": f"order:{n}", "text": f"texto {n} ñ 😀", "created_at": now,
                 "extra": {"choice": {"question": "q", "value": str(n)}} if n % 3 == 0 else None}
                for n in range(40)]
        ids = await insert_ids(conn, messages, rows)
        (ident,) = await insert_ids(conn, contact_identities, [{"contact_id": contact, "channel": "webchat",
                                                                "address": "s1", "created_at": now}])
    assert len(ids) == 40 and ids == sorted(ids)
    async with db.engine.connect() as conn:
        stored = {r.id: r for r in await conn.execute(select(messages).where(messages.c.id.in_(ids)))}
        identity = (await conn.execute(select(contact_identities).where(contact_identities.c.id == ident))).one()
    for mid, row in zip(ids, rows, strict=True):
        got = stored[mid]
        assert (got.external_id, got.text, got.extra) == (row["external_id"], row["text"], row["extra"])
        assert got.created_at == now
    assert identity.unreachable is False
