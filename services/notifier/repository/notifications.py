"""A user's notifications: reads, their deliveries, the attempt log, open tracking."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.models import notifications


@dataclass(frozen=True)
class Notification:
    """One notification as stored (the columns of `notifications`)."""

    id: str
    user_id: str
    category: str
    trigger: str
    template: str | None
    title: str
    body: str
    data: dict[str, Any]
    campaign_id: str | None
    experiment: str | None
    variant: str | None
    status: str
    reason: str | None
    due_at: datetime
    attempts: int
    provider: str | None
    provider_message_id: str | None
    sent_at: datetime | None
    opened_at: datetime | None
    created_at: datetime
    updated_at: datetime


class Attempt(NamedTuple):
    """One request to a provider for a notification (the device as a digest)."""

    device: str
    provider: str
    outcome: str
    status_code: int | None
    detail: str | None
    provider_message_id: str | None
    created_at: datetime


async def notifications_of(
    session: AsyncSession, user_id: str, limit: int, before: datetime | None
) -> list[Notification]:
    query = notifications.select().where(notifications.c.user_id == user_id)
    if before is not None:
        query = query.where(notifications.c.created_at < before)
    rows = await session.execute(
        query.order_by(notifications.c.created_at.desc(), notifications.c.id).limit(limit)
    )
    return [Notification(**r._mapping) for r in rows]


async def notification(
    session: AsyncSession, notification_id: str, lock: bool = False
) -> Notification | None:
    query = notifications.select().where(notifications.c.id == notification_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).one_or_none()
    return None if row is None else Notification(**row._mapping)


async def mark_opened(session: AsyncSession, notification_id: str, at: datetime) -> None:
    await session.execute(
        notifications.update()
        .where(notifications.c.id == notification_id, notifications.c.opened_at.is_(None))
        .values(opened_at=at, updated_at=at)
    )


class Delivery(NamedTuple):
    """What became of a notification on one device (the device as a digest)."""

    notification_id: str
    device: str
    platform: str
    provider: str
    status: str
    attempts: int
    status_code: int | None
    error: str | None
    provider_message_id: str | None
    sent_at: datetime | None
    updated_at: datetime


async def deliveries_of(
    session: AsyncSession, notification_ids: Sequence[str]
) -> dict[str, list[Delivery]]:
    """Each notification's deliveries, by notification id."""
    found: dict[str, list[Delivery]] = {}
    if not notification_ids:
        return found
    rows = await session.execute(
        text(
            "SELECT notification_id, device, platform, provider, status, attempts, status_code, "
            "error, provider_message_id, sent_at, updated_at FROM deliveries "
            "WHERE notification_id = ANY(CAST(:ids AS text[])) ORDER BY notification_id, device"
        ),
        {"ids": list(notification_ids)},
    )
    for r in rows:
        found.setdefault(r[0], []).append(Delivery(*r))
    return found


async def attempts_of(session: AsyncSession, notification_id: str) -> list[Attempt]:
    rows = await session.execute(
        text(
            "SELECT device, provider, outcome, status_code, detail, provider_message_id, "
            "created_at FROM attempts WHERE notification_id = :id ORDER BY id"
        ),
        {"id": notification_id},
    )
    return [Attempt(*r) for r in rows]
