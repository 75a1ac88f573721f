"""One process that merges two contacts when told to (tests/contacts/test_merge_race.py).

Usage: python -m tests.contacts.merge_worker DATABASE_URL TARGET_ID SOURCE_ID
Prints "ready", waits for a line on stdin, merges, prints one JSON line: {"ok": moves}
or {"refused": message}.
"""

from __future__ import annotations

import asyncio
import json
import sys

from posventa.core.cases import CaseService
from posventa.core.contacts.service import ContactService
from posventa.core.errors import DomainError
from posventa.core.outgoing import Outgoing
from posventa.core.persistence import Database
from posventa.core.ports import SystemClock


async def main(url: str, target: int, source: int) -> None:
    db = Database(url)
    clock = SystemClock()
    contacts = ContactService(db=db, clock=clock, cases=CaseService(
        db=db, outgoing=Outgoing(email_domain="example.com", max_attempts=3), clock=clock))
    async with db.engine.connect() as conn:  # connected before the gate: the race is the merge itself
        await conn.exec_driver_sql("SELECT 1")
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    try:
        result = await contacts.merge(target, source, actor=f"agent:worker-{target}")
        print(json.dumps({"ok": result["moves"]}), flush=True)
    except DomainError as exc:
        print(json.dumps({"refused": str(exc)}), flush=True)
    finally:
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
