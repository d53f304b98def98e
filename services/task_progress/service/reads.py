"""What users and operators look at: a user's tasks this period, and an order with its
refunds and grants."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress import repository as repo
from services.task_progress.domain import (
    Progress,
    order_behavior_id,
    period_end,
    period_key,
    rule_from_row,
    status_of,
)
from services.task_progress.service.refunds import Settlement, settle
from shared.errors import NotFound


async def user_tasks(
    session: AsyncSession, user_id: str, tz: ZoneInfo, now: datetime | None = None
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    rows = [
        r
        for r in await repo.active_tasks(session)
        if (r.starts_at is None or r.starts_at <= now) and (r.ends_at is None or now < r.ends_at)
    ]
    rows.sort(key=lambda r: (r.created_at, r.id))
    keys = [(r.id, period_key(r.period, now, tz)) for r in rows]
    found = await repo.progress_for_user(session, user_id, keys)
    today = now.astimezone(tz).date()
    checked_in = {
        r.id: await repo.checkins_between(session, user_id, r.id, today, today)
        for r in rows
        if r.kind == "checkin"
    }
    items = []
    for row, (task_id, key) in zip(rows, keys, strict=True):
        p = found.get((task_id, key))
        state = Progress(p._mapping["count"], p.completions, p.points) if p else Progress()
        if task_id in checked_in:  # a check-in rule's day is its check-in
            days = checked_in[task_id]
            state = Progress(len(days), len(days), sum(d.paid for d in days))
        items.append(_task_progress(row, key, state, period_end(row.period, now, tz)))
    return {"user_id": user_id, "items": items}


def _task_progress(
    row: Any, key: str, state: Progress, period_ends_at: datetime | None
) -> dict[str, Any]:
    """One rule with the user's progress in its current period."""
    rule = rule_from_row(row)
    return {
        "task_id": row.id,
        "name": row.name,
        "description": row.description,
        "action": row.action,
        "kind": row.kind,
        "period": row.period,
        "period_key": key,
        "period_ends_at": period_ends_at,
        "target_count": row.target_count,
        "reward_points": row.reward_points,
        "reward_type": row.reward_type,
        "extra_rewards": row.extra_rewards,
        "max_per_period": rule.cap,
        "count": state.count,
        "completions": state.completions,
        "points_earned": state.points,
        "progress_to_next": state.count % row.target_count if row.kind == "count" else 0,
        "status": status_of(rule, state),
    }


async def order_view(session: AsyncSession, source: str, order_no: str) -> Settlement:
    """An order with its refunds and its grants (and how much of each is taken back)."""
    order_id = order_behavior_id(source, order_no)
    found = (await settle(session, [order_id], lock=False)).get(order_id)
    if found is None:
        raise NotFound("order", order_no)
    return found
