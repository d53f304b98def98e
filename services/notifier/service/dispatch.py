"""The dispatcher's first two steps: claiming due notifications and deciding each (send,
defer, suppress), then sending the claimed ones to the providers in waves.

Dispatch commits in steps around the providers (no remote call while row locks are held):

1. claim due rows (SKIP LOCKED), apply opt-outs, quiet hours and caps (the day's counters are
   locked in key order, so two replicas never both let a user's 4th message through), and
   mark the ones to send `claimed` with a lease (`due_at`); commit;
2. send, outside any transaction, in waves of `provider_concurrency` notifications: each wave
   is marked `sending` with a fresh lease (a one-statement commit) just before it goes out,
   and only the rows still held under the lease this replica set go (one another replica
   took over after the lease ran out is left to it);
3. record every attempt, each device's delivery and each notification's outcome in one
   transaction, with its `notify.events` and experiment exposures (`service.outcomes`), for
   the rows still under this replica's lease.

At least once: a replica that dies leaves rows whose lease runs out, and another one takes
them and sends them again, `claimed` and `sending` ones alike, campaigns included. A message
that did reach a phone before the crash is sent with the same collapse identifiers
(`Push.collapse_id`), so the second copy replaces the first rather than showing twice. A
retry goes only to the devices that do not have the message yet.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier import domain
from services.notifier import repository as repo
from services.notifier.domain import Caps, DayCount, Preferences
from services.notifier.metrics import DECISIONS
from services.notifier.providers import Outcome, Providers, Push, device_digest
from services.notifier.service.preferences import preferences_from
from services.notifier.settings import Settings

log = logging.getLogger(__name__)

Devices = dict[str, list[tuple[str, str]]]  # user -> (platform, token)
Counts = dict[str, dict[date, DayCount]]  # user -> day -> the day's counters


@dataclass
class Job:
    """A notification claimed for sending, with the devices it goes to."""

    id: str
    user_id: str
    category: str
    trigger: str
    title: str
    body: str
    data: dict[str, Any]
    attempts: int
    campaign_id: str | None
    experiment: str | None
    variant: str | None
    devices: list[tuple[str, str]]  # (platform, token): the ones it goes to this time
    lease: datetime  # the row's due_at while this replica holds it
    delivered_by: str | None = None  # the provider of an earlier round's delivery, if any
    # (provider, platform, token, outcome) of every device tried
    outcomes: list[tuple[str, str, str, Outcome]] = field(default_factory=list)


async def claim(session: AsyncSession, settings: Settings, now: datetime) -> tuple[list[Job], int]:
    """Claim due notifications and decide each (send, defer, suppress); the ones to send are
    leased and returned, with how many were claimed in all (a full batch: more may be due).
    Runs in its own transaction, committed before anything is sent."""
    rows = await repo.claim_due(session, now, settings.dispatch_batch)
    if not rows:
        return [], 0
    lease_until = now + timedelta(seconds=settings.dispatch_lease_s)
    devices: Devices = defaultdict(list)
    for d in await repo.active_devices(session, (r.user_id for r in rows)):
        devices[d.user_id].append((d.platform, d.token))
    prefs = {r.user_id: preferences_from(r, settings) for r in rows}

    fresh, resumed = _triage(rows)
    earlier = await repo.settled_deliveries(session, [r.id for r in resumed if r.attempts > 0])
    locked, counts = await _lock_day_counts(session, fresh, prefs, now)
    decided: list[dict] = []
    jobs = _decide(settings, fresh, devices, prefs, counts, now, decided, lease_until)
    jobs += _resume(resumed, devices, earlier, lease_until)

    await repo.set_counts(
        session,
        [
            {"user_id": user_id, "day": day, "capped": c.capped, "marketing": c.marketing}
            for user_id, days in counts.items()
            for day, c in days.items()
            if (user_id, day) in locked
        ],
    )
    decided += [_decision(j.id, "claimed", None, lease_until) for j in jobs]
    await repo.set_decided(session, decided)
    return jobs, len(rows)


def _triage(rows: Sequence[Row[Any]]) -> tuple[list[Row[Any]], list[Row[Any]]]:
    """Fresh rows (to decide) and resumed ones (decided before: to send again)."""
    fresh, resumed = [], []
    for r in rows:
        if r.status in ("claimed", "sending"):  # its replica died: the lease ran out
            resumed.append(r)
            DECISIONS.labels("resumed").inc()
        elif r.attempts > 0:  # a retry: opt-outs, quiet hours and caps were applied before
            resumed.append(r)
        else:
            fresh.append(r)
    return fresh, resumed


async def _lock_day_counts(
    session: AsyncSession, fresh: list[Row[Any]], prefs: dict[str, Preferences], now: datetime
) -> tuple[dict[tuple[Any, ...], Row[Any]], Counts]:
    """The day each user's counters are on, locked in key order before any decision."""
    wanted = {
        (r.user_id, now.astimezone(prefs[r.user_id].zone).date())
        for r in fresh
        if r.category != "transactional"
    }
    locked = await repo.lock_counts(session, wanted)
    counts: Counts = defaultdict(dict)
    for (user_id, day), row in locked.items():
        counts[user_id][day] = DayCount(row.capped, row.marketing)
    return locked, counts


def _decide(
    settings: Settings,
    fresh: list[Row[Any]],
    devices: Devices,
    prefs: dict[str, Preferences],
    counts: Counts,
    now: datetime,
    decided: list[dict],
    lease: datetime,
) -> list[Job]:
    """Apply opt-outs, quiet hours and caps to the fresh rows (moving the day's counts): the
    jobs to send; the others' decisions go to `decided`."""
    caps = Caps(settings.cap_daily, settings.cap_marketing_daily)
    jobs: list[Job] = []
    for r in fresh:
        if not devices.get(r.user_id):
            decided.append(_decision(r.id, "suppressed", "no_device", now))
            DECISIONS.labels("no_device").inc()
            continue
        verdict = domain.decide(
            r.category,
            prefs[r.user_id],
            counts[r.user_id],
            caps,
            now,
            quiet_transactional=settings.quiet_hours_transactional,
        )
        if verdict.action == "suppress":
            decided.append(_decision(r.id, "suppressed", verdict.reason, now))
            DECISIONS.labels((verdict.reason or "").split(":")[0]).inc()
        elif verdict.action == "defer":
            assert verdict.until is not None
            decided.append(_decision(r.id, "deferred", verdict.reason, verdict.until))
            DECISIONS.labels("deferred").inc()
        else:
            DECISIONS.labels("send").inc()
            jobs.append(_job(r, devices[r.user_id], lease))
    return jobs


def _resume(
    resumed: list[Row[Any]], devices: Devices, earlier: repo.Settled, lease: datetime
) -> list[Job]:
    """The rows decided before go out again, to the user's active devices that do not have
    them settled yet (delivered, or refused for good). A job left with no device to try is
    still recorded: `sent` when an earlier round delivered it, else `failed: no_device`."""
    jobs: list[Job] = []
    for r in resumed:
        done = earlier.get(r.id, {})
        todo = [(p, t) for p, t in devices.get(r.user_id, ()) if device_digest(t) not in done]
        job = _job(r, todo, lease)
        job.delivered_by = next((prov for st, prov in done.values() if st == "sent"), None)
        jobs.append(job)
    return jobs


def _decision(notification_id: str, status: str, reason: str | None, due_at: datetime) -> dict:
    return {"id": notification_id, "status": status, "reason": reason, "due_at": due_at}


def _job(row: Any, devices: list[tuple[str, str]], lease: datetime) -> Job:
    return Job(
        id=row.id,
        user_id=row.user_id,
        category=row.category,
        trigger=row.trigger,
        title=row.title,
        body=row.body,
        data=row.data or {},
        attempts=row.attempts,
        campaign_id=row.campaign_id,
        experiment=row.experiment,
        variant=row.variant,
        devices=list(devices),
        lease=lease,
    )


async def send(
    jobs: Sequence[Job],
    providers: Providers,
    concurrency: int,
    mark_sending: Callable[[list[Job]], Awaitable[set[str]]],
) -> list[Job]:
    """Every job to every device, `concurrency` notifications a wave (at most that many
    requests in flight); each wave is marked `sending` before it goes, and only its jobs
    still held go. Returns the jobs that went (to be recorded)."""
    gate = asyncio.Semaphore(concurrency)
    went: list[Job] = []

    async def one(job: Job, platform: str, token: str) -> None:
        provider = providers.for_platform(platform)
        push = Push(
            job.id, job.user_id, platform, token, job.title, job.body, job.category, job.data
        )
        async with gate:
            try:
                outcome = await provider.send(push)
            except Exception as exc:  # a provider bug or a missing key: try again later
                log.exception("%s failed on %s", provider.name, job.id)
                outcome = Outcome("retry", detail=f"{type(exc).__name__}: {exc}"[:300])
        job.outcomes.append((provider.name, platform, token, outcome))

    for start in range(0, len(jobs), concurrency):
        held = await mark_sending(list(jobs[start : start + concurrency]))
        wave = [j for j in jobs[start : start + concurrency] if j.id in held]
        await asyncio.gather(*(one(j, p, t) for j in wave for p, t in j.devices))
        went += wave
    return went
