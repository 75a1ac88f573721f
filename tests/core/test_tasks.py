"""cancel_and_wait: the one way components stop their background tasks."""

from __future__ import annotations

import asyncio
import logging

import pytest

from core.tasks import cancel_and_wait


async def test_cancels_waits_for_cleanup_and_skips_none():
    cleaned: list[str] = []

    async def loop(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.01)  # cleanup that itself awaits
            cleaned.append(name)

    a, b = asyncio.create_task(loop("a")), asyncio.create_task(loop("b"))
    await asyncio.sleep(0)
    await cancel_and_wait([a, None, b])
    assert sorted(cleaned) == ["a", "b"] and a.cancelled() and b.cancelled()
    await cancel_and_wait([])  # nothing to do
    await cancel_and_wait([a])  # already finished: nothing to do either


async def test_a_task_that_had_failed_is_logged_not_raised(caplog):
    async def boom() -> None:
        raise RuntimeError("the loop died an hour ago")

    task = asyncio.create_task(boom(), name="sync-loop")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="core.tasks"):
        await cancel_and_wait([task])
    [record] = [r for r in caplog.records if r.name == "core.tasks"]
    assert "sync-loop" in record.getMessage() and "the loop died" in str(record.exc_info[1])


async def test_the_callers_own_cancellation_is_not_swallowed():
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()  # takes its time to clean up

    task = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(cancel_and_wait([task]))
    await asyncio.sleep(0.01)
    stopper.cancel()  # e.g. a shutdown deadline
    with pytest.raises(asyncio.CancelledError):
        await stopper
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task  # and the task still finished its cleanup, cancelled
