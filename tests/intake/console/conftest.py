from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from posventa.service import Service
from tests.intake.console.harness import ConsoleClient, Running, start_console
from tests.support import make_config


@pytest.fixture
async def running(database_url, tmp_path) -> AsyncIterator[Running]:
    service = Service(make_config(database_url, tmp_path))
    run = await start_console(service)
    try:
        yield run
    finally:
        await service.stop()


@pytest.fixture
async def agent(running) -> AsyncIterator[ConsoleClient]:
    async with ConsoleClient(running.base) as client:
        status, _ = await client.login(running.users["agent"])
        assert status == 200
        yield client
