"""Behaviors -> progress and grants: the consumer's use case, one transaction per batch."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress import checkins
from services.task_progress import repository as repo
from services.task_progress.domain import (
    Match,
    Progress,
    Rule,
    complete,
    match_rules,
    rule_from_row,
    status_of,
)
from services.task_progress.events import Output, tier_book
from services.task_progress.repository import ProgressKey
from services.task_progress.service.refunds import record_orders_and_refunds
from shared.events import BehaviorEvent


async def apply_behaviors(session: AsyncSession, events: list[BehaviorEvent], tz: ZoneInfo) -> int:
    """Advance progress for a batch of behaviors; returns how many grants were issued.

    Behaviors applied before (re-read, repeated) are skipped: the behavior history's key
    decides, in this transaction, which are new (no separate inbox row per behavior).

    Set-based: one query for rules, one to lock every touched progress row, one update,
    one insert each of grants, history and outbox rows, whatever the batch size (check-ins
    add one read of the days they touch). Paid orders are recorded with one more insert;
    refunds are recorded and applied after the grants, so a refund that waited for its
    order takes back what that order has just earned.
    """
    fresh = await repo.insert_history(
        session,
        [
            {
                "behavior_id": e.behavior_id,
                "user_id": e.user_id,
                "action": e.action,
                "occurred_at": e.occurred_at,
                "attributes": e.attributes,
            }
            for e in events
        ],
    )
    events = first_of_each(events, fresh)
    issued = await _advance_progress(session, events, tz)
    await record_orders_and_refunds(session, events)
    return issued


def first_of_each(events: list[BehaviorEvent], fresh: set[str]) -> list[BehaviorEvent]:
    """The events whose id is in `fresh`, each id once (a repeat inside a batch is a duplicate)."""
    out = []
    for e in events:
        if e.behavior_id in fresh:
            fresh.discard(e.behavior_id)
            out.append(e)
    return out


async def active_rules(session: AsyncSession) -> dict[str, list[Rule]]:
    rules: dict[str, list[Rule]] = {}
    for row in await repo.active_tasks(session):
        rule = rule_from_row(row)
        rules.setdefault(rule.action, []).append(rule)
    return rules


async def _advance_progress(
    session: AsyncSession, events: list[BehaviorEvent], tz: ZoneInfo
) -> int:
    matches = match_rules(await active_rules(session), events, tz)
    if not matches:
        return 0
    counted = [m for m in matches if m[1].kind != "checkin"]
    checked_in = [m for m in matches if m[1].kind == "checkin"]
    state = await _lock_progress(session, counted, checked_in)
    out = Output(tiers=await tier_book(session, {e.user_id for e, _, _ in matches}), tz=tz)
    _pay_completions(out, counted, state)
    await _save_progress(session, counted, state)
    await checkins.apply_checkins(session, checked_in, out, tz)
    return await out.write(session)


async def _lock_progress(
    session: AsyncSession, counted: list[Match], checked_in: list[Match]
) -> dict[ProgressKey, Progress]:
    """Lock every progress row the batch touches (check-ins: their (user, rule) lock row) and
    return the counted rules' progress, keyed by (user, task, period)."""
    locked = await repo.lock_progress(
        session,
        [(e.user_id, r.id, key) for e, r, key in counted]
        + [checkins.lock_key(e.user_id, r.id) for e, r, _ in checked_in],
    )
    return {
        k: Progress(row.n, row.completions, row.points, row.last_event_at)
        for k, row in locked.items()
        if k[2] != checkins.CHECKIN_KEY
    }


def _pay_completions(out: Output, counted: list[Match], state: dict[ProgressKey, Progress]) -> None:
    """Advance `state` by the counted matches; every completion's grants and its
    task.completed event go to `out`."""
    for event, rule, key, done in complete(counted, state):
        payouts = done.payouts()
        for payout in payouts:
            out.grant(
                rule,
                event.user_id,
                grant_id=payout.grant_id,
                asset=payout.asset,
                points=payout.points,
                period_key=key,
                completion=done.number,
                cause=event.behavior_id,
                occurred_at=event.occurred_at,
                available_at=done.available_at,
                what=f"completion {done.number} ({key})",
            )
        out.progress(
            "task.completed",
            rule,
            event.user_id,
            (done.grant_id,),
            event.occurred_at,
            [(p.asset, p.points) for p in payouts],
            period_key=key,
            completion=done.number,
        )


async def _save_progress(
    session: AsyncSession, counted: list[Match], state: dict[ProgressKey, Progress]
) -> None:
    rules_by_id = {r.id: r for _, r, _ in counted}
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
