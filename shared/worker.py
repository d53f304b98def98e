"""A background loop that repeats a batched step: the relay, the processor and sweeps use it."""

from __future__ import annotations

import asyncio
import logging

from shared.retry import Backoff, is_transient

log = logging.getLogger(__name__)


class PollingWorker:
    """Runs `step()` again at once while it does full batches; otherwise waits `poll_s` or a wake-up.

    Transient failures are retried with backoff; a stop lets the current backlog drain (the
    loop ends at the first step that finds less than a full batch).
    """

    def __init__(
        self, *, poll_s: float, full_batch: int, backoff_cap_s: float, linger_s: float = 0.0
    ) -> None:
        self.poll_s = poll_s
        # After a wake-up, wait this long before the step so that a burst of small writes
        # (single-event HTTP requests, say) is handled as one batch, not one step each.
        self.linger_s = linger_s
        self.full_batch = full_batch
        self.backoff_cap_s = backoff_cap_s
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.healthy = False

    async def step(self) -> int:
        raise NotImplementedError

    async def on_exit(self) -> None:
        return None

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        backoff = Backoff(cap=self.backoff_cap_s)
        self.healthy = True
        try:
            while True:
                try:
                    done = await self.step()
                    backoff.reset()
                except Exception as exc:
                    if is_transient(exc):
                        log.warning("%s: transient failure, retrying: %s", type(self).__name__, exc)
                    else:
                        log.exception("%s: step failed", type(self).__name__)
                    if self._stopping.is_set() and backoff.attempt > 5:
                        break
                    await backoff.wait()
                    continue
                if done >= self.full_batch:
                    continue
                if self._stopping.is_set():
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                    if self.linger_s and not self._stopping.is_set():
                        await asyncio.sleep(self.linger_s)
                except TimeoutError:
                    pass
        finally:
            self.healthy = False
            await self.on_exit()
