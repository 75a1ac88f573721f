"""Contact search at scale: N contacts (default 1,000,000), created through the real path
(``core.contacts.identities.identify``, which writes their search terms), on SQLite and
PostgreSQL. Prints one JSON object with, per database:

- ``load``: contacts created per second (identities and terms included);
- ``search``: p50/p95/max of ``ContactService.search`` for each kind of query people type:
  a surname prefix (3-6 letters), a first name and a surname, a whole email address, an
  email's first letters, a phone number, a query that matches nobody, and the first 3-12
  letters of any stored term (``any_prefix``: "exa", "+54", "valentina.g"); plus a
  surname prefix with an organization filter. The target is p95 < 20 ms at 1,000,000 contacts.

Two ways to fill, with the same data (the same rows in ``contacts``,
``contact_identities`` and ``contact_terms``, terms from ``normalize.terms_for``):
``--fill identify`` (the default) goes through ``identify`` and measures its rate, ~1,000
contacts/s on this machine (15-20 minutes for a million); ``--fill bulk`` writes the same
rows with COPY / executemany, faster, for working on the search. ``--keep NAME`` keeps
the filled database (bench.support.kept_database) and reuses it when it holds the same
number of contacts, migrated to the head, so a search can be measured again in a minute.

    .venv/bin/python bench/contacts.py [--contacts 1000000] [--queries 200] [--only sqlite|postgres]
                                       [--fill identify|bulk] [--keep NAME]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ is sys.path[0], and bench/email.py would shadow the standard
# library's email package: put the repo there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import asyncio  # noqa: E402
import functools  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from sqlalchemy import func, insert, select, update  # noqa: E402

from posventa.core.cases import CaseService  # noqa: E402
from posventa.core.contacts.identities import EMAIL, PHONE, Newcomer, identify  # noqa: E402
from posventa.core.contacts.normalize import terms_for  # noqa: E402
from posventa.core.contacts.service import ContactService  # noqa: E402
from posventa.core.outgoing import Outgoing  # noqa: E402
from bench.support import (  # noqa: E402
    add_database_argument,
    bulk_insert,
    emit,
    machine_load,
    on_each_database,
    settle,
    timed_calls,
)
from posventa.core.persistence import Database  # noqa: E402
from posventa.core.persistence.schema import (  # noqa: E402
    contact_identities,
    contact_terms,
    contacts,
    organizations,
)
from posventa.core.ports import SystemClock  # noqa: E402

CHUNK = 5000
SEED = 19
TARGET_P95_MS = 20.0
FIRST = ["Ana", "Juan", "María", "José", "Lucía", "Pedro", "Sofía", "Carlos", "Valentina", "Diego", "Camila",
         "Martín", "Julieta", "Pablo", "Florencia", "Tomás", "Agustina", "Nicolás", "Paula", "Matías", "João",
         "Gabriela", "Rafael", "Beatriz", "Thiago", "Larissa", "Emma", "Liam", "Olivia", "Noah"]
SYLLABLES = ["ga", "ro", "mi", "ne", "lo", "pe", "san", "tor", "fer", "dez", "var", "gas", "ri", "be", "ca", "li",
             "ma", "no", "ez", "al", "ve", "ra", "mon", "sil", "do", "cas", "tro", "go", "mez", "lla"]


def surname(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()


def people(n: int, rng: random.Random) -> Iterator[list[tuple[tuple[str, str], str, bool, int]]]:
    """The contacts, CHUNK at a time: ((kind, address), name, in an organization?, the
    organization's index), whichever way they are written. A third known by phone, the
    rest by email; 1 % in one of 100 organizations."""
    for start in range(0, n, CHUNK):
        chunk = []
        for i in range(start, min(n, start + CHUNK)):
            first, last = rng.choice(FIRST), surname(rng)
            if i % 3 == 0:
                key = (PHONE, f"+54911{i:08d}")
            else:
                key = (EMAIL, f"{first.lower()}.{last.lower()}{i}@example{i % 97}.com")
            in_org = rng.random() < 0.01
            chunk.append((key, f"{first} {last}", in_org, rng.randrange(100) if in_org else 0))
        yield chunk


def sample_of(n: int, seed: int, rng: random.Random) -> list[dict[str, str]]:
    """What ``people`` creates from ``seed``, one in 500 picked by ``rng``, for queries
    that find something."""
    sample = []
    for chunk in people(n, random.Random(seed)):
        for (kind, address), name, _, _ in chunk:
            if rng.random() < 0.002:
                first, last = name.split(" ", 1)
                sample.append({"first": first, "last": last, "kind": kind, "address": address})
    return sample


async def organizations_made(db: Database, now: datetime) -> list[int]:
    async with db.transaction() as conn:
        return [(await conn.execute(insert(organizations).values(name=f"Org {i}", created_at=now)
                                    .returning(organizations.c.id))).scalar_one() for i in range(100)]


async def load(db: Database, n: int, rng: random.Random) -> float:
    """N contacts through ``identify``, as the inbox creates them; the rate."""
    now = datetime.now(UTC)
    started = time.perf_counter()
    org_ids = await organizations_made(db, now)
    for chunk in people(n, rng):
        async with db.transaction() as conn:
            found = await identify(conn, {key: Newcomer(name=name) for key, name, _, _ in chunk}, now=now)
            for key, _, in_org, org in chunk:
                if in_org:
                    await conn.execute(update(contacts).where(contacts.c.id == found[key].contact_id).values(
                        organization_id=org_ids[org]))
    elapsed = time.perf_counter() - started
    await settle(db)  # not timed: the load rate is the creation's
    return n / elapsed


async def load_bulk(db: Database, n: int, rng: random.Random) -> float:
    """The rows ``load`` writes, written directly (ids given, then the sequences moved
    past them); the rate, which is not ``identify``'s."""
    now = datetime.now(UTC)
    started = time.perf_counter()
    org_ids = await organizations_made(db, now)
    next_id = 1
    for number, chunk in enumerate(people(n, rng), 1):
        if db.is_sqlite and number % 40 == 0:
            # The WAL back into the file now and then: the passive checkpoints fall behind
            # a fill this fast, and every write then goes through a WAL of gigabytes.
            await settle(db)
        contact_rows, identity_rows, term_rows = [], [], []
        for (kind, address), name, in_org, org in chunk:
            cid, next_id = next_id, next_id + 1
            contact_rows.append({"id": cid, "name": name, "email": address if kind == EMAIL else None,
                                 "phone": address if kind == PHONE else None,
                                 "organization_id": org_ids[org] if in_org else None, "created_at": now})
            identity_rows.append({"id": cid, "contact_id": cid, "channel": kind, "address": address,
                                  "unreachable": False, "created_at": now, "verified": True})
            term_rows += [{"term": t, "contact_id": cid} for t in sorted(terms_for(name, [(kind, address)]))]
        await bulk_insert(db, contacts, contact_rows)
        await bulk_insert(db, contact_identities, identity_rows)
        await bulk_insert(db, contact_terms, term_rows)
    if not db.is_sqlite:
        async with db.transaction() as conn:
            for table in (contacts, contact_identities):
                await conn.execute(select(func.setval(func.pg_get_serial_sequence(table.name, "id"), next_id - 1)))
    elapsed = time.perf_counter() - started
    await settle(db)
    return n / elapsed


def queries(sample: list[dict[str, str]], rng: random.Random, count: int) -> dict[str, list[str]]:
    pick = lambda: rng.choice(sample)  # noqa: E731
    emails = [s for s in sample if s["kind"] == EMAIL] or sample
    phones = [s for s in sample if s["kind"] == PHONE] or sample
    return {
        "surname_prefix": [pick()["last"][:rng.randint(3, 6)] for _ in range(count)],
        "first_and_surname": [f"{s['first']} {s['last']}" for s in (pick() for _ in range(count))],
        "whole_email": [rng.choice(emails)["address"] for _ in range(count)],
        "email_start": [rng.choice(emails)["address"][:8] for _ in range(count)],
        "phone": [rng.choice(phones)["address"] for _ in range(count)],
        "no_match": [f"zz{secrets.token_hex(3)}" for _ in range(count)],
        # What an agent types while looking: the first 3-12 letters of any stored term
        # (a name, an address, a domain, a phone's digits), "exa" and "+54" included.
        "any_prefix": [any_prefix(rng.choice(sample), rng) for _ in range(count)],
    }


def any_prefix(person: dict[str, str], rng: random.Random) -> str:
    term = rng.choice(sorted(terms_for(f"{person['first']} {person['last']}", [(person["kind"], person["address"])])))
    return term[:rng.randint(3, max(3, min(12, len(term))))]


async def timed(db: Database, search, items: list[str], **kw) -> dict[str, float]:
    await search(items[0], limit=50, **kw)  # warm-up: the statement prepared, the pages read in
    return await timed_calls(db, [functools.partial(search, q, limit=50, **kw) for q in items])


async def run_one(db: Database, args: argparse.Namespace) -> dict[str, object]:
    async with db.engine.connect() as conn:
        held = (await conn.execute(select(func.count()).select_from(contact_identities))).scalar_one()
    if held not in (0, args.contacts):
        raise SystemExit(f"the kept database holds {held} contacts, not {args.contacts}: use another --keep name, "
                         "or delete it")
    filled = held == args.contacts
    rng = random.Random(SEED)
    if filled:
        rate = None
    else:
        rate = await (load_bulk if args.fill == "bulk" else load)(db, args.contacts, random.Random(SEED))
    sample = sample_of(args.contacts, SEED, rng)
    clock = SystemClock()
    service = ContactService(db=db, clock=clock, cases=CaseService(
        db=db, outgoing=Outgoing(email_domain="bench.example", max_attempts=1), clock=clock))
    load_at_start = machine_load()
    searches = {}
    for kind, items in queries(sample, rng, args.queries).items():
        searches[kind] = await timed(db, service.search, items)
    searches["surname_prefix_in_organization"] = await timed(
        db, service.search, [rng.choice(sample)["last"][:4] for _ in range(args.queries)], organization_id=1)
    worst = max(s["p95_ms"] for s in searches.values())
    out: dict[str, object] = {"fill": "reused" if filled else args.fill}
    if rate is not None:
        out.update({"load_contacts_per_s": round(rate), "load_s": round(args.contacts / rate, 1)})
    return {**out, "search": searches, "worst_p95_ms": worst, "meets_target": worst < TARGET_P95_MS,
            "load_avg_at_search_start": load_at_start}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--fill", choices=("identify", "bulk"), default="identify",
                        help="through identify (measures its rate) or the same rows written in bulk")
    parser.add_argument("--keep", metavar="NAME", help="keep the filled database under this name and reuse it")
    add_database_argument(parser)
    args = parser.parse_args()
    out: dict[str, object] = {"benchmark": "contacts", "contacts": args.contacts,
                              "target": f"search p95 < {TARGET_P95_MS:g} ms"}
    out.update(await on_each_database(args.only, lambda db: run_one(db, args), keep=args.keep))
    emit(out)


if __name__ == "__main__":
    asyncio.run(main())
