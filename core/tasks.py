"""Stopping background tasks: cancel, then wait until they have really finished.

Every component with a loop of its own stops it the same way. Done by hand as
``task.cancel(); with suppress(CancelledError): await task`` it has two faults: a
cancellation aimed at the caller (a shutdown with a deadline) is swallowed along with
the task's own, and a task that had already died of an exception either raises it at
stop or, where ``Exception`` was suppressed too, loses it without a word.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


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
