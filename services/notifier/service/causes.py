"""The causes of notifications besides campaigns: a consumed batch of events (and the read
models it moves forward for the daily triggers), and the points-expiry reminder's plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier import domain
from services.notifier import repository as repo
from services.notifier.service.queueing import Planned, queue
from services.notifier.settings import Settings
from shared.experiments import assign


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
    await repo.record_checkins(session, _latest_checkins(batch.checkins))
    await repo.record_task_days(session, _latest_task_days(batch.task_days))
    await repo.set_tiers(session, _latest_tiers(batch.tiers))
    await queue(session, settings, batch.planned)


def _latest_checkins(checkins: list[tuple[str, date, int]]) -> list[tuple[str, date, int]]:
    # The latest check-in per user (the table keeps the newest day).
    latest: dict[str, tuple[str, date, int]] = {}
    for user_id, day, streak in checkins:
        if user_id not in latest or latest[user_id][1] <= day:
            latest[user_id] = (user_id, day, streak)
    return sorted(latest.values())


def _latest_task_days(task_days: list[tuple[str, str, date]]) -> list[tuple[str, str, date]]:
    days: dict[tuple[str, str], date] = {}
    for user_id, task_id, day in task_days:
        days[(user_id, task_id)] = max(day, days.get((user_id, task_id), day))
    return sorted((u, t, d) for (u, t), d in days.items())


def _latest_tiers(
    changes: list[tuple[str, str | None, int]],
) -> list[tuple[str, str | None, int]]:
    tiers: dict[str, tuple[str, str | None, int]] = {}
    for user_id, tier, sequence in changes:
        if user_id not in tiers or tiers[user_id][2] < sequence:
            tiers[user_id] = (user_id, tier, sequence)
    return sorted(tiers.values(), key=lambda t: t[0])


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
