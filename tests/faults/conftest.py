"""Fixtures of the fault tests: the serve processes (always killed at the end), the far
sides that stay in this process (fake Telegram, the outbound relay), and a throwaway
PostgreSQL database on the shared server."""

from __future__ import annotations


import pytest

from tests.faults.harness import RestartableTelegram, ServeGroup, SlowRelay
from tests.faults.private_pg import PrivatePostgres, unavailable_reason
from tests.support import free_port, require_or_skip, throwaway_pg_database


@pytest.fixture
def serve_group(tmp_path):
    group = ServeGroup(tmp_path)
    try:
        yield group
    finally:
        group.kill_all()


@pytest.fixture
async def telegram():
    fake = RestartableTelegram(max_long_poll=5.0)
    fake.send_latency = 0.05
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()  # raises what the fake found wrong in the bot's calls


@pytest.fixture
async def sink():
    relay = SlowRelay(delay=0.1)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


@pytest.fixture
async def pg_url(pg_template):
    """A migrated database of its own on the shared server (serve does not migrate PostgreSQL)."""
    require_or_skip(pg_template is not None, "PostgreSQL is not reachable on 127.0.0.1:5432")
    async with throwaway_pg_database(prefix="pv_fault", template=pg_template) as url:
        yield url


@pytest.fixture
def private_pg():
    """A PostgreSQL server of this test's own (initialised and running), always destroyed."""
    reason = unavailable_reason()
    require_or_skip(reason is None, f"cannot run a private PostgreSQL: {reason}")
    server = PrivatePostgres(port=free_port())
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()
