"""Looking up many rows at once: plans that do not depend on table statistics, and
statement texts that do not depend on how many values a batch happens to have."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, String, any_, bindparam, func, select, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

Match = Callable[[ColumnElement[Any]], ColumnElement[bool]]

#: The parameter that carries ``by_unique_key``'s values.
UNIQUE_KEYS = "unique_keys"


def any_key(dialect: str, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """``column IN :name`` for a statement built once and run with ``key_values``.

    PostgreSQL: ``column = ANY($1)`` with the values as one array parameter, which the
    driver encodes in C. SQLAlchemy renders an ``IN`` list as one placeholder per value, and
    at 250 messages a batch that rendering was about 4% of the web chat server's CPU. The
    plan is the one ``IN`` gets (PostgreSQL turns an IN list into ``= ANY(ARRAY[…])``), so
    the caveat of ``by_unique_key`` applies alike: for a unique key that also filters on
    other columns, use that. SQLite has no arrays: ``IN (SELECT value FROM json_each(?))``
    with the values as one JSON text, planned as one index probe per value like ``IN``
    (SQLite 3.38+ has JSON built in). An expanding ``IN`` list was rendered anew on every
    execution, about 5% of the web chat server's CPU on SQLite.

    Why build once: constructing a statement, and adapting the cached compiled form's
    result columns to the new object, cost more per inbox batch than compiling ever did."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(select(func.json_each(bindparam(name, type_=String)).table_valued("value").c.value))


def key_values(dialect: str, values: Collection[Any]) -> list[Any] | str:
    """The parameter value for an ``any_key`` placeholder: the values (str or int)."""
    if dialect == "postgresql":
        return list(values)
    return json.dumps(list(values), ensure_ascii=False)  # raw UTF-8: no surrogate-pair escapes


async def by_unique_key(conn: AsyncConnection, values: Collection[str],
                        query: Callable[[Match], Select[Any]], **params: Any) -> Sequence[Any]:
    """The rows of ``query`` for every value in ``values``.

    ``query(match)`` builds a SELECT whose WHERE clause holds ``match(key_column)`` next
    to equality on the key's other columns, so that each value finds at most one row
    through a unique index (a message's ``(channel, direction, external_id)``). Anything
    else that varies goes in a ``bindparam`` whose value is in ``params``: the statement
    is built once per ``query`` and database (``query`` should be a module-level function).

    SQLite gets ``key IN (…)`` (``any_key``). PostgreSQL gets one index probe per value (``unnest`` of
    one array parameter, joined LATERAL to the query with LIMIT 1): with ``IN (…)``,
    a table whose statistics lag behind its growth (a new database, the first minutes of
    a busy day: autovacuum analyzes a minute later at best) is planned as a scan of every
    row with that channel, each compared with every value. At 30,000 messages that was
    200 ms of server CPU per inbox batch, growing with the table. The probe's plan is the
    same whatever the statistics say; the statement text is the same for any number of
    values, so it is prepared once.
    """
    if not values:
        return []
    dialect = conn.dialect.name
    statement = _unique_key_statement(query, dialect)
    return (await conn.execute(statement, {UNIQUE_KEYS: key_values(dialect, values), **params})).all()


@functools.lru_cache(maxsize=128)
def _unique_key_statement(query: Callable[[Match], Select[Any]], dialect: str) -> Select[Any]:
    if dialect != "postgresql":
        return query(lambda key: any_key(dialect, key, UNIQUE_KEYS))
    wanted = func.unnest(bindparam(UNIQUE_KEYS, type_=ARRAY(String))).table_valued("value") \
        .render_derived(name="wanted")
    found = query(lambda key: key == wanted.c.value).limit(1).lateral("found")
    return select(found).select_from(wanted).join(found, true())
