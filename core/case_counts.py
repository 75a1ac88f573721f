"""Cases per activity, for the inbox's tabs and ``GET /api/v1/cases``'s ``counts``.

Counting them from ``cases`` reads every case (nearly all closed, and their count is shown
too), so triggers on ``cases`` keep a tally instead (schema ``case_activity_tally``,
migration i20_activity_tally): in the writing transaction itself, every insert, delete and
change of activity adds rows of +n/-n. The count of an activity is the sum of its rows,
exact at every snapshot; ``fold`` replaces the rows by their sums, so a read sums a
handful of rows however many cases there are.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from posventa.core.domain import Activity
from posventa.core.persistence import Database
from posventa.core.persistence.schema import case_activity_tally as tally

#: How often each process folds the tally (the ``case-counts`` periodic job). Between two
#: folds the rows added are one per new case and two per change of activity.
FOLD_SECONDS = 60.0


async def activity_counts(conn: AsyncConnection) -> dict[str, int]:
    """Every activity's number of cases (0 for none)."""
    rows = await conn.execute(select(tally.c.activity, func.sum(tally.c.n)).group_by(tally.c.activity))
    counts = {a.value: 0 for a in Activity}
    counts.update({activity: int(n) for activity, n in rows})
    return counts


class TallyFolder:
    """Folds the tally's rows into one per activity: ``fold`` is the periodic job."""

    def __init__(self, *, db: Database) -> None:
        self._db = db

    async def fold(self) -> int:
        """Replace the tally's rows by one per activity; how many rows it removed.

        The rows are taken with ``DELETE ... RETURNING`` and their sums written back in the
        same transaction: a row a concurrent transaction adds is not yet visible, so it
        stays for the next fold; two folds at once take each row once (PostgreSQL's delete
        waits for the other's, then skips the rows it removed; SQLite writes one at a time)."""
        async with self._db.reading() as conn:
            rows, activities = (await conn.execute(
                select(func.count(), func.count(tally.c.activity.distinct())))).one()
        if rows == activities:
            return 0  # already one row per activity
        async with self._db.transaction() as conn:
            taken = (await conn.execute(delete(tally).returning(tally.c.activity, tally.c.n))).all()
            sums: Counter[str] = Counter()
            for activity, n in taken:
                sums[activity] += n
            kept = [{"activity": a, "n": n} for a, n in sorted(sums.items()) if n]
            if kept:
                await conn.execute(insert(tally), kept)
        return len(taken)
