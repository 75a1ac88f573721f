"""Automatic assignment from three processes at once on one PostgreSQL database: every
process tries to assign the same twenty new cases to three agents with room for six.
Nobody is assigned a case twice, no case is assigned twice, and no agent goes over
capacity (the case row claimed with SKIP LOCKED, the agents' rows locked in one order)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime

from sqlalchemy import func, insert, select

from posventa.core.domain import ChannelName, InboundMessage
from posventa.core.inbox import InboxService
from posventa.core.outgoing import Outgoing
from posventa.core.persistence import Database, upgrade
from posventa.core.persistence.schema import agent_states, case_events, cases, users
from posventa.core.ports import SystemClock
from tests.support import REPO

CAPACITY = {"ana": 1, "bruno": 2, "carla": 3}

WORKER = r"""
import asyncio, json, sys
from datetime import timedelta
from posventa.core.assignment import Assigner, AssignmentRules
from posventa.core.business_hours import build_calendar
from posventa.core.persistence import Database
from posventa.core.ports import SystemClock

async def main():
    url, ids = sys.argv[1], json.loads(sys.argv[2])
    db = Database(url)
    always = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    rules = AssignmentRules(enabled=True, strategy="round_robin", default_capacity=10, reassign_after=None,
                            calendar=build_calendar(name="always", timezone="UTC", weekly=always))
    assigner = Assigner(db=db, clock=SystemClock(), rules=rules)
    async with db.engine.connect() as conn:  # connect before the start signal
        pass
    sys.stdout.write("ready\n"); sys.stdout.flush()
    sys.stdin.readline()  # "go": all three start together
    done = await assigner.assign_new(ids)
    await db.dispose()
    print(json.dumps([[d.case_id, d.agent] for d in done]))

asyncio.run(main())
"""


async def test_three_processes_never_double_assign_nor_exceed_capacity(pg_url):
    db = Database(pg_url)
    await upgrade(db)
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        for name, capacity in CAPACITY.items():
            await conn.execute(insert(users).values(username=name, password_hash="x", role="agent", active=True,
                                                    created_at=now))
            await conn.execute(insert(agent_states).values(username=name, capacity=capacity, sectors="",
                                                           available=True))
    async with InboxService(db=db, outgoing=Outgoing(email_domain="x.example", max_attempts=3),
                            clock=SystemClock()) as inbox:
        receipts = [await inbox.receive(InboundMessage(channel=ChannelName.EMAIL, external_id=f"<r{i}@x>",
                                                       sender=f"c{i}@x.example", text="hola", subject=f"s{i}"))
                    for i in range(20)]
    ids = [r.case_number for r in receipts]

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, pg_url, json.dumps(ids), cwd=REPO, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        for _ in range(3)]
    try:
        for p in procs:
            assert (await asyncio.wait_for(p.stdout.readline(), 30)).strip() == b"ready"
        for p in procs:
            p.stdin.write(b"go\n")
            await p.stdin.drain()
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 60)
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    reported = []
    for (out, err), p in zip(outputs, procs, strict=True):
        assert p.returncode == 0, err.decode()
        reported += [tuple(x) for x in json.loads(out.decode().strip().splitlines()[-1])]

    async with db.engine.connect() as conn:
        owners = dict((await conn.execute(select(cases.c.id, cases.c.assigned_agent)
                                          .where(cases.c.assigned_agent.is_not(None)))).all())
        events = dict((await conn.execute(select(case_events.c.case_id, func.count())
                                          .where(case_events.c.kind == "assign").group_by(case_events.c.case_id))).all())
    await db.dispose()
    per_agent = {name: sum(1 for a in owners.values() if a == name) for name in CAPACITY}
    assert per_agent == CAPACITY  # every slot filled, none exceeded
    assert len(reported) == len(set(c for c, _ in reported)) == sum(CAPACITY.values())  # each case once
    assert dict(reported) == owners
    assert set(events.values()) == {1} and set(events) == set(owners)
