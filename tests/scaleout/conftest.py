"""A throwaway PostgreSQL database per test, migrated with ``posventa db upgrade`` as an
operator would, and a ``Cluster`` of serve processes on it that is always cleaned up.
Every test here needs PostgreSQL: skipped without it, failed under POSVENTA_REQUIRE_ALL=1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from posventa.core.persistence import Database
from tests.scaleout.cluster import Cluster
from tests.support import pg_available, require_or_skip, throwaway_pg_database


@pytest.fixture
async def pg_url(tmp_path) -> AsyncIterator[str]:
    require_or_skip(pg_available(), "PostgreSQL is not reachable on 127.0.0.1:5432 (scale-out needs it)")
    async with throwaway_pg_database(prefix="pv_scale") as url:
        yield url


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.scaleout_failed = report.failed
    return report


@pytest.fixture
async def cluster(request, pg_url, tmp_path) -> AsyncIterator[Cluster]:
    group = Cluster(tmp_path=tmp_path, database_url=pg_url)
    upgraded = group.cli("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    try:
        yield group
    finally:
        await group.close()
        if getattr(request.node, "scaleout_failed", False):
            # The processes' own story is usually what explains a failure here.
            for node in group.nodes:
                print(f"----- {node.name} (exit {node.proc.returncode}) -----\n{node.output()[-6000:]}")


@pytest.fixture
async def db(pg_url) -> AsyncIterator[Database]:
    """The test's own handle on the cluster's database (to seed work and check results)."""
    database = Database(pg_url, pool_size=2)
    yield database
    await database.dispose()
