"""Group commit: concurrent callers' requests handled as batches.

A caller submits one request and awaits its own answer. Requests that arrive while earlier
batches are being handled queue up; as soon as a slot frees, everything queued (up to
`max_size`) becomes the next batch. A lone request therefore goes through at once, alone,
and under load the batch grows by itself to what arrived during one handling, so the
per-batch costs (transactions, round trips, commits) are paid once for many requests.

Under load, one thing spoils that: when a batch of N is answered, its N callers come back
one after the other, and the first of them would start a batch of its own while the rest
are still arriving, so batches alternate between 1 and N - 1 and each costs a full
handling (and once split, two halves keep alternating). With `linger` (seconds) set, when
a batch of N finishes with Q requests queued, the next batch waits until N + Q are queued
(its N callers coming back), or until `linger` has passed, whichever comes first. After a
lone request with nothing queued nothing waits, so a quiet service adds no delay.

    batcher = GroupCommit(handle_many, max_size=200, in_flight=1, linger=0.02)
    answer = await batcher.submit(request)

`handle_many(batch)` returns one outcome per request, in order: a value, or an exception
to raise in that caller. If it raises, every caller in the batch gets that exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        handle_many: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_size: int,
        in_flight: int,
        linger: float = 0.0,
    ) -> None:
        if max_size < 1 or in_flight < 1 or linger < 0:
            raise ValueError("max_size and in_flight must be at least 1, linger not negative")
        self._handle_many = handle_many
        self._max_size = max_size
        self._free = in_flight
        self._linger = linger
        self._expect = 1  # how many queued requests the next batch waits for (see linger)
        self._waiting: asyncio.TimerHandle | None = None
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, request: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        self._dispatch()
        # A caller that goes away (cancelled) cancels only its own future; its batch runs on.
        return await future

    def _dispatch(self, *, waited: bool = False) -> None:
        if self._waiting is not None:
            if not waited and len(self._queue) < self._expect:
                return  # still gathering the next batch
            self._waiting.cancel()
            self._waiting = None
        elif (
            not waited
            and self._linger > 0
            and self._free > 0
            and 0 < len(self._queue) < self._expect
        ):
            self._waiting = asyncio.get_running_loop().call_later(
                self._linger, lambda: self._dispatch(waited=True)
            )
            return
        while self._queue and self._free > 0:
            batch, self._queue = self._queue[: self._max_size], self._queue[self._max_size :]
            self._free -= 1
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            outcomes = await self._handle_many([request for request, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(batch)}")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # handed to every caller of the batch
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        finally:
            # Whoever is queued now plus this batch's callers, who will likely be back.
            self._expect = min(len(self._queue) + len(batch), self._max_size)
            self._free += 1
            self._dispatch()

    async def drain(self) -> None:
        """Wait until every submitted request has been handled (for shutdown)."""
        while self._running or self._queue:
            if self._running:
                await asyncio.gather(*self._running, return_exceptions=True)
            else:
                self._dispatch(waited=True)  # nothing more is coming: no reason to wait
                await asyncio.sleep(0)
