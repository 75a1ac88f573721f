"""Group commit: many waiters' items stored in one transaction, each answered after it commits.

``GroupCommit.submit`` queues an item and waits; the batcher takes whatever has queued
up and hands it to ``commit`` (one transaction). Every waiter gets its result only
after that commit, so an adapter never acknowledges anything that is not durable. With
``max_concurrent`` above one (PostgreSQL), batches may be in flight at once, never with
items of the same sender in both (``_take``).

A commit per item caps throughput near the database's fsync rate; batching the same
work approaches the bulk-insert rate. If a batch fails on a constraint (a race with
another process) it is retried once, then item by item, so one poison item never takes
its batch-mates down with it. ``StorageUnavailable`` is answered to the waiters as it is:
the transport says "try later".

The inbox (``core.inbox``) is its user: items are inbound messages, results receipts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.exc import IntegrityError

from posventa.core.errors import StorageUnavailable
from posventa.core.tasks import DrainingLoop

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")
Note = TypeVar("Note")


@dataclass(slots=True)
class _Pending(Generic[Item, Result]):
    item: Item
    #: The waiter's future. It may be cancelled (the waiter went away) while the item is
    #: still stored: ``settled`` is ours, not the waiter's.
    future: asyncio.Future[Result]
    settled: bool = False


class GroupCommit(Generic[Item, Result, Note]):
    """The batcher. ``commit(items)`` stores a batch in one transaction and returns one
    result per item plus notes; after each batch (and its retries) ``after(notes)`` runs
    with every note of what was stored. ``sender(item)`` keys the items that must commit
    in order."""

    def __init__(
        self,
        *,
        commit: Callable[[list[Item]], Awaitable[tuple[Sequence[Result], Sequence[Note]]]],
        after: Callable[[list[Note]], Awaitable[None]],
        sender: Callable[[Item], Hashable],
        max_batch: int,
        max_concurrent: int = 1,
        name: str = "group-commit",
    ) -> None:
        self._commit = commit
        self._after = after
        self._sender = sender
        self._name = name
        self._max_batch = max_batch
        self._max_concurrent = max(1, max_concurrent)
        self._concurrent_min = max(1, max_batch // 2)
        self._queue: list[_Pending[Item, Result]] = []
        self._wake = asyncio.Event()
        self._loop = DrainingLoop(name=f"{name}-batcher", run=self._run, wake=self._wake)
        self.peak_batches_in_flight = 0

    @property
    def running(self) -> bool:
        return self._loop.running

    async def start(self) -> None:
        await self._loop.start()

    async def stop(self) -> None:
        """Drain what is queued, then stop."""
        await self._loop.stop()

    async def submit(self, item: Item) -> Result:
        if not self.running:
            raise StorageUnavailable(f"{self._name} is not running")
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(item, future))
        self._wake.set()
        # No shield (an outer future and two more callbacks per item): a waiter that is
        # cancelled cancels only its own future; the batcher still stores the item and
        # tracks it with ``_Pending.settled``.
        return await future

    async def _run(self) -> None:
        in_flight: set[asyncio.Task[None]] = set()
        busy: set[Hashable] = set()  # the senders with an item in a batch in flight
        try:
            while True:
                self._wake.clear()
                while len(in_flight) < self._max_concurrent and (batch := self._take(busy, bool(in_flight))):
                    senders = {self._sender(p.item) for p in batch}
                    busy |= senders
                    task = asyncio.create_task(self._commit_batch(batch), name=f"{self._name}-batch")
                    in_flight.add(task)
                    self.peak_batches_in_flight = max(self.peak_batches_in_flight, len(in_flight))

                    def done(t: asyncio.Task[None], senders: set[Hashable] = senders) -> None:
                        in_flight.discard(t)
                        busy.difference_update(senders)
                        self._wake.set()
                        # _commit_batch answers every failure itself; anything else is a bug,
                        # and must show rather than vanish with the task.
                        if not t.cancelled() and t.exception() is not None:
                            log.error("%s batch task failed", self._name, exc_info=t.exception())

                    task.add_done_callback(done)
                if self._loop.stopping and not self._queue and not in_flight:
                    return
                await self._wake.wait()
        finally:
            # Cancelled: the batches already taken still commit and answer their waiters.
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    def _take(self, busy: set[Hashable], others_in_flight: bool) -> list[_Pending[Item, Result]]:
        """The next batch, in arrival order, leaving queued every item whose sender has
        one in a batch in flight: a sender's items commit one batch after the other, so
        their order, their case (the first opens it, the next join it) and their identity
        (created once) are as with a single batcher.

        With nothing in flight, whatever is queued goes at once (latency under light load).
        Beside a batch in flight, only a batch of at least half the maximum starts: a
        handful of items would cost a transaction of their own and leave the next
        arrivals to queue behind them."""
        if not self._queue:
            return []
        if not others_in_flight:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            return batch
        if len(self._queue) < self._concurrent_min and not self._loop.stopping:
            return []
        batch: list[_Pending[Item, Result]] = []
        rest: list[_Pending[Item, Result]] = []
        for p in self._queue:
            if len(batch) < self._max_batch and self._sender(p.item) not in busy:
                batch.append(p)
            else:
                rest.append(p)
        self._queue[:] = rest
        return batch

    async def _commit_batch(self, batch: list[_Pending[Item, Result]]) -> None:
        try:
            notes = await self._store(batch)
        except StorageUnavailable as exc:
            for p in batch:
                _fail(p, exc)
            return
        if notes:
            await self._after(notes)

    async def _store(self, batch: list[_Pending[Item, Result]]) -> list[Note]:
        """The batch in one transaction; after a constraint failure once more, and after
        any other failure item by item. ``StorageUnavailable`` (of the batch as a whole)
        is raised: every waiter of the batch is answered with it."""
        try:
            return await self._try_batch(batch)
        except StorageUnavailable:
            raise
        except IntegrityError:
            # Usually another process created the same identity or message at the same
            # time: once more sees its rows; after that, isolate item by item.
            try:
                return await self._try_batch(batch)
            except StorageUnavailable:
                raise
            except Exception:
                return await self._one_by_one(batch)
        except Exception:
            log.exception("%s batch of %d failed; retrying one by one", self._name, len(batch))
            return await self._one_by_one(batch)

    async def _one_by_one(self, batch: list[_Pending[Item, Result]]) -> list[Note]:
        notes: list[Note] = []
        for p in batch:
            if p.settled:
                continue
            try:
                notes.extend(await self._try_batch([p]))
            except StorageUnavailable as exc:
                _fail(p, exc)
            except Exception as exc:
                log.exception("%s could not store an item", self._name)
                _fail(p, StorageUnavailable(f"item could not be stored: {type(exc).__name__}"))
        return notes

    async def _try_batch(self, batch: list[_Pending[Item, Result]]) -> list[Note]:
        results, notes = await self._commit([p.item for p in batch])
        for p, result in zip(batch, results, strict=True):
            p.settled = True
            if not p.future.done():
                p.future.set_result(result)
        return list(notes)


def _fail(p: _Pending[Item, Result], exc: BaseException) -> None:
    p.settled = True
    if not p.future.done():
        p.future.set_exception(exc)
        # The waiter may have gone away (client disconnected); don't warn about it.
        with contextlib.suppress(BaseException):
            p.future.exception()
