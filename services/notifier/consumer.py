"""The events that cause notifications, one transaction per fetched batch. No inbox: every
write is idempotent by itself, so a re-read or a repeat changes nothing. The notifications'
ids come from their causes (a repeat finds its id taken), and the read models only move
forward (the newest check-in day, the latest task day, the highest tier sequence):

- progress.events: check-ins and daily task completions feed the streak and unfinished-task
  reminders' read models;
- exchange.events: a redemption completed (its confirmation), a parcel shipped or delivered
  (transactional);
- engagement.events: a tier changed (transactional), a badge awarded (a reminder)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

from aiokafka import ConsumerRecord
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier import INFO, domain, service
from services.notifier.service import Batch, Planned
from services.notifier.settings import Settings
from shared.db import after_commit
from shared.events import (
    EngagementEvent,
    ExchangeEvent,
    ProgressEvent,
)
from shared.messaging import BatchHandler, Inbound
from shared.messaging.known import read_event

EVENTS = INFO.consumer("events")
# The redemption's steps a user is told about (兑换确认, 发货, 签收), each its trigger and template.
REDEMPTION_STEPS = {
    "redemption.completed": "redemption_completed",
    "redemption.shipped": "redemption_shipped",
    "redemption.delivered": "redemption_delivered",
}


class NotifierHandler(BatchHandler[BaseModel]):
    name, topics = EVENTS.name, EVENTS.topics
    use_inbox = False  # see the module's docstring
    background = EVENTS.background  # nobody waits on it (see BatchHandler)

    def __init__(self, settings: Settings, wake: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.wake_dispatch = wake

    def parse(self, record: ConsumerRecord) -> list[Inbound[BaseModel]]:
        return [read_event(record, "notifier", EVENTS.topics)]

    async def apply(self, session: AsyncSession, items: list[Inbound[BaseModel]]) -> None:
        batch = Batch()
        now = datetime.now(UTC)
        for item in items:
            event = item.value
            if isinstance(event, ProgressEvent):
                collect_progress(batch, event)
            elif isinstance(event, ExchangeEvent):
                collect_exchange(batch, event, now)
            elif isinstance(event, EngagementEvent):
                collect_engagement(batch, event, now)
        await service.apply_batch(session, self.settings, batch)
        if batch.planned and self.wake_dispatch is not None:
            after_commit(session, self.wake_dispatch)


def collect_progress(batch: Batch, event: ProgressEvent) -> None:
    if event.type == "checkin.recorded" and event.day is not None and event.streak is not None:
        batch.checkins.append((event.user_id, event.day, event.streak))
    elif event.type == "task.completed" and service.is_daily_period(event.period_key):
        assert event.period_key is not None
        day = date.fromisoformat(event.period_key)  # strptime was 7% of this consumer's CPU
        batch.task_days.append((event.user_id, event.task_id, day))


def collect_exchange(batch: Batch, event: ExchangeEvent, now: datetime) -> None:
    trigger = REDEMPTION_STEPS.get(event.type)
    if trigger is None:
        return
    batch.planned.append(
        Planned(
            id=domain.notification_id(trigger, event.redemption_id),
            user_id=event.user_id,
            trigger=trigger,
            due_at=now,
            template=trigger,
            variables={
                "item_id": event.item_id,
                "quantity": event.quantity,
                "points": event.points,
                "redemption_id": event.redemption_id,
            },
        )
    )


def collect_engagement(batch: Batch, event: EngagementEvent, now: datetime) -> None:
    if event.user_id is None:
        return
    data = event.data
    if event.type == "tier.changed":
        batch.tiers.append((event.user_id, data.get("tier"), int(data.get("sequence") or 0)))
        if data.get("tier") is None:
            return  # dropped out of every tier: nothing to congratulate
        template = "tier_raised" if data.get("direction") == "up" else "tier_lowered"
        batch.planned.append(
            Planned(
                id=domain.notification_id("tier_changed", event.event_id),
                user_id=event.user_id,
                trigger="tier_changed",
                due_at=now,
                template=template,
                variables={
                    "tier": data.get("tier"),
                    "tier_name": data.get("tier_name") or data.get("tier"),
                },
            )
        )
    elif event.type == "badge.awarded":
        batch.planned.append(
            Planned(
                id=domain.notification_id("badge_awarded", event.event_id),
                user_id=event.user_id,
                trigger="badge_awarded",
                due_at=now,
                template="badge_awarded",
                variables={
                    "badge": data.get("badge"),
                    "name": data.get("name") or data.get("badge"),
                },
            )
        )
