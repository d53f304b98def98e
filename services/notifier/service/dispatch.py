"""The dispatcher's first two steps: claiming due notifications and deciding each (send,
defer, suppress), then sending the claimed ones to the providers in waves.

Dispatch commits in two steps around the providers (no remote call while row locks are held):

1. claim due rows (SKIP LOCKED), apply opt-outs, quiet hours and caps (the day's counters are
   locked in key order, so two replicas never both let a user's 4th message through), and
   mark the ones to send `claimed` with a lease; commit;
2. send, outside any transaction, in waves of `provider_concurrency` notifications: each wave
   is marked `sending` (a one-statement commit) just before it goes out;
3. record every attempt and each notification's outcome in one transaction, with its
   `notify.events` and experiment exposures (`service.outcomes`).

A replica that dies leaves rows whose lease runs out, and another one takes them. `claimed`
ones never went out: they are sent. `sending` ones may have: a transactional or reminder
message is sent again (same `apns-id` and collapse id, so the device shows it once); a
campaign's is not (marketing goes at most once: it is recorded `failed`, reason
`interrupted`). So a crash costs a campaign at most one wave, never a resend.
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
from services.notifier.providers import Outcome, Providers, Push
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
    devices: list[tuple[str, str]]  # (platform, token)
    outcomes: list[tuple[str, str, Outcome]] = field(default_factory=list)  # provider, token


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

    fresh, resumed, decided = _triage(rows, now)
    locked, counts = await _lock_day_counts(session, fresh, prefs, now)
    jobs = _decide(settings, fresh, devices, prefs, counts, now, decided)
    jobs += _resume(resumed, devices, now, decided)

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


def _triage(
    rows: Sequence[Row[Any]], now: datetime
) -> tuple[list[Row[Any]], list[Row[Any]], list[dict]]:
    """Fresh rows (to decide), resumed ones (decided before: to send) and the decisions
    already made (a campaign's message a dead replica may have sent)."""
    fresh, resumed, decided = [], [], []
    for r in rows:
        if r.status == "claimed":  # its replica died before this one went out: send it
            resumed.append(r)
        elif r.status == "sending":  # its replica died mid-send: the lease ran out
            if r.campaign_id is not None:  # marketing goes at most once
                decided.append(_decision(r.id, "failed", "interrupted", now))
                DECISIONS.labels("interrupted").inc()
            else:
                resumed.append(r)
        elif r.attempts > 0:  # a retry: opt-outs, quiet hours and caps were applied before
            resumed.append(r)
        else:
            fresh.append(r)
    return fresh, resumed, decided


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
            jobs.append(_job(r, devices[r.user_id]))
    return jobs


def _resume(
    resumed: list[Row[Any]], devices: Devices, now: datetime, decided: list[dict]
) -> list[Job]:
    """The rows decided before go out again, to the user's devices still active."""
    jobs: list[Job] = []
    for r in resumed:
        if devices.get(r.user_id):
            jobs.append(_job(r, devices[r.user_id]))
        else:
            decided.append(_decision(r.id, "failed", "no_device", now))
    return jobs


def _decision(notification_id: str, status: str, reason: str | None, due_at: datetime) -> dict:
    return {"id": notification_id, "status": status, "reason": reason, "due_at": due_at}


def _job(row: Any, devices: list[tuple[str, str]]) -> Job:
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
    )


async def send(
    jobs: Sequence[Job],
    providers: Providers,
    concurrency: int,
    mark_sending: Callable[[list[str]], Awaitable[None]],
) -> None:
    """Every job to every device, `concurrency` notifications a wave (at most that many
    requests in flight); each wave is marked `sending` before it goes."""
    gate = asyncio.Semaphore(concurrency)

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
        job.outcomes.append((provider.name, token, outcome))

    for start in range(0, len(jobs), concurrency):
        wave = jobs[start : start + concurrency]
        await mark_sending([j.id for j in wave])
        await asyncio.gather(*(one(j, p, t) for j in wave for p, t in j.devices))
