"""Notifier use cases: devices and preferences, queueing notifications from their causes,
the dispatcher's claim-decide-send-record cycle, daily triggers and campaigns.

A notification's id is derived from its cause (`domain.notification_id`), and queueing is an
insert that ignores an id already there: an event replayed, a trigger re-run after a crash or
a campaign chunk expanded twice queues nothing new.

Dispatch commits in two steps around the providers (no remote call while row locks are held):

1. claim due rows (SKIP LOCKED), apply opt-outs, quiet hours and caps (the day's counters are
   locked in key order, so two replicas never both let a user's 4th message through), and
   mark the ones to send `claimed` with a lease; commit;
2. send, outside any transaction, in waves of `provider_concurrency` notifications: each wave
   is marked `sending` (a one-statement commit) just before it goes out;
3. record every attempt and each notification's outcome in one transaction, with its
   `notify.events` and experiment exposures.

A replica that dies leaves rows whose lease runs out, and another one takes them. `claimed`
ones never went out: they are sent. `sending` ones may have: a transactional or reminder
message is sent again (same `apns-id` and collapse id, so the device shows it once); a
campaign's is not (marketing goes at most once: it is recorded `failed`, reason
`interrupted`). So a crash costs a campaign at most one wave, never a resend.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier import domain
from services.notifier import repository as repo
from services.notifier.domain import Caps, DayCount, Preferences
from services.notifier.metrics import (
    ATTEMPTS,
    DECISIONS,
    DEVICES_DEACTIVATED,
    QUEUED,
)
from services.notifier.models import messaging
from services.notifier.providers import Outcome, Providers, Push, device_digest
from services.notifier.settings import Settings
from services.notifier.templates import BUILTIN, Template
from shared.errors import DomainError, InvalidInput, NotFound
from shared.events import (
    EXPERIMENT_EXPOSURES,
    NOTIFY_EVENTS,
    ExperimentExposure,
    NotifyEvent,
    stable_id,
)
from shared.experiments import assign
from shared.messaging import OutgoingEvent, add_to_outbox

log = logging.getLogger(__name__)


# --- preferences and templates -----------------------------------------------------------


def preferences_from(row: Any, settings: Settings, prefix: str = "") -> Preferences:
    """A user's preferences from their row (None: the defaults)."""
    default_start = domain.parse_hhmm(settings.quiet_start)
    default_end = domain.parse_hhmm(settings.quiet_end)
    if row is None or getattr(row, f"{prefix}reminders", None) is None:
        return Preferences(
            quiet_start=default_start,
            quiet_end=default_end,
            timezone=settings.business_timezone,
        )
    start = getattr(row, f"{prefix}quiet_start")
    end = getattr(row, f"{prefix}quiet_end")
    return Preferences(
        reminders=getattr(row, f"{prefix}reminders"),
        marketing=getattr(row, f"{prefix}marketing"),
        quiet_enabled=getattr(row, f"{prefix}quiet_enabled"),
        quiet_start=domain.parse_hhmm(start) if start else default_start,
        quiet_end=domain.parse_hhmm(end) if end else default_end,
        timezone=getattr(row, f"{prefix}timezone") or settings.business_timezone,
        locale=getattr(row, f"{prefix}locale") or domain.DEFAULT_LOCALE,
    )


async def template_book(session: AsyncSession) -> dict[str, Template]:
    """Built-in templates overlaid with the stored ones."""
    book = dict(BUILTIN)
    for code, row in (await repo.stored_templates(session)).items():
        book[code] = Template(code, row.category, row.texts, tuple(row.variables))
    return book


@dataclass
class Planned:
    """A notification to queue: its cause, its template and variables (or literal texts)."""

    id: str
    user_id: str
    trigger: str
    due_at: datetime
    template: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    category: str | None = None  # defaults to the template's
    title: str | None = None  # literal texts (a campaign without a template)
    body: str | None = None
    campaign_id: str | None = None
    experiment: str | None = None
    variant: str | None = None


async def queue(session: AsyncSession, settings: Settings, planned: Sequence[Planned]) -> int:
    """Render each in its user's language and insert it; returns how many were new."""
    if not planned:
        return 0
    book = await template_book(session)
    prefs = await repo.prefs_of(session, (p.user_id for p in planned))
    rows = []
    for p in planned:
        locale = prefs[p.user_id].locale if p.user_id in prefs else domain.DEFAULT_LOCALE
        if p.template is not None:
            template = book[p.template]
            title, body = domain.render(template.texts, locale, p.variables)
            category = p.category or template.category
        else:
            texts = {domain.DEFAULT_LOCALE: {"title": p.title or "", "body": p.body or ""}}
            title, body = domain.render(texts, locale, p.variables)
            category = p.category or "marketing"
        rows.append(
            {
                "id": p.id,
                "user_id": p.user_id,
                "category": category,
                "trigger": p.trigger,
                "template": p.template,
                "title": title,
                "body": body,
                "data": {"trigger": p.trigger, **{k: str(v) for k, v in p.variables.items()}},
                "campaign_id": p.campaign_id,
                "experiment": p.experiment,
                "variant": p.variant,
                "due_at": p.due_at,
            }
        )
    new = await repo.queue(session, rows)
    if new:
        fresh = set(new)  # a repeated cause finds its notification there: not queued again
        counts: dict[str, int] = defaultdict(int)
        for p in planned:
            if p.id in fresh:
                counts[p.trigger] += 1
        for trigger, n in counts.items():
            QUEUED.labels(trigger).inc(n)
    return len(new)


# --- dispatch ----------------------------------------------------------------------------


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
    caps = Caps(settings.cap_daily, settings.cap_marketing_daily)
    lease_until = now + timedelta(seconds=settings.dispatch_lease_s)
    devices: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for d in await repo.active_devices(session, (r.user_id for r in rows)):
        devices[d.user_id].append((d.platform, d.token))
    prefs = {r.user_id: preferences_from(r, settings) for r in rows}

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

    # The day each user's counters are on, locked in key order before any decision.
    wanted = {
        (r.user_id, now.astimezone(prefs[r.user_id].zone).date())
        for r in fresh
        if r.category != "transactional"
    }
    locked = await repo.lock_counts(session, wanted)
    counts: dict[str, dict[date, DayCount]] = defaultdict(dict)
    for (user_id, day), row in locked.items():
        counts[user_id][day] = DayCount(row.capped, row.marketing)

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
    for r in resumed:
        if devices.get(r.user_id):
            jobs.append(_job(r, devices[r.user_id]))
        else:
            decided.append(_decision(r.id, "failed", "no_device", now))

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


async def record(
    session: AsyncSession, settings: Settings, jobs: Sequence[Job], now: datetime
) -> dict[str, str]:
    """Write what the providers answered: attempts, each notification's status, devices
    found invalid, and the `sent` events. Returns the status given to each notification."""
    attempts_rows, invalid, recorded = [], [], []
    statuses: dict[str, str] = {}
    for job in jobs:
        attempt = job.attempts + 1
        sent = [(p, o) for p, _, o in job.outcomes if o.kind == "sent"]
        retry = [o for _, _, o in job.outcomes if o.kind == "retry"]
        for provider, token, outcome in job.outcomes:
            ATTEMPTS.labels(provider, outcome.kind).inc()
            attempts_rows.append(
                {
                    "notification_id": job.id,
                    "device": device_digest(token),
                    "provider": provider,
                    "outcome": outcome.kind,
                    "status_code": outcome.status_code,
                    "detail": outcome.detail,
                    "provider_message_id": outcome.message_id,
                }
            )
            if outcome.kind == "invalid_token":
                invalid.append(token)
        row: dict[str, Any] = {
            "id": job.id,
            "attempts": attempt,
            "provider": None,
            "provider_message_id": None,
            "sent_at": None,
            "reason": None,
            "due_at": now,
        }
        if sent:
            provider, outcome = sent[0]
            row.update(
                status="sent",
                provider=provider,
                provider_message_id=outcome.message_id,
                sent_at=now,
            )
        elif retry and attempt < settings.max_attempts:
            after = max((o.retry_after_s or 0.0) for o in retry) or None
            delay = domain.retry_delay(attempt, settings.retry_base_s, settings.retry_max_s, after)
            row.update(
                status="queued",
                reason=f"retrying: {retry[0].detail or retry[0].status_code}"[:200],
                due_at=now + timedelta(seconds=delay),
            )
            row["provider"] = job.outcomes[0][0]
        else:
            failed = [o for _, _, o in job.outcomes if o.kind != "sent"]
            if failed and all(o.kind == "invalid_token" for o in failed):
                reason = "invalid_token"
            elif retry:
                reason = (
                    f"gave up after {attempt} attempts: {retry[0].detail or retry[0].status_code}"
                )
            else:
                reason = f"rejected: {failed[0].status_code} {failed[0].detail or ''}".strip()
            row.update(status="failed", reason=reason[:200], provider=job.outcomes[0][0])
        statuses[job.id] = row["status"]
        recorded.append(row)

    await repo.insert_attempts(session, attempts_rows)
    if invalid:
        await repo.deactivate(session, invalid, "provider: invalid token")
        DEVICES_DEACTIVATED.inc(len(invalid))
    written = await repo.set_recorded(session, recorded)
    events: list[OutgoingEvent] = []
    for job in jobs:
        if job.id not in written or statuses[job.id] != "sent":
            continue
        provider = next(p for p, _, o in job.outcomes if o.kind == "sent")
        events.append(_notify_event("sent", job, provider, now))
        if job.experiment and job.variant:
            exposure = ExperimentExposure(
                event_id=stable_id("exposure", job.experiment, job.user_id),
                experiment=job.experiment,
                variant=job.variant,
                user_id=job.user_id,
                source="notifier",
                occurred_at=now,
            )
            events.append(
                OutgoingEvent(EXPERIMENT_EXPOSURES, job.user_id, exposure.model_dump_json())
            )
    await add_to_outbox(session, messaging.outbox, events)
    return statuses


def _notify_event(kind: str, job: Any, provider: str | None, at: datetime) -> OutgoingEvent:
    event = NotifyEvent(
        type=kind,  # type: ignore[arg-type]
        event_id=stable_id("notify", job.id, kind),
        notification_id=job.id,
        user_id=job.user_id,
        category=job.category,
        trigger=job.trigger,
        campaign_id=job.campaign_id,
        experiment=job.experiment,
        variant=job.variant,
        provider=provider,
        occurred_at=at,
    )
    return OutgoingEvent(NOTIFY_EVENTS, job.user_id, event.model_dump_json())


# --- the API's use cases -----------------------------------------------------------------


async def register_device(
    session: AsyncSession, user_id: str, platform: str, token: str
) -> tuple[dict[str, Any], bool]:
    created = await repo.upsert_device(session, user_id, platform, token)
    return {"user_id": user_id, "platform": platform, "token": token, "active": True}, created


async def remove_device(session: AsyncSession, user_id: str, token: str) -> None:
    if not await repo.remove_device(session, user_id, token):
        raise NotFound("device", f"{device_digest(token)} of user {user_id}")


async def list_devices(session: AsyncSession, user_id: str) -> list[dict[str, Any]]:
    return [
        {
            "platform": d.platform,
            "device": device_digest(d.token),
            "active": d.active,
            "deactivated_reason": d.deactivated_reason,
            "created_at": d.created_at,
            "updated_at": d.updated_at,
        }
        for d in await repo.devices_of(session, user_id)
    ]


def preferences_out(user_id: str, prefs: Preferences) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "categories": {
            "transactional": True,
            "reminders": prefs.reminders,
            "marketing": prefs.marketing,
        },
        "quiet_hours": {
            "enabled": prefs.quiet_enabled,
            "start": prefs.quiet_start.strftime("%H:%M"),
            "end": prefs.quiet_end.strftime("%H:%M"),
        },
        "timezone": prefs.timezone,
        "locale": prefs.locale,
    }


async def get_preferences(session: AsyncSession, settings: Settings, user_id: str) -> dict:
    return preferences_out(
        user_id, preferences_from(await repo.preferences_of(session, user_id), settings)
    )


async def put_preferences(
    session: AsyncSession, settings: Settings, user_id: str, body: dict[str, Any]
) -> dict:
    categories = body.get("categories") or {}
    if categories.get("transactional") is False:
        raise InvalidInput("transactional messages cannot be switched off")
    current = preferences_from(await repo.preferences_of(session, user_id), settings)
    quiet = body.get("quiet_hours") or {}
    values = {
        "user_id": user_id,
        "reminders": categories.get("reminders", current.reminders),
        "marketing": categories.get("marketing", current.marketing),
        "quiet_enabled": quiet.get("enabled", current.quiet_enabled),
        "quiet_start": quiet.get("start", current.quiet_start.strftime("%H:%M")),
        "quiet_end": quiet.get("end", current.quiet_end.strftime("%H:%M")),
        "timezone": body.get("timezone") or current.timezone,
        "locale": body.get("locale") or current.locale,
    }
    await repo.put_preferences(session, values)
    return await get_preferences(session, settings, user_id)


def notification_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "user_id": row.user_id,
        "category": row.category,
        "trigger": row.trigger,
        "template": row.template,
        "title": row.title,
        "body": row.body,
        "data": row.data or {},
        "status": row.status,
        "reason": row.reason,
        "due_at": row.due_at,
        "attempts": row.attempts,
        "provider": row.provider,
        "provider_message_id": row.provider_message_id,
        "campaign_id": row.campaign_id,
        "experiment": row.experiment,
        "variant": row.variant,
        "created_at": row.created_at,
        "sent_at": row.sent_at,
        "opened_at": row.opened_at,
    }


async def list_notifications(
    session: AsyncSession, user_id: str, limit: int, before: datetime | None
) -> list[dict[str, Any]]:
    return [
        notification_out(r) for r in await repo.notifications_of(session, user_id, limit, before)
    ]


async def get_notification(session: AsyncSession, notification_id: str) -> dict[str, Any]:
    row = await repo.notification(session, notification_id)
    if row is None:
        raise NotFound("notification", notification_id)
    out = notification_out(row)
    out["attempt_log"] = [dict(a._mapping) for a in await repo.attempts_of(session, row.id)]
    return out


async def owner_of(session: AsyncSession, notification_id: str) -> str:
    row = await repo.notification(session, notification_id)
    if row is None:
        raise NotFound("notification", notification_id)
    return str(row.user_id)


async def opened(session: AsyncSession, notification_id: str, now: datetime) -> dict[str, Any]:
    """Open tracking: the first open is recorded and published; later ones change nothing."""
    row = await repo.notification(session, notification_id, lock=True)
    if row is None:
        raise NotFound("notification", notification_id)
    if row.status != "sent":
        raise DomainError("not_sent", f"notification {notification_id} is {row.status}, not sent")
    if row.opened_at is None:
        await repo.mark_opened(session, notification_id, now)
        await add_to_outbox(
            session, messaging.outbox, [_notify_event("opened", row, row.provider, now)]
        )
        row = await repo.notification(session, notification_id)
    return notification_out(row)


# --- templates ---------------------------------------------------------------------------


async def list_templates(session: AsyncSession) -> list[dict[str, Any]]:
    stored = await repo.stored_templates(session)
    book = await template_book(session)
    return [book[c].as_dict(builtin=c not in stored) for c in sorted(book)]


async def put_template(session: AsyncSession, code: str, body: dict[str, Any]) -> dict[str, Any]:
    variables = list(dict.fromkeys(body["variables"]))
    try:
        domain.check_texts(body["texts"], variables)
    except domain.TemplateError as exc:
        raise InvalidInput(str(exc)) from exc
    builtin = BUILTIN.get(code)
    if builtin is not None:
        missing = set(builtin.variables) - set(variables)
        if missing:  # its trigger passes these: a replacement must accept them
            raise InvalidInput(
                f"template {code} is given {', '.join(sorted(builtin.variables))} by its "
                f"trigger: declare {', '.join(sorted(missing))} too"
            )
        if body["category"] != builtin.category:
            raise InvalidInput(f"template {code} is {builtin.category} (its trigger's category)")
    await repo.put_template(
        session,
        {
            "code": code,
            "category": body["category"],
            "texts": json.dumps(body["texts"], ensure_ascii=False),
            "variables": json.dumps(variables),
        },
    )
    return Template(code, body["category"], body["texts"], tuple(variables)).as_dict(builtin=False)


# --- consumers: causes that arrive as events ---------------------------------------------


def is_daily_period(key: str | None) -> bool:
    """Daily task periods are keyed by the day (`2026-11-30`); weeks and months are not."""
    return key is not None and len(key) == 10 and key[4] == "-" and key[7] == "-"


@dataclass
class Batch:
    planned: list[Planned] = field(default_factory=list)
    checkins: list[tuple[str, date, int]] = field(default_factory=list)
    task_days: list[tuple[str, str, date]] = field(default_factory=list)
    tiers: list[tuple[str, str | None, int]] = field(default_factory=list)


async def apply_batch(session: AsyncSession, settings: Settings, batch: Batch) -> None:
    # The latest check-in per user (the table keeps the newest day).
    latest: dict[str, tuple[str, date, int]] = {}
    for user_id, day, streak in batch.checkins:
        if user_id not in latest or latest[user_id][1] <= day:
            latest[user_id] = (user_id, day, streak)
    await repo.record_checkins(session, sorted(latest.values()))
    days: dict[tuple[str, str], date] = {}
    for user_id, task_id, day in batch.task_days:
        days[(user_id, task_id)] = max(day, days.get((user_id, task_id), day))
    await repo.record_task_days(session, sorted((u, t, d) for (u, t), d in days.items()))
    tiers: dict[str, tuple[str, str | None, int]] = {}
    for user_id, tier, sequence in batch.tiers:
        if user_id not in tiers or tiers[user_id][2] < sequence:
            tiers[user_id] = (user_id, tier, sequence)
    await repo.set_tiers(session, sorted(tiers.values(), key=lambda t: t[0]))
    await queue(session, settings, batch.planned)


# --- daily triggers ----------------------------------------------------------------------


def expiry_plan(
    settings: Settings, reminder: domain.ExpiryReminder, day: date, due_at: datetime
) -> Planned:
    experiment = settings.expiry_copy_experiment or None
    variant = (
        assign(experiment, reminder.user_id, [(v, 1.0) for v in ("deadline", "value")])
        if experiment
        else None
    )
    return Planned(
        id=domain.notification_id("points_expiring", reminder.user_id, day.isoformat()),
        user_id=reminder.user_id,
        trigger="points_expiring",
        due_at=due_at,
        template=f"points_expiring.{variant}" if variant else "points_expiring",
        variables={
            "points": reminder.points,
            "expiry_date": reminder.earliest.isoformat(),
            "days_left": reminder.days_left,
            "value_yuan": f"{reminder.points * settings.yuan_per_100_points / 100:.2f}".rstrip(
                "0"
            ).rstrip("."),
        },
        experiment=experiment if variant else None,
        variant=variant,
    )


def user_zones(settings: Settings, prefs: dict[str, Any], users: Iterable[str]) -> dict[str, str]:
    return {
        u: (prefs[u].timezone if u in prefs and prefs[u].timezone else settings.business_timezone)
        for u in users
    }
