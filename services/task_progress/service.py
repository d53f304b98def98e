"""task_progress use cases: rule administration and turning behaviors into grants."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress import repository as repo
from services.task_progress.domain import (
    Condition,
    Progress,
    Rule,
    advance,
    period_end,
    period_key,
    status_of,
)
from services.task_progress.models import messaging
from services.task_progress.schemas import TaskCreate, TaskPatch, check_rule
from shared.errors import InvalidInput, NotFound
from shared.events import REWARDS_GRANTS, BehaviorEvent, GrantCommand
from shared.messaging import OutgoingEvent, add_to_outbox
from shared.metrics import GRANTS_ISSUED

RULE_FIELDS = (
    "action",
    "kind",
    "reward_points",
    "period",
    "target_count",
    "max_per_period",
    "amount_unit_cents",
    "amount_attribute",
    "points_validity_days",
    "active",
    "starts_at",
    "ends_at",
)


def rule_from_row(row: Any) -> Rule:
    values = {f: getattr(row, f) for f in RULE_FIELDS}
    conditions = tuple(
        Condition(c["attribute"], c["op"], c.get("value")) for c in row.conditions or []
    )
    return Rule(id=row.id, conditions=conditions, **values)


async def apply_behaviors(session: AsyncSession, events: list[BehaviorEvent], tz: ZoneInfo) -> int:
    """Advance progress for a batch of behaviors; returns how many grants were issued.

    Set-based: one query for rules, one to lock every touched progress row, one update,
    one insert of grants and one of outbox rows, whatever the batch size.
    """
    rules: dict[str, list[Rule]] = {}
    for row in await repo.active_tasks(session):
        rule = rule_from_row(row)
        rules.setdefault(rule.action, []).append(rule)
    matches = [
        (event, rule, period_key(rule.period, event.occurred_at, tz))
        for event in events
        for rule in rules.get(event.action, ())
        if rule.matches(event.action, event.occurred_at, event.attributes)
    ]
    if not matches:
        return 0
    locked = await repo.lock_progress(session, [(e.user_id, r.id, key) for e, r, key in matches])
    state = {
        k: Progress(row.n, row.completions, row.points, row.last_event_at)
        for k, row in locked.items()
    }
    grant_rows, outgoing = [], []
    for event, rule, key in matches:
        pkey = (event.user_id, rule.id, key)
        done = advance(rule, state[pkey], event.user_id, key, event.occurred_at, event.attributes)
        if done is None:
            continue
        command = GrantCommand(
            grant_id=done.grant_id,
            user_id=event.user_id,
            points=done.points,
            expires_at=done.expires_at,
            task_id=rule.id,
            period_key=key,
            completion=done.number,
            causation_event_id=event.behavior_id,
            occurred_at=event.occurred_at,
        )
        grant_rows.append(
            {
                "grant_id": done.grant_id,
                "user_id": event.user_id,
                "task_id": rule.id,
                "period_key": key,
                "completion": done.number,
                "points": done.points,
                "expires_at": done.expires_at,
                "causation_event_id": event.behavior_id,
            }
        )
        outgoing.append(OutgoingEvent(REWARDS_GRANTS, event.user_id, command.model_dump_json()))
        GRANTS_ISSUED.labels(rule.id).inc()
    rules_by_id = {r.id: r for _, r, _ in matches}
    await repo.save_progress(
        session,
        [
            {
                "user_id": u,
                "task_id": t,
                "period_key": p,
                "count": s.count,
                "completions": s.completions,
                "points": s.points,
                "status": status_of(rules_by_id[t], s),
                "last_event_at": s.last_event_at,
            }
            for (u, t, p), s in state.items()
        ],
    )
    await repo.insert_grants(session, grant_rows)
    await add_to_outbox(session, messaging.outbox, outgoing)
    return len(grant_rows)


def _row_to_dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


async def create_task(
    session: AsyncSession, body: TaskCreate, task_id: str | None = None
) -> dict[str, Any]:
    task_id = task_id or str(uuid.uuid4())
    await repo.insert_task(session, {"id": task_id, **body.model_dump(mode="python")})
    return await get_task(session, task_id)


async def get_task(session: AsyncSession, task_id: str) -> dict[str, Any]:
    row = await repo.get_task(session, task_id)
    if row is None:
        raise NotFound("task", task_id)
    return _row_to_dict(row)


async def patch_task(session: AsyncSession, task_id: str, patch: TaskPatch) -> dict[str, Any]:
    row = await repo.get_task(session, task_id, for_update=True)
    if row is None:
        raise NotFound("task", task_id)
    changes = patch.model_dump(exclude_unset=True, mode="python")
    merged = {**_row_to_dict(row), **changes}
    try:
        check_rule(merged)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    if changes:
        await repo.update_task(session, task_id, changes)
    return await get_task(session, task_id)


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
    items = []
    for row, (task_id, key) in zip(rows, keys, strict=True):
        p = found.get((task_id, key))
        state = Progress(p._mapping["count"], p.completions, p.points) if p else Progress()
        rule = rule_from_row(row)
        items.append(
            {
                "task_id": task_id,
                "name": row.name,
                "description": row.description,
                "action": row.action,
                "kind": row.kind,
                "period": row.period,
                "period_key": key,
                "period_ends_at": period_end(row.period, now, tz),
                "target_count": row.target_count,
                "reward_points": row.reward_points,
                "max_per_period": rule.cap,
                "count": state.count,
                "completions": state.completions,
                "points_earned": state.points,
                "progress_to_next": state.count % row.target_count if row.kind == "count" else 0,
                "status": status_of(rule, state),
            }
        )
    return {"user_id": user_id, "items": items}
