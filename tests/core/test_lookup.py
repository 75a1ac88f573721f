"""Batch lookups: one probe per key on PostgreSQL, IN (...) on SQLite; any_key; bulk inserts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy.exc import DBAPIError

from posventa.core.persistence.bulk import _fast_insert_plan, _json_rows, _processed, insert_ids
from posventa.core.persistence.lookup import any_key, by_unique_key, key_values
from posventa.core.persistence.schema import UTCDateTime, contact_identities, contacts, messages


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


async def test_insert_ids_keeps_each_rows_own_values_when_many_are_shared(db):
    """Bind processors run once per distinct value (``_processed``): rows that share a
    time or a null JSON, and rows with their own, each get exactly their own back."""
    base = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)
    times = [base, base, base + timedelta(microseconds=1), base.astimezone(timezone(timedelta(hours=-3))), base]
    async with db.transaction() as conn:
        (contact,) = await insert_ids(conn, contacts, [{"name": "c", "email": None, "language": "es",
                                                        "created_at": base}])
        rows = [{"contact_id": contact, "channel": "webchat", "direction": "in", "author": "customer",
                 "external_id": f"shared:{n}", "text": "hola", "created_at": at,
                 "extra": None if n % 2 else {"n": n}} for n, at in enumerate(times)]
        ids = await insert_ids(conn, messages, rows)
    async with db.engine.connect() as conn:
        stored = {r.id: r for r in await conn.execute(select(messages).where(messages.c.id.in_(ids)))}
    assert [(stored[i].created_at, stored[i].extra) for i in ids] == [(r["created_at"], r["extra"]) for r in rows]


def test_processed_runs_once_per_distinct_value_and_never_mixes_equal_types():
    calls = []

    def process(value):
        calls.append(value)
        return repr(value)

    values = [1, True, 1.0, 1, True, {"a": 1}, {"a": 1}, None, None]
    assert _processed(process, values) == [repr(v) for v in values]
    # 1, True and 1.0 are equal with one hash, yet each is processed as itself; dicts
    # cannot be keys, so each is processed.
    assert calls == [1, True, 1.0, {"a": 1}, {"a": 1}, None]


def test_json_rows_refuses_what_json_cannot_carry_exactly():
    assert json.loads(_json_rows([[1, 2], ["a", "ñ 😀"]], [False, False])) == [[1, "a"], [2, "ñ 😀"]]
    # orjson would write NaN and infinity as null: refused, so SQLAlchemy binds them.
    assert _json_rows([[1.5, float("nan")]], [True]) is None
    assert _json_rows([[float("inf")]], [True]) is None
    # A time without a bind processor is not turned into text behind the caller's back.
    assert _json_rows([[datetime.now(UTC)]], [False]) is None
    assert _json_rows([[b"bytes"]], [False]) is None
    # Past 64 bits orjson refuses and the stdlib decides: exact.
    assert json.loads(_json_rows([[2**70]], [False])) == [[2**70]]


async def test_insert_ids_carries_every_column_type_exactly_either_way(db):
    """A table of every kind of column: PostgreSQL sends it as JSON cast back per column,
    except with a NUMERIC column, which JSON cannot carry exactly (arrays, one per column);
    SQLite sends JSON, or leaves the Decimal to SQLAlchemy. What comes back is what went in."""
    meta = MetaData()
    plain = Table("bulk_plain", meta, Column("id", Integer, primary_key=True), Column("n", BigInteger),
                  Column("flag", Boolean), Column("ratio", Float), Column("label", String(5)), Column("body", Text),
                  Column("doc", JSON), Column("at", UTCDateTime()))
    exact = Table("bulk_exact", meta, Column("id", Integer, primary_key=True), Column("amount", Numeric(12, 2)),
                  Column("label", String(20)))
    async with db.engine.begin() as conn:
        await conn.run_sync(meta.create_all)
    at = datetime(2026, 12, 5, 6, 7, 8, 901234, tzinfo=UTC)
    plain_rows = [{"n": 2**62, "flag": True, "ratio": 0.1, "label": "ñandú", "body": 'say "hi" \\ 😀\n',
                   "doc": {"k": [1, None, "x"]}, "at": at},
                  {"n": -1, "flag": False, "ratio": -2.5e-300, "label": "", "body": "", "doc": None, "at": None},
                  {"n": None, "flag": None, "ratio": None, "label": None, "body": None, "doc": [], "at": at}]
    exact_rows = [{"amount": Decimal("1234567890.12"), "label": "a"}, {"amount": None, "label": "b"}]
    async with db.transaction() as conn:
        plain_ids = await insert_ids(conn, plain, plain_rows)
        exact_ids = await insert_ids(conn, exact, exact_rows)
    async with db.engine.connect() as conn:
        got = {r.id: r for r in await conn.execute(select(plain))}
        assert [{k: getattr(got[i], k) for k in plain_rows[0]} for i in plain_ids] == plain_rows
        got = {r.id: r for r in await conn.execute(select(exact))}
        assert [{"amount": got[i].amount, "label": got[i].label} for i in exact_ids] == exact_rows
    if db.engine.dialect.name == "postgresql":
        assert _fast_insert_plan(exact, ("amount", "label"), db.engine.dialect).arrays
        assert not _fast_insert_plan(plain, tuple(plain_rows[0]), db.engine.dialect).arrays
        # Text is not cast to VARCHAR(5), which would cut it: the insert refuses instead.
        with pytest.raises(DBAPIError):
            async with db.transaction() as conn:
                await insert_ids(conn, plain, [{"label": "toolong"}])
