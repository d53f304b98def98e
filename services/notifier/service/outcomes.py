"""The dispatcher's last step: recording what the providers answered (every attempt, each
notification's status: sent, retried later or failed, devices found invalid) with the
`sent` events and experiment exposures, in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier import domain
from services.notifier import repository as repo
from services.notifier.events import notify_event
from services.notifier.metrics import ATTEMPTS, DEVICES_DEACTIVATED
from services.notifier.models import messaging
from services.notifier.providers import Outcome, device_digest
from services.notifier.service.dispatch import Job
from services.notifier.settings import Settings
from shared.experiments import exposure_event
from shared.messaging import OutgoingEvent, add_to_outbox


async def record(
    session: AsyncSession, settings: Settings, jobs: Sequence[Job], now: datetime
) -> dict[str, str]:
    """Write what the providers answered: attempts, each notification's status, devices
    found invalid, and the `sent` events. Returns the status given to each notification."""
    attempts_rows: list[dict[str, Any]] = []
    invalid: list[str] = []
    recorded: list[dict[str, Any]] = []
    statuses: dict[str, str] = {}
    for job in jobs:
        attempts_rows += _attempt_rows(job, invalid)
        row = _outcome_row(settings, job, now)
        statuses[job.id] = row["status"]
        recorded.append(row)

    await repo.insert_attempts(session, attempts_rows)
    if invalid:
        await repo.deactivate(session, invalid, "provider: invalid token")
        DEVICES_DEACTIVATED.inc(len(invalid))
    written = await repo.set_recorded(session, recorded)
    await add_to_outbox(session, messaging.outbox, _sent_events(jobs, written, statuses, now))
    return statuses


def _attempt_rows(job: Job, invalid: list[str]) -> list[dict[str, Any]]:
    """One row per device tried (counted); the tokens a provider refused go to `invalid`."""
    rows = []
    for provider, token, outcome in job.outcomes:
        ATTEMPTS.labels(provider, outcome.kind).inc()
        rows.append(
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
    return rows


def _outcome_row(settings: Settings, job: Job, now: datetime) -> dict[str, Any]:
    """The notification's new state: sent (by the first provider that took it), queued again
    for a retry (while attempts remain), or failed."""
    attempt = job.attempts + 1
    sent = [(p, o) for p, _, o in job.outcomes if o.kind == "sent"]
    retry = [o for _, _, o in job.outcomes if o.kind == "retry"]
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
        reason = _failure_reason(job, attempt, retry)
        row.update(status="failed", reason=reason[:200], provider=job.outcomes[0][0])
    return row


def _failure_reason(job: Job, attempt: int, retry: list[Outcome]) -> str:
    failed = [o for _, _, o in job.outcomes if o.kind != "sent"]
    if failed and all(o.kind == "invalid_token" for o in failed):
        return "invalid_token"
    if retry:
        return f"gave up after {attempt} attempts: {retry[0].detail or retry[0].status_code}"
    return f"rejected: {failed[0].status_code} {failed[0].detail or ''}".strip()


def _sent_events(
    jobs: Sequence[Job], written: set[str], statuses: dict[str, str], now: datetime
) -> list[OutgoingEvent]:
    """`sent` for each notification written as sent (not one another replica took over), and
    the exposure of its experiment's variant."""
    events: list[OutgoingEvent] = []
    for job in jobs:
        if job.id not in written or statuses[job.id] != "sent":
            continue
        provider = next(p for p, _, o in job.outcomes if o.kind == "sent")
        events.append(notify_event("sent", job, provider, now))
        if job.experiment and job.variant:
            events.append(exposure_event(job.experiment, job.variant, job.user_id, now, "notifier"))
    return events
