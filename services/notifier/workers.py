"""notifier's background loops: the dispatcher (claim, send, record), the daily triggers and
the campaign expander. All are safe in every replica (SKIP LOCKED claims, locked runs)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from services.notifier import domain, service
from services.notifier import repository as repo
from services.notifier.metrics import DISPATCH_SECONDS
from services.notifier.providers import Providers
from services.notifier.settings import Settings
from services.notifier.triggers import TRIGGERS, Scanner, trigger_time
from shared.db import Database
from shared.retry import Backoff, is_transient
from shared.worker import PollingWorker

log = logging.getLogger(__name__)


class Dispatcher(PollingWorker):
    """Sends what is due: one batch per step, in two transactions around the providers."""

    def __init__(
        self, settings: Settings, db: Database, providers: Providers, number: int = 0
    ) -> None:
        super().__init__(
            poll_s=settings.dispatch_poll_s,
            full_batch=settings.dispatch_batch,
            backoff_cap_s=settings.retry_backoff_max_s,
            linger_s=0.02,
        )
        self.settings = settings
        self.db = db
        self.providers = providers
        self.health_name = f"Dispatcher#{number}"

    async def dispatch_once(self, now: datetime | None = None) -> int:
        started = time.perf_counter()
        now = now or datetime.now(UTC)
        async with self.db.transaction() as session:
            jobs, claimed = await service.claim(session, self.settings, now)
        if not jobs:
            return claimed
        went = await service.send(
            jobs, self.providers, self.settings.provider_concurrency, self.mark_sending
        )
        if went:
            await self.record(went)
        DISPATCH_SECONDS.observe(time.perf_counter() - started)
        return claimed

    async def record(self, jobs: list[service.Job]) -> None:
        """Record what the providers answered. The answers exist only in memory: a transient
        failure (the database restarting, a terminated connection) is retried for as long
        as the lease runs, so that a sent message is not later taken for unsent."""
        deadline = time.monotonic() + self.settings.dispatch_lease_s * 0.8
        backoff = Backoff(cap=self.settings.retry_backoff_max_s)
        while True:
            try:
                async with self.db.transaction() as session:
                    await service.record(session, self.settings, jobs, datetime.now(UTC))
                return
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() > deadline:
                    raise
                log.warning("recording %d sends failed, retrying: %s", len(jobs), exc)
                await backoff.wait()

    async def mark_sending(self, wave: list[service.Job]) -> set[str]:
        """Lease the wave afresh as it goes out; returns the ids still this replica's."""
        lease = datetime.now(UTC) + timedelta(seconds=self.settings.dispatch_lease_s)
        async with self.db.transaction() as session:
            held = await repo.mark_sending(session, [(j.id, j.lease) for j in wave], lease)
        for job in wave:
            job.lease = lease
        return held

    async def step(self) -> int:
        return await self.dispatch_once()


class TriggerScheduler(PollingWorker):
    """Starts each daily trigger once its local time has come, per timezone in use."""

    def __init__(
        self, settings: Settings, scanner: Scanner, db: Database, wake: Callable[[], None]
    ) -> None:
        super().__init__(
            poll_s=settings.trigger_poll_s,
            full_batch=1_000_000_000,  # one pass per poll
            backoff_cap_s=settings.retry_backoff_max_s,
        )
        self.settings = settings
        self.scanner = scanner
        self.db = db
        self.wake_dispatch = wake
        self.finished: set[tuple[str, str, str]] = set()

    async def tick(self, now: datetime | None = None) -> int:
        now = now or datetime.now(UTC)
        async with self.db.transaction() as session:
            zones = {self.settings.business_timezone, *await repo.timezones_in_use(session)}
        queued = 0
        for tz in sorted(zones):
            local = now.astimezone(ZoneInfo(tz))
            for trigger in TRIGGERS:
                key = (trigger, tz, local.date().isoformat())
                if key in self.finished:
                    continue
                if local.time().replace(tzinfo=None) < domain.parse_hhmm(
                    trigger_time(self.settings, trigger)
                ):
                    continue
                result = await self.scanner.run(trigger, tz, local.date(), now)
                queued += int(result["queued"])
                if result["queued"]:
                    self.wake_dispatch()
                if result["status"] == "done":
                    self.finished.add(key)
        return queued

    async def step(self) -> int:
        await self.tick()
        return 0


class CampaignExpander(PollingWorker):
    """Queues due campaigns' recipients, a chunk per step."""

    def __init__(self, settings: Settings, scanner: Scanner, wake: Callable[[], None]) -> None:
        super().__init__(
            poll_s=settings.campaign_poll_s,
            full_batch=1,
            backoff_cap_s=settings.retry_backoff_max_s,
        )
        self.scanner = scanner
        self.wake_dispatch = wake

    async def step(self) -> int:
        if not await self.scanner.expand_one(datetime.now(UTC)):
            return 0
        self.wake_dispatch()  # a chunk was queued: send it now, not at the next poll
        return 1
