"""The dispatcher's last step: recording what the providers answered (every attempt, each
device's delivery, each notification's status: sent, retried later or failed, devices found
invalid) with the `sent` events and experiment exposures, in one transaction.

A notification's status derives from its deliveries (`domain.notification_status`): it is
tried again while a device awaits a retry (and attempts remain), only on those devices; then
it is `sent` when at least one device has it, else `failed`."""

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
from services.notifier.providers import device_digest
from services.notifier.service.dispatch import Job
from services.notifier.settings import Settings
from shared.experiments import exposure_event
from shared.messaging import OutgoingEvent, add_to_outbox


async def record(
    session: AsyncSession, settings: Settings, jobs: Sequence[Job], now: datetime
) -> dict[str, str]:
    """Write what the providers answered: attempts, deliveries, each notification's status,
    devices found invalid, and the `sent` events. Returns the status given to each
    notification (written only for those still under this replica's lease)."""
    attempts_rows: list[dict[str, Any]] = []
    deliveries: dict[tuple[str, str], dict[str, Any]] = {}
    invalid: list[str] = []
    recorded: list[dict[str, Any]] = []
    statuses: dict[str, str] = {}
    for job in jobs:
        row = _outcome_row(settings, job, now)
        statuses[job.id] = row["status"]
        recorded.append(row)
        _device_rows(job, row, now, attempts_rows, deliveries, invalid)

    await repo.insert_attempts(session, attempts_rows)  # requests made, written or not
    if invalid:
        await repo.deactivate(session, invalid, "provider: invalid token")
        DEVICES_DEACTIVATED.inc(len(invalid))
    written = await repo.set_recorded(session, recorded)
    await repo.upsert_deliveries(session, [d for key, d in deliveries.items() if key[0] in written])
    await add_to_outbox(session, messaging.outbox, _sent_events(jobs, written, statuses, now))
    return statuses


def _device_rows(
    job: Job,
    row: dict[str, Any],
    now: datetime,
    attempts_rows: list[dict[str, Any]],
    deliveries: dict[tuple[str, str], dict[str, Any]],
    invalid: list[str],
) -> None:
    """One attempt and one delivery per device tried (counted); the tokens a provider
    refused go to `invalid`. A device still awaiting a retry when the notification does not
    get one more (attempts spent) failed."""
    gave_up = row["status"] != "queued"
    for provider, platform, token, outcome in job.outcomes:
        ATTEMPTS.labels(provider, outcome.kind).inc()
        device = device_digest(token)
        attempts_rows.append(
            {
                "notification_id": job.id,
                "device": device,
                "provider": provider,
                "outcome": outcome.kind,
                "status_code": outcome.status_code,
                "detail": outcome.detail,
                "provider_message_id": outcome.message_id,
            }
        )
        status, error = outcome.kind, outcome.detail
        if status == "retry" and gave_up:
            status = "failed"
            error = f"gave up after {row['attempts']} attempts: {error or outcome.status_code}"
        deliveries[(job.id, device)] = {
            "notification_id": job.id,
            "device": device,
            "platform": platform,
            "provider": provider,
            "status": status,
            "status_code": outcome.status_code,
            "error": None if error is None else error[:300],
            "provider_message_id": outcome.message_id,
            "sent_at": now if status == "sent" else None,
        }
        if outcome.kind == "invalid_token":
            invalid.append(token)


def _outcome_row(settings: Settings, job: Job, now: datetime) -> dict[str, Any]:
    """The notification's new state: queued again for a retry (a device awaits one and
    attempts remain), sent (a device has it: the first delivery's provider and message id
    are kept), or failed."""
    attempt = job.attempts + 1
    kinds = [o.kind for *_, o in job.outcomes]
    status = domain.notification_status(
        kinds, job.delivered_by is not None, attempt >= settings.max_attempts
    )
    sent = [(p, o) for p, _, _, o in job.outcomes if o.kind == "sent"]
    row: dict[str, Any] = {
        "id": job.id,
        "lease": job.lease,
        "status": status,
        "attempts": attempt,
        "provider": job.delivered_by or (job.outcomes[0][0] if job.outcomes else None),
        "provider_message_id": None,
        "sent_at": None,
        "reason": None,
        "due_at": now,
    }
    if sent:
        provider, outcome = sent[0]
        row.update(provider=provider, provider_message_id=outcome.message_id, sent_at=now)
    if status == "queued":
        retry = [o for *_, o in job.outcomes if o.kind == "retry"]
        after = max((o.retry_after_s or 0.0) for o in retry) or None
        delay = domain.retry_delay(attempt, settings.retry_base_s, settings.retry_max_s, after)
        row.update(
            reason=f"retrying: {retry[0].detail or retry[0].status_code}"[:200],
            due_at=now + timedelta(seconds=delay),
        )
    elif status == "failed":
        row["reason"] = _failure_reason(job, attempt)[:200]
    return row


def _failure_reason(job: Job, attempt: int) -> str:
    failed = [o for *_, o in job.outcomes if o.kind != "sent"]
    if not failed:
        return "no_device"  # none left active to try
    if all(o.kind == "invalid_token" for o in failed):
        return "invalid_token"
    retry = [o for o in failed if o.kind == "retry"]
    if retry:
        return f"gave up after {attempt} attempts: {retry[0].detail or retry[0].status_code}"
    return f"rejected: {failed[0].status_code} {failed[0].detail or ''}".strip()


def _sent_events(
    jobs: Sequence[Job], written: set[str], statuses: dict[str, str], now: datetime
) -> list[OutgoingEvent]:
    """`sent` for each notification written as sent (once: a notification becomes `sent`
    once), and the exposure of its experiment's variant."""
    events: list[OutgoingEvent] = []
    for job in jobs:
        if job.id not in written or statuses[job.id] != "sent":
            continue
        provider = next((p for p, _, _, o in job.outcomes if o.kind == "sent"), job.delivered_by)
        events.append(notify_event("sent", job, provider, now))
        if job.experiment and job.variant:
            events.append(exposure_event(job.experiment, job.variant, job.user_id, now, "notifier"))
    return events
