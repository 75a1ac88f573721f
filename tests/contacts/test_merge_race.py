"""Two processes merging the same contacts at once on PostgreSQL: one wins, the other is
refused cleanly (no deadlock, no half-merged contact, nothing lost).

The test holds both contacts' rows locked while the two workers start their merges, waits
until PostgreSQL shows both blocked on those locks, then lets go: the merges really race."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
from sqlalchemy import func, select, text

from posventa.core.domain import ChannelName, InboundMessage
from posventa.core.persistence.schema import cases, contact_identities, contacts
from tests.scaleout.cluster import eventually
from tests.support import REPO


async def _contact_with_case(service, sender: str) -> int:
    receipt = await service.inbox.receive(InboundMessage(channel=ChannelName.TELEGRAM, external_id=f"{sender}:1",
                                                         sender=sender, text="hola"))
    case = await service.cases.get_case(receipt.case_number)
    return case["contact"]["id"]


async def _worker(url: str, target: int, source: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.contacts.merge_worker", url, str(target), str(source), cwd=str(REPO),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"
    return proc


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite has one writer at a time
async def test_two_processes_merging_each_other_at_once(running, database_url):
    service = running.service
    a = await _contact_with_case(service, "501")
    b = await _contact_with_case(service, "502")
    workers = [await _worker(database_url, a, b), await _worker(database_url, b, a)]
    try:
        async with service.db.engine.connect() as gate:
            async with gate.begin():
                await gate.execute(select(contacts.c.id).where(contacts.c.id.in_([a, b])).with_for_update())
                for w in workers:
                    w.stdin.write(b"go\n")
                    await w.stdin.drain()

                async def both_blocked() -> bool:
                    async with service.db.engine.connect() as conn:
                        waiting = (await conn.execute(text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock'"))).scalar_one()
                    return waiting >= 2

                await eventually(both_blocked, timeout=30, interval=0.02, what="both merges blocked on the rows")
            # The gate's transaction ends here: the two merges race for the rows.
        results = [json.loads(await asyncio.wait_for(w.stdout.readline(), 30)) for w in workers]
    finally:
        for w in workers:
            if w.returncode is None:
                w.kill()
            await w.wait()
    ok = [r for r in results if "ok" in r]
    refused = [r for r in results if "refused" in r]
    assert len(ok) == 1 and len(refused) == 1, results
    assert "already merged" in refused[0]["refused"]
    async with service.db.engine.connect() as conn:
        rows = {r.id: r.merged_into_id for r in await conn.execute(
            select(contacts.c.id, contacts.c.merged_into_id).where(contacts.c.id.in_([a, b])))}
        survivor = a if rows[a] is None else b
        assert rows[a if survivor == b else b] == survivor and rows[survivor] is None
        assert (await conn.execute(select(func.count()).select_from(cases).where(
            cases.c.contact_id == survivor))).scalar_one() == 2
        assert (await conn.execute(select(func.count()).select_from(contact_identities).where(
            contact_identities.c.contact_id == survivor))).scalar_one() == 2
