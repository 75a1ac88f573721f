"""Periodic, the one loop of periodic jobs, DrainingLoop, the one lifecycle of a loop that
finishes its work before it stops, and cancel_and_wait, the one way components stop
their background tasks."""

from __future__ import annotations

import asyncio
import logging

import pytest

from posventa.core.tasks import DrainingLoop, Periodic, cancel_and_wait


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
    with caplog.at_level(logging.ERROR, logger="posventa.core.tasks"):
        await cancel_and_wait([task])
    [record] = [r for r in caplog.records if r.name == "posventa.core.tasks"]
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


# --- Periodic --------------------------------------------------------------------------------------

class Timer:
    """The Periodic's clock, driven by the test: each wait the loop asks for is queued
    until the test fires it."""

    def __init__(self) -> None:
        self._asked: asyncio.Queue[tuple[float, asyncio.Future[None]]] = asyncio.Queue()
        self._pending: asyncio.Future[None] | None = None
        self.now = 1_000.0

    async def sleep(self, seconds: float) -> None:
        done = asyncio.get_running_loop().create_future()
        await self._asked.put((seconds, done))
        await done

    async def asked(self) -> float:
        """The next wait the loop asks for (waits until it asks)."""
        seconds, self._pending = await asyncio.wait_for(self._asked.get(), 5)
        return seconds

    def fire(self) -> None:
        assert self._pending is not None
        self.now += 1
        self._pending.set_result(None)
        self._pending = None


class Job:
    """A job whose runs the test sees and whose outcomes it scripts."""

    def __init__(self, *outcomes: BaseException | None) -> None:
        self._outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        outcome = self._outcomes.pop(0) if self._outcomes else None
        if outcome is not None:
            raise outcome


def periodic(job, timer: Timer, **kwargs) -> Periodic:
    return Periodic(name="test-job", job=job, sleep=timer.sleep, now=lambda: timer.now, **kwargs)


async def test_periodic_runs_at_start_then_every_interval_and_stops_cleanly():
    timer, job = Timer(), Job()
    task = periodic(job, timer, interval=30)
    await task.start()
    assert await timer.asked() == 30 and job.calls == 1 and task.last_success_at == 1_000.0
    timer.fire()
    assert await timer.asked() == 30 and job.calls == 2 and task.last_run_at == 1_001.0
    assert task.running
    await task.stop()
    assert not task.running and job.calls == 2 and task.runs == 2 and task.failures == 0
    await task.stop()  # twice is harmless
    await task.start()  # and it starts again
    assert await timer.asked() == 30 and job.calls == 3
    await task.stop()


async def test_periodic_can_wait_an_interval_before_its_first_run():
    timer, job = Timer(), Job()
    task = periodic(job, timer, interval=5, run_at_start=False)
    await task.start()
    assert await timer.asked() == 5 and job.calls == 0
    timer.fire()
    assert await timer.asked() == 5 and job.calls == 1
    await task.stop()


@pytest.mark.parametrize(("dice", "expected"), [(0.0, 90.0), (0.5, 100.0), (0.999, 109.98)])
async def test_periodic_jitter_spreads_the_wait_around_the_interval(dice, expected):
    timer = Timer()
    task = periodic(Job(), timer, interval=100, jitter=0.1, rand=lambda: dice)
    await task.start()
    assert await timer.asked() == pytest.approx(expected)
    await task.stop()


async def test_periodic_failures_back_off_log_sparingly_and_recovery_is_said(caplog):
    timer = Timer()
    errors = [RuntimeError(f"boom {i}") for i in range(5)]
    task = periodic(Job(*errors), timer, interval=10, max_backoff=60)
    with caplog.at_level(logging.INFO, logger="posventa.core.tasks"):
        await task.start()
        waits = [await timer.asked()]
        for _ in range(5):
            timer.fire()
            waits.append(await timer.asked())
        await task.stop()
    # Failures 1..5 double the wait up to the ceiling; the success after them resets it.
    assert waits == [10, 20, 40, 60, 60, 10]
    assert (task.failures, task.consecutive_failures, task.runs) == (5, 0, 6)
    assert task.last_error == "RuntimeError" and task.last_error_at == 1_004.0 and task.last_success_at == 1_005.0
    records = [r for r in caplog.records if r.name == "posventa.core.tasks"]
    # The 1st (with its traceback), the 2nd and the 4th of the streak, then the recovery.
    assert [r.levelno for r in records] == [logging.ERROR, logging.WARNING, logging.WARNING, logging.INFO]
    assert records[0].exc_info is not None and "boom 0" in str(records[0].exc_info[1])
    assert "2 times in a row" in records[1].getMessage() and "boom 1" in records[1].getMessage()
    assert "4 times in a row" in records[2].getMessage()
    assert "after 5 failures" in records[3].getMessage()
    assert all("test-job" in r.getMessage() for r in records)


async def test_periodic_expected_errors_are_one_line_without_traceback(caplog):
    class Unreachable(Exception):
        pass

    timer = Timer()
    task = periodic(Job(Unreachable("discourse down")), timer, interval=600, expected=(Unreachable,))
    with caplog.at_level(logging.INFO, logger="posventa.core.tasks"):
        await task.start()
        # An interval longer than the backoff ceiling is never shortened.
        assert await timer.asked() == 600
        await task.stop()
    [record] = [r for r in caplog.records if r.name == "posventa.core.tasks"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "discourse down" in record.getMessage() and "Unreachable" in record.getMessage()


async def test_periodic_stop_in_the_middle_of_a_run_cancels_it_without_counting_a_failure(caplog):
    entered, cancelled = asyncio.Event(), asyncio.Event()

    async def slow() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = periodic(slow, Timer(), interval=1)
    with caplog.at_level(logging.INFO, logger="posventa.core.tasks"):
        await task.start()
        await asyncio.wait_for(entered.wait(), 5)
        await task.stop()
    assert cancelled.is_set() and not task.running
    assert (task.runs, task.failures, task.last_error) == (0, 0, None)
    assert [r for r in caplog.records if r.name == "posventa.core.tasks"] == []


async def test_periodic_run_once_is_one_run_with_the_same_bookkeeping():
    timer = Timer()
    task = periodic(Job(ValueError("bad row"), None), timer, interval=1)
    assert await task.run_once() is False and task.consecutive_failures == 1 and task.next_wait() == 1
    assert await task.run_once() is True and task.consecutive_failures == 0 and task.runs == 2


@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"interval": -1}, {"interval": 1, "jitter": 1.0},
                                    {"interval": 1, "jitter": -0.1}])
def test_periodic_refuses_a_nonsense_interval_or_jitter(kwargs):
    with pytest.raises(ValueError, match="nightly"):
        Periodic(name="nightly", job=Job(), **kwargs)


async def test_a_draining_loop_stops_by_asking_and_waits_for_the_work_in_hand():
    wake = asyncio.Event()
    queue = ["a", "b"]
    done: list[str] = []
    loop: DrainingLoop

    async def run() -> None:
        while True:
            wake.clear()
            while queue:
                await asyncio.sleep(0)  # the work in hand awaits, as a commit does
                done.append(queue.pop(0))
            if loop.stopping:
                return
            await wake.wait()

    loop = DrainingLoop(name="drain", run=run, wake=wake)
    assert not loop.running
    await loop.start()
    assert loop.running
    queue.append("c")  # queued but never woken for: stop() wakes the loop, which drains it
    await loop.stop()
    assert done == ["a", "b", "c"] and not loop.running
    await loop.stop()  # stopped already: nothing to do
    queue.append("d")
    await loop.start()  # and it starts again
    await loop.stop()
    assert done == ["a", "b", "c", "d"]
