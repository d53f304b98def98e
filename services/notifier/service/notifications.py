"""A user's notifications: listing them, one with its delivery attempts, and open tracking
(the first open recorded and published)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier import repository as repo
from services.notifier.events import notify_event
from services.notifier.models import messaging
from services.notifier.repository.notifications import Delivery, Notification
from services.notifier.schemas import AttemptOut, DeliveryOut, NotificationDetail, NotificationOut
from shared.errors import DomainError, NotFound
from shared.messaging import add_to_outbox


async def list_notifications(
    session: AsyncSession, user_id: str, limit: int, before: datetime | None
) -> list[NotificationOut]:
    """The user's notifications, newest first, each with what became of it on each device."""
    found = await repo.notifications_of(session, user_id, limit, before)
    deliveries = await repo.deliveries_of(session, [n.id for n in found])
    return [_out(n, deliveries.get(n.id, [])) for n in found]


async def get_notification(session: AsyncSession, notification_id: str) -> NotificationDetail:
    row = await repo.notification(session, notification_id)
    if row is None:
        raise NotFound("notification", notification_id)
    attempts = await repo.attempts_of(session, row.id)
    deliveries = await repo.deliveries_of(session, [row.id])
    return NotificationDetail(
        **_out(row, deliveries.get(row.id, [])).model_dump(),
        attempt_log=[AttemptOut.model_validate(a) for a in attempts],
    )


def _out(row: Notification, deliveries: list[Delivery]) -> NotificationOut:
    out = NotificationOut.model_validate(row)
    out.deliveries = [DeliveryOut.model_validate(d) for d in deliveries]
    return out


async def owner_of(session: AsyncSession, notification_id: str) -> str:
    row = await repo.notification(session, notification_id)
    if row is None:
        raise NotFound("notification", notification_id)
    return str(row.user_id)


async def opened(session: AsyncSession, notification_id: str, now: datetime) -> NotificationOut:
    """Open tracking: the first open is recorded and published; later ones change nothing."""
    row = await repo.notification(session, notification_id, lock=True)
    if row is None:
        raise NotFound("notification", notification_id)
    if row.sent_at is None:  # no device has it (one may while another awaits a retry)
        raise DomainError("not_sent", f"notification {notification_id} is {row.status}, not sent")
    if row.opened_at is None:
        await repo.mark_opened(session, notification_id, now)
        await add_to_outbox(
            session, messaging.outbox, [notify_event("opened", row, row.provider, now)]
        )
        row = await repo.notification(session, notification_id)
        assert row is not None  # locked above: still there
    deliveries = await repo.deliveries_of(session, [row.id])
    return _out(row, deliveries.get(row.id, []))
