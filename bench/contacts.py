"""Contact search at scale: N contacts (default 1,000,000), created through the real path
(``core.contacts.identities.identify``, which writes their search terms), on SQLite and
PostgreSQL. Prints one JSON object with, per database:

- ``load``: contacts created per second (identities and terms included);
- ``search``: p50/p95/max of ``ContactService.search`` for each kind of query people type:
  a surname prefix (3-6 letters), a first name and a surname, a whole email address, an
  email's first letters, a phone number, and a query that matches nobody; plus the same
  with an organization filter. The target is p95 < 20 ms at 1,000,000 contacts.

Each word is a prefix range scan of ``contact_terms``' primary key (term, contact_id),
intersected across words, newest contacts first.

    .venv/bin/python bench/contacts.py [--contacts 1000000] [--queries 200] [--only sqlite|postgres]
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
from datetime import UTC, datetime  # noqa: E402

from sqlalchemy import insert, update  # noqa: E402

from posventa.core.cases import CaseService  # noqa: E402
from posventa.core.contacts.identities import EMAIL, PHONE, Newcomer, identify  # noqa: E402
from posventa.core.contacts.service import ContactService  # noqa: E402
from posventa.core.outgoing import Outgoing  # noqa: E402
from bench.support import add_database_argument, emit, machine_load, on_each_database, settle, timed_calls  # noqa: E402
from posventa.core.persistence import Database  # noqa: E402
from posventa.core.persistence.schema import contacts, organizations  # noqa: E402
from posventa.core.ports import SystemClock  # noqa: E402

CHUNK = 5000
TARGET_P95_MS = 20.0
FIRST = ["Ana", "Juan", "María", "José", "Lucía", "Pedro", "Sofía", "Carlos", "Valentina", "Diego", "Camila",
         "Martín", "Julieta", "Pablo", "Florencia", "Tomás", "Agustina", "Nicolás", "Paula", "Matías", "João",
         "Gabriela", "Rafael", "Beatriz", "Thiago", "Larissa", "Emma", "Liam", "Olivia", "Noah"]
SYLLABLES = ["ga", "ro", "mi", "ne", "lo", "pe", "san", "tor", "fer", "dez", "var", "gas", "ri", "be", "ca", "li",
             "ma", "no", "ez", "al", "ve", "ra", "mon", "sil", "do", "cas", "tro", "go", "mez", "lla"]


def surname(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()


async def load(db: Database, n: int, rng: random.Random) -> tuple[float, list[dict[str, str]]]:
    """N contacts, a third of them known by phone, the rest by email; 1% in 100 organizations.
    Returns the rate and a sample of what was created (for queries that find something)."""
    now = datetime.now(UTC)
    sample: list[dict[str, str]] = []
    started = time.perf_counter()
    async with db.transaction() as conn:
        org_ids = [(await conn.execute(insert(organizations).values(name=f"Org {i}", created_at=now)
                                       .returning(organizations.c.id))).scalar_one() for i in range(100)]
    for start in range(0, n, CHUNK):
        wanted: dict[tuple[str, str], Newcomer] = {}
        for i in range(start, min(n, start + CHUNK)):
            first, last = rng.choice(FIRST), surname(rng)
            if i % 3 == 0:
                key = (PHONE, f"+54911{i:08d}")
            else:
                key = (EMAIL, f"{first.lower()}.{last.lower()}{i}@example{i % 97}.com")
            wanted[key] = Newcomer(name=f"{first} {last}")
            if rng.random() < 0.002:
                sample.append({"first": first, "last": last, "kind": key[0], "address": key[1]})
        async with db.transaction() as conn:
            found = await identify(conn, wanted, now=now)
            in_orgs = [k.contact_id for k in found.values() if rng.random() < 0.01]
            for cid in in_orgs:
                await conn.execute(update(contacts).where(contacts.c.id == cid).values(
                    organization_id=rng.choice(org_ids)))
    elapsed = time.perf_counter() - started
    await settle(db)  # not timed: the load rate is the creation's
    return n / elapsed, sample


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
    }


async def timed(db: Database, search, items: list[str], **kw) -> dict[str, float]:
    await search(items[0], limit=50, **kw)  # warm-up: the statement prepared, the pages read in
    return await timed_calls(db, [functools.partial(search, q, limit=50, **kw) for q in items])


async def run_one(db: Database, args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(19)
    rate, sample = await load(db, args.contacts, rng)
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
    return {"load_contacts_per_s": round(rate), "load_s": round(args.contacts / rate, 1), "search": searches,
            "worst_p95_ms": worst, "meets_target": worst < TARGET_P95_MS, "load_avg_at_search_start": load_at_start}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    add_database_argument(parser)
    args = parser.parse_args()
    out: dict[str, object] = {"benchmark": "contacts", "contacts": args.contacts,
                              "target": f"search p95 < {TARGET_P95_MS:g} ms"}
    out.update(await on_each_database(args.only, lambda db: run_one(db, args)))
    emit(out)


if __name__ == "__main__":
    asyncio.run(main())
