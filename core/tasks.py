"""Background tasks: ``Periodic``, the one way to run a job every so often;
``DrainingLoop``, the one lifecycle of a loop that finishes its work before it stops; and
``cancel_and_wait``, the one way to stop a task.

Loops that are not periodic keep a task of their own. Those whose work must not be cut
off (the inbox's group-commit batcher drains its queue, an outbox worker finishes its
batch) run in a ``DrainingLoop``; the others stop with ``cancel_and_wait``: queue consumers
that wait for work (the web chat fan-out's deliveries, the KB encoder, the SQLite
checkpointer woken by writes) and long-lived connections (the PostgreSQL LISTEN
connection, Telegram's getUpdates).

Stopping a task: cancel, then wait until it has really finished.

Every component with a loop of its own stops it the same way. Done by hand as
``task.cancel(); with suppress(CancelledError): await task`` it has two faults: a
cancellation aimed at the caller (a shutdown with a deadline) is swallowed along with
the task's own, and a task that had already died of an exception either raises it at
stop or, where ``Exception`` was suppressed too, loses it without a word.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

#: The longest a failing periodic job waits between tries, unless its interval is longer.
DEFAULT_MAX_BACKOFF_SECONDS = 60.0


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel every task given (``None`` entries are skipped) and wait for each to end.

    A task's own cancellation is what was asked for; an exception it ended with is
    logged, not raised: stopping is no place to fail. A cancellation of the caller
    propagates (the tasks, already cancelled, finish on their own)."""
    live = [t for t in tasks if t is not None]
    if not live:
        return
    for task in live:
        task.cancel()
    await asyncio.wait(live)  # raises only if the caller is cancelled
    for task in live:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("background task %s had failed", task.get_name(), exc_info=error)


class DrainingLoop:
    """The task of a loop that is stopped by asking, not by cancelling: ``stop()`` sets
    ``stopping``, wakes the loop through ``wake`` and waits until ``run`` returns, which it
    does once it has finished what it holds (``run`` reads ``stopping`` to know).
    ``start()`` after ``stop()`` starts it again."""

    def __init__(self, *, name: str, run: Callable[[], Awaitable[None]], wake: asyncio.Event) -> None:
        self.name = name
        self.wake = wake
        self._run = run
        self._task: asyncio.Task[None] | None = None
        self.stopping = False

    @property
    def running(self) -> bool:
        """Started and not asked to stop."""
        return self._task is not None and not self.stopping

    async def start(self) -> None:
        if self._task is None:
            self.stopping = False
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        if self._task is not None:
            await self._task
            self._task = None


class Periodic:
    """A job run every ``interval`` seconds by a task of its own: the one loop of every
    periodic chore (survey ticks, SLA and assignment sweeps, web chat sweeps and
    heartbeats, Telegram pruning, the KB sync...).

    - **Timing.** The first run is at start (or one interval later, ``run_at_start=False``);
      each wait is the interval drawn within ``± jitter`` (a fraction), so processes
      sharing a database do not all sweep at the same instant. Runs never overlap: the
      wait starts when a run ends.
    - **Failures.** A run that raises is logged and the loop goes on. ``expected`` errors
      (the database is down, Discourse is unreachable) are one warning line; anything
      else is logged with its traceback. While failures follow each other, the wait
      doubles (never beyond ``max(interval, max_backoff)``) and only the 1st, 2nd, 4th,
      8th... of the streak is logged; the first success says how many there were.
    - **Stop.** ``stop()`` cancels the wait or the run in progress and returns once the
      task has ended; ``start()`` after it starts again.
    - **State.** ``last_run_at``, ``last_success_at``, ``last_error_at`` (Unix times),
      ``last_error`` (the exception's class name), ``runs``, ``failures`` and
      ``consecutive_failures`` are read by the service's ``/metrics`` (``posventa_periodic_*``,
      labelled by ``name`` only).

    ``sleep``, ``now`` and ``rand`` are the clock and dice, for tests to drive."""

    def __init__(self, *, name: str, interval: float, job: Callable[[], Awaitable[object]],
                 jitter: float = 0.0, run_at_start: bool = True,
                 expected: tuple[type[BaseException], ...] = (), max_backoff: float = DEFAULT_MAX_BACKOFF_SECONDS,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 now: Callable[[], float] = time.time, rand: Callable[[], float] | None = None) -> None:
        if interval <= 0:
            raise ValueError(f"{name}: the interval must be positive, not {interval!r}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"{name}: jitter is a fraction of the interval in [0, 1), not {jitter!r}")
        self.name = name
        self.interval = float(interval)
        self._job = job
        self._jitter = jitter
        self._run_at_start = run_at_start
        self._expected = expected
        self._max_backoff = max(float(interval), max_backoff)
        self._sleep = sleep
        self._now = now
        # Its own dice, not the random module's shared state: nothing else (a seeded test, a
        # property-test engine watching the global generator) sees a job's jitter.
        self._rand = rand or random.Random().random
        self._task: asyncio.Task[None] | None = None
        self.runs = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_run_at: float | None = None
        self.last_success_at: float | None = None
        self.last_error_at: float | None = None
        self.last_error: str | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait([task])

    def next_wait(self) -> float:
        """Seconds until the next run: the interval (doubled per failure in a row, up to
        the backoff ceiling), within ± jitter."""
        base = self.interval
        if self.consecutive_failures:
            base = min(self.interval * 2 ** min(self.consecutive_failures - 1, 32), self._max_backoff)
        return base * (1.0 + self._jitter * (2.0 * self._rand() - 1.0))

    async def run_once(self) -> bool:
        """One run, with the loop's logging and bookkeeping; True when it succeeded."""
        try:
            await self._job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(exc)
            return False
        self.runs += 1
        self.last_run_at = self.last_success_at = self._now()
        if self.consecutive_failures:
            log.info("%s: running again after %d failures in a row", self.name, self.consecutive_failures)
        self.consecutive_failures = 0
        return True

    def _failed(self, exc: Exception) -> None:
        self.runs += 1
        self.failures += 1
        self.consecutive_failures += 1
        self.last_run_at = self.last_error_at = self._now()
        self.last_error = type(exc).__name__
        streak = self.consecutive_failures
        if streak & (streak - 1):
            return  # not a power of two: said already, said again at the next one
        retry = self.next_wait()
        if streak > 1:
            log.warning("%s: failed %d times in a row (%s: %s); next try in %.0f s",
                        self.name, streak, type(exc).__name__, exc, retry)
        elif isinstance(exc, self._expected):
            log.warning("%s failed (%s: %s); next try in %.0f s", self.name, type(exc).__name__, exc, retry)
        else:
            log.exception("%s failed; next try in %.0f s", self.name, retry)

    async def _loop(self) -> None:
        if not self._run_at_start:
            await self._sleep(self.next_wait())
        while True:
            await self.run_once()
            await self._sleep(self.next_wait())
