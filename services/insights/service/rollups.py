"""The rollups of consumed events: one batch of every topic turned into daily counters, the
sets they count (active users, redeemers, task-periods, notifications, holders), exposures
and outcomes for experiments, and the recommender's read models."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.insights import repository as repo
from services.insights.domain import (
    DAU,
    NO_ASSET,
    NPS_ACTION,
    PUSH_OPENED,
    PUSH_SENT,
    REDEEMERS,
    REDEMPTIONS,
    TASKS_COMPLETED,
    TASKS_STARTED,
    Cohort,
    CounterKey,
    Holding,
    apply_balances,
    business_day,
    cohort_deltas,
    ledger_counters,
    merge_cohort,
    nps_counters,
    nps_score,
)
from services.insights.settings import Settings
from shared.events import (
    BehaviorEvent,
    EngagementEvent,
    ExchangeEvent,
    ExperimentExposure,
    LedgerEvent,
    NotifyEvent,
    ProgressEvent,
)
from shared.periods import calendar_key


@dataclass
class Batch:
    behaviors: list[BehaviorEvent] = field(default_factory=list)
    progress: list[ProgressEvent] = field(default_factory=list)
    ledger: list[LedgerEvent] = field(default_factory=list)
    exchange: list[ExchangeEvent] = field(default_factory=list)
    engagement: list[EngagementEvent] = field(default_factory=list)
    notify: list[NotifyEvent] = field(default_factory=list)
    exposures: list[ExperimentExposure] = field(default_factory=list)


def period_key(period: str, at: datetime, tz: ZoneInfo) -> str:
    """task_progress's period of a behavior (its public rule fields: day/week/month/once/lifetime)."""
    if period in ("once", "lifetime"):
        return period
    return calendar_key(period, at, tz)


async def apply_batch(session: AsyncSession, batch: Batch, settings: Settings) -> None:
    tz = settings.tz
    counts: Counter[CounterKey] = Counter()

    # DAU: a user counts once per business day.
    active = await repo.add_active_users(
        session, ((business_day(b.occurred_at, tz), b.user_id) for b in batch.behaviors)
    )
    for day, n in active.items():
        counts[(day, NO_ASSET, DAU)] += n

    counts.update(await _nps(session, batch.behaviors, tz))
    counts.update(await _task_periods(session, batch, tz))
    counts.update(await _notifications(session, batch.notify, tz))
    counts.update(ledger_counters(batch.ledger, tz))
    counts.update(await _balances(session, batch.ledger, settings.holder_threshold, tz))
    counts.update(await _redemptions(session, batch.exchange, tz))
    await _tiers(session, batch.engagement)
    await repo.add_exposures(
        session,
        [
            {
                "experiment_key": x.experiment,
                "user_id": x.user_id,
                "variant": x.variant,
                "exposed_at": x.occurred_at,
                "source": x.source,
            }
            for x in batch.exposures
        ],
    )
    await repo.add_outcomes(session, _outcomes(batch))
    await repo.add_counters(session, counts)


async def _nps(
    session: AsyncSession, behaviors: list[BehaviorEvent], tz: ZoneInfo
) -> Counter[CounterKey]:
    """Each `nps_submitted` response once (by behavior id), counted on its business day."""
    responses: dict[str, tuple[date, int]] = {}
    for b in behaviors:
        if b.action == NPS_ACTION and (score := nps_score(b.attributes)) is not None:
            responses[b.behavior_id] = (business_day(b.occurred_at, tz), score)
    counts: Counter[CounterKey] = Counter()
    for day, score in await repo.add_nps_responses(session, responses):
        counts.update(nps_counters(day, score))
    return counts


async def _task_periods(session: AsyncSession, batch: Batch, tz: ZoneInfo) -> Counter[CounterKey]:
    """A task-period starts with a behavior of a rule's action (in the rule's window) or with
    its completion; counted on the earliest day seen, completed when a completion arrives."""
    seen: dict[tuple[str, str, str], tuple[date, bool]] = {}

    def saw(key: tuple[str, str, str], day: date, completed: bool) -> None:
        old = seen.get(key)
        seen[key] = (day, completed) if old is None else (min(old[0], day), old[1] or completed)

    if batch.behaviors:
        rules_by_action: dict[str, list[Any]] = {}
        for rule in await repo.active_rules(session):
            rules_by_action.setdefault(rule.action, []).append(rule)
        for b in batch.behaviors:
            for rule in rules_by_action.get(b.action, ()):
                if rule.starts_at is not None and b.occurred_at < rule.starts_at:
                    continue
                if rule.ends_at is not None and b.occurred_at >= rule.ends_at:
                    continue
                key = (rule.task_id, period_key(rule.period, b.occurred_at, tz), b.user_id)
                saw(key, business_day(b.occurred_at, tz), False)
    for p in batch.progress:
        if p.type == "task.completed" and p.period_key is not None:
            saw((p.task_id, p.period_key, p.user_id), business_day(p.occurred_at, tz), True)
    if not seen:
        return Counter()
    current = await repo.lock_task_periods(session, seen)
    counts: Counter[CounterKey] = Counter()
    changed = []
    for key, (day, completed) in seen.items():
        row = current[key]
        old = Cohort(row.day, (row.completed,))
        new = merge_cohort(old, day, (completed,))
        if new != old:
            counts.update(cohort_deltas(old, new, (TASKS_STARTED, TASKS_COMPLETED)))
            changed.append(
                {
                    "task_id": key[0],
                    "period_key": key[1],
                    "user_id": key[2],
                    "day": new.day,
                    "completed": new.flags[0],
                }
            )
    await repo.save_task_periods(session, changed)
    return counts


async def _notifications(
    session: AsyncSession, events: list[NotifyEvent], tz: ZoneInfo
) -> Counter[CounterKey]:
    """Opened / sent, both counted on the day the notification was sent."""
    seen: dict[str, tuple[date, bool, bool]] = {}
    for e in events:
        day = business_day(e.occurred_at, tz)
        sent, opened = e.type == "sent", e.type == "opened"
        had = seen.get(e.notification_id)
        seen[e.notification_id] = (
            (day, sent, opened)
            if had is None
            else (min(had[0], day), had[1] or sent, had[2] or opened)
        )
    if not seen:
        return Counter()
    current = await repo.lock_notifications(session, seen)
    counts: Counter[CounterKey] = Counter()
    changed = []
    for notification_id, (day, sent, opened) in seen.items():
        row = current[(notification_id,)]
        old = Cohort(row.day, (row.sent, row.opened))
        new = merge_cohort(old, day, (sent, opened))
        if new != old:
            counts.update(cohort_deltas(old, new, (None, PUSH_SENT, PUSH_OPENED)))
            changed.append(
                {
                    "notification_id": notification_id,
                    "day": new.day,
                    "sent": new.flags[0],
                    "opened": new.flags[1],
                }
            )
    await repo.save_notifications(session, changed)
    return counts


async def _balances(
    session: AsyncSession, events: list[LedgerEvent], threshold: int, tz: ZoneInfo
) -> Counter[CounterKey]:
    if not events:
        return Counter()
    rows = await repo.lock_balances(session, {(e.user_id, e.asset) for e in events})
    accounts = {
        (key[0], key[1]): Holding(int(r.balance), int(r.entry_id), bool(r.holder))
        for key, r in rows.items()
    }
    before = {k: (h.balance, h.entry_id, h.holder) for k, h in accounts.items()}
    counts = apply_balances(accounts, events, threshold, tz)
    await repo.save_balances(
        session,
        [
            {
                "user_id": u,
                "asset": a,
                "balance": h.balance,
                "entry_id": h.entry_id,
                "holder": h.holder,
            }
            for (u, a), h in sorted(accounts.items())
            if before.get((u, a)) != (h.balance, h.entry_id, h.holder)
        ],
    )
    return counts


async def _redemptions(
    session: AsyncSession, events: list[ExchangeEvent], tz: ZoneInfo
) -> Counter[CounterKey]:
    completed = [e for e in events if e.type == "redemption.completed"]
    counts: Counter[CounterKey] = Counter()
    await repo.add_redemption_latencies(
        session,
        [
            {
                "redemption_id": e.redemption_id,
                "completed_at": e.occurred_at,
                "duration_ms": max(0, int((e.occurred_at - e.requested_at).total_seconds() * 1000)),
            }
            for e in completed
            if e.requested_at is not None
        ],
    )
    if completed:
        new = await repo.add_redemptions(
            session,
            [
                {
                    "redemption_id": e.redemption_id,
                    "user_id": e.user_id,
                    "item_id": e.item_id,
                    "quantity": e.quantity,
                    "points": e.points,
                    "completed_at": e.occurred_at,
                }
                for e in completed
            ],
        )
        for e in completed:
            if e.redemption_id in new:
                counts[(business_day(e.occurred_at, tz), NO_ASSET, REDEMPTIONS)] += 1
        firsts = await repo.add_redeemers(
            session, ((business_day(e.occurred_at, tz), e.user_id) for e in completed)
        )
        for day, n in firsts.items():
            counts[(day, NO_ASSET, REDEEMERS)] += n
    await repo.cancel_redemptions(
        session, [e.redemption_id for e in events if e.type == "redemption.cancelled"]
    )
    return counts


async def _tiers(session: AsyncSession, events: list[EngagementEvent]) -> None:
    newest: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.type != "tier.changed" or not e.user_id:
            continue
        sequence = e.data.get("sequence")
        if not isinstance(sequence, int):
            continue
        if e.user_id in newest and newest[e.user_id]["sequence"] >= sequence:
            continue
        ladder = e.data.get("ladder")
        newest[e.user_id] = {
            "user_id": e.user_id,
            "tier": e.data.get("tier"),
            "sequence": sequence,
            "ladder": [str(c) for c in ladder] if isinstance(ladder, list) else [],
        }
    await repo.save_tiers(session, list(newest.values()))


def _outcomes(batch: Batch) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for x in batch.exchange:
        if x.type == "redemption.completed":
            rows.append(
                {
                    "event_id": f"redemption:{x.redemption_id}",
                    "user_id": x.user_id,
                    "kind": "redemption",
                    "experiment": None,
                    "amount": x.points,
                    "occurred_at": x.occurred_at,
                }
            )
    for e in batch.ledger:
        if e.type == "debited" and e.asset == "points":
            rows.append(
                {
                    "event_id": f"ledger:{e.entry_id}",
                    "user_id": e.user_id,
                    "kind": "points_spent",
                    "experiment": None,
                    "amount": -e.points,
                    "occurred_at": e.occurred_at,
                }
            )
    for n in batch.notify:
        if n.type == "opened":
            rows.append(
                {
                    "event_id": f"opened:{n.notification_id}",
                    "user_id": n.user_id,
                    "kind": "notification_opened",
                    "experiment": n.experiment,
                    "amount": 1,
                    "occurred_at": n.occurred_at,
                }
            )
    return rows
