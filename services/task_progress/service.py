"""task_progress use cases: rule administration, turning behaviors into grants, and taking
back (clawing back) what a refunded order earned."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress import checkins
from services.task_progress import repository as repo
from services.task_progress.domain import (
    REWARD_FIELDS,
    Clawback,
    OrderGrant,
    Progress,
    Rule,
    clawbacks,
    complete,
    match_rules,
    order_behavior_id,
    period_end,
    period_key,
    refunded_total,
    rule_from_row,
    status_of,
    yuan,
)
from services.task_progress.emit import Output, tier_book
from services.task_progress.metrics import CLAWBACKS, REFUNDS
from services.task_progress.models import messaging
from services.task_progress.schemas import TaskCreate, TaskPatch, check_rule
from shared.errors import InvalidInput, NotFound
from shared.events import REWARDS_GRANTS, BehaviorEvent, ClawbackCommand
from shared.messaging import OutgoingEvent, add_to_outbox

log = logging.getLogger(__name__)
ORDER_PAID = "order_paid"
ORDER_REFUNDED = "order_refunded"


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
    await _record_orders_and_refunds(session, events)
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
    locked = await repo.lock_progress(
        session,
        [(e.user_id, r.id, key) for e, r, key in counted]
        + [checkins.lock_key(e.user_id, r.id) for e, r, _ in checked_in],
    )
    state = {
        k: Progress(row.n, row.completions, row.points, row.last_event_at)
        for k, row in locked.items()
        if k[2] != checkins.CHECKIN_KEY
    }
    out = Output(tiers=await tier_book(session, {e.user_id for e, _, _ in matches}))
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
                expires_at=done.expires_at,
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
    await checkins.apply_checkins(session, checked_in, out, tz)
    return await out.write(session)


def _is_amount(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _text(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= 128


@dataclass(frozen=True)
class RefundCause:
    """What a clawback names as its reason for being: the refund and when it happened."""

    reference: str
    occurred_at: datetime


async def _record_orders_and_refunds(session: AsyncSession, events: list[BehaviorEvent]) -> None:
    paid: dict[str, dict[str, Any]] = {}
    refunds: dict[tuple[str, str], dict[str, Any]] = {}
    causes: dict[str, RefundCause] = {}
    for event in events:
        attrs = event.attributes
        if event.action == ORDER_PAID and _is_amount(attrs.get("amount_cents")):
            paid[event.behavior_id] = {
                "order_behavior_id": event.behavior_id,
                "user_id": event.user_id,
                "source": event.source,
                "order_no": event.event_id,
                "paid_cents": attrs["amount_cents"],
            }
        elif event.action == ORDER_REFUNDED:
            order_no, refund_no = attrs.get("order_no"), attrs.get("refund_no")
            amount = attrs.get("refund_amount_cents")
            if not (_text(order_no) and _text(refund_no) and _is_amount(amount)):
                REFUNDS.labels("invalid").inc()
                log.warning(
                    "refund behavior %s left aside: needs order_no, refund_no and "
                    "refund_amount_cents >= 0",
                    event.behavior_id,
                )
                continue
            order_id = order_behavior_id(event.source, order_no)
            refunds[(order_id, refund_no)] = {
                "order_behavior_id": order_id,
                "refund_no": refund_no,
                "user_id": event.user_id,
                "amount_cents": amount,
            }
            causes[order_id] = RefundCause(event.behavior_id, event.occurred_at)
    if not paid and not refunds:
        return
    if refunds:
        # Lock the refunded orders before adding refunds, in the order the HTTP refund takes
        # (order, then refund): the two never wait on each other in a cycle.
        await repo.orders_by_id(session, sorted(causes), for_update=True)
    # Refunds before orders: an order of this very batch then finds the refunds waiting for it.
    new_refunds = await repo.insert_refunds(session, list(refunds.values()))
    refunded_orders = await repo.insert_orders(session, list(paid.values()))
    REFUNDS.labels("duplicate").inc(len(refunds) - len(new_refunds))
    touched = {order_id for order_id, _ in new_refunds} | refunded_orders
    if not touched:
        return
    settled = await settle(session, sorted(touched), lock=True)
    for order_id, _ in new_refunds:
        REFUNDS.labels("applied" if order_id in settled else "waiting").inc()
    await emit_clawbacks(session, list(settled.values()), causes)


@dataclass(frozen=True)
class Settlement:
    """An order, its refunds and the cumulative clawback of each grant it caused."""

    order: Any
    refunds: list[Any]
    grants: list[Any]
    refunded_cents: int
    clawbacks: list[Clawback]

    def clawed(self, grant_id: str) -> int:
        return next((c.clawed_total for c in self.clawbacks if c.grant_id == grant_id), 0)


async def settle(
    session: AsyncSession, order_ids: Sequence[str], *, lock: bool
) -> dict[str, Settlement]:
    """What the known orders among `order_ids` take back from their grants (all grants their
    behavior caused for the same user: ratio, bonus and extra rewards alike)."""
    found = await repo.orders_by_id(session, order_ids, for_update=lock)
    ids = list(found)
    refunds = await repo.refunds_of(session, ids)
    caused = await repo.grants_caused_by(session, ids)
    settled = {}
    for order_id, order in found.items():
        amounts = [r.amount_cents for r in refunds[order_id]]
        own = [g for g in caused[order_id] if g.user_id == order.user_id]
        settled[order_id] = Settlement(
            order=order,
            refunds=refunds[order_id],
            grants=own,
            refunded_cents=refunded_total(order.paid_cents, amounts),
            clawbacks=clawbacks(
                [OrderGrant(g.grant_id, g.asset, g.points) for g in own], order.paid_cents, amounts
            ),
        )
    return settled


async def emit_clawbacks(
    session: AsyncSession,
    settlements: Sequence[Settlement],
    causes: dict[str, RefundCause],
) -> None:
    """Put one ClawbackCommand per clawed grant in the outbox (rewards.grants, by user).

    The totals are cumulative and the ids follow from them, so emitting a settlement again
    emits duplicates the ledger ignores, never a second reversal."""
    outgoing = []
    for s in settlements:
        order = s.order
        cause = causes.get(order.order_behavior_id) or RefundCause(
            f"refund:{order.order_no}:{s.refunds[-1].refund_no}" if s.refunds else order.order_no,
            datetime.now(UTC),
        )
        reason = (
            f"order {order.order_no} refunded {yuan(s.refunded_cents)} "
            f"of {yuan(order.paid_cents)} yuan"
        )
        for c in s.clawbacks:
            command = ClawbackCommand(
                clawback_id=c.clawback_id,
                grant_id=c.grant_id,
                user_id=order.user_id,
                asset=c.asset,
                clawed_total=c.clawed_total,
                reference=cause.reference,
                reason=reason,
                occurred_at=cause.occurred_at,
            )
            outgoing.append(OutgoingEvent(REWARDS_GRANTS, order.user_id, command.model_dump_json()))
            CLAWBACKS.labels(c.asset).inc()
    await add_to_outbox(session, messaging.outbox, outgoing)


def settlement_view(s: Settlement) -> dict[str, Any]:
    return {
        "order_no": s.order.order_no,
        "paid_cents": s.order.paid_cents,
        "refunded_cents": s.refunded_cents,
        "clawbacks": [
            {"grant_id": c.grant_id, "asset": c.asset, "clawed_total": c.clawed_total}
            for c in s.clawbacks
        ],
    }


async def refund_order(
    session: AsyncSession,
    source: str,
    order_no: str,
    refund_no: str,
    amount_cents: int | None,
) -> tuple[dict[str, Any], bool]:
    """Record one refund of a known order and take back its share of the order's grants.

    Returns the order's settlement and whether the refund is new (a refund number seen
    before changes nothing). Without an amount the refund is whatever is left of the order.
    """
    order_id = order_behavior_id(source, order_no)
    order = (await repo.orders_by_id(session, [order_id], for_update=True)).get(order_id)
    if order is None:
        raise NotFound("order", order_no)
    earlier = (await repo.refunds_of(session, [order_id]))[order_id]
    if any(r.refund_no == refund_no for r in earlier):
        REFUNDS.labels("duplicate").inc()
        return settlement_view((await settle(session, [order_id], lock=False))[order_id]), False
    left = order.paid_cents - refunded_total(order.paid_cents, [r.amount_cents for r in earlier])
    amount = left if amount_cents is None else amount_cents
    if amount > left:
        raise InvalidInput(
            f"a refund of {yuan(amount)} yuan is more than the {yuan(left)} yuan left "
            f"to refund of order {order_no}"
        )
    await repo.insert_refunds(
        session,
        [
            {
                "order_behavior_id": order_id,
                "refund_no": refund_no,
                "user_id": order.user_id,
                "amount_cents": amount,
            }
        ],
    )
    REFUNDS.labels("applied").inc()
    settled = (await settle(session, [order_id], lock=False))[order_id]
    cause = RefundCause(f"refund:{order_no}:{refund_no}", datetime.now(UTC))
    await emit_clawbacks(session, [settled], {order_id: cause})
    return settlement_view(settled), True


async def order_view(session: AsyncSession, source: str, order_no: str) -> dict[str, Any]:
    """An order with its refunds and its grants (and how much of each is taken back)."""
    order_id = order_behavior_id(source, order_no)
    found = (await settle(session, [order_id], lock=False)).get(order_id)
    if found is None:
        raise NotFound("order", order_no)
    order = found.order
    return {
        **settlement_view(found),
        "source": order.source,
        "user_id": order.user_id,
        "created_at": order.created_at,
        "refunds": [
            {"refund_no": r.refund_no, "amount_cents": r.amount_cents, "created_at": r.created_at}
            for r in found.refunds
        ],
        "grants": [
            {
                "grant_id": g.grant_id,
                "task_id": g.task_id,
                "asset": g.asset,
                "points": g.points,
                "completion": g.completion,
                "expires_at": g.expires_at,
                "available_at": g.available_at,
                "clawed_total": found.clawed(g.grant_id),
            }
            for g in found.grants
        ],
    }


def _row_to_dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


def rule_snapshot(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of a rule that decide what it pays, as JSON (a version's record)."""
    return {
        f: fields[f].astimezone(UTC).isoformat()
        if isinstance(fields.get(f), datetime)
        else fields.get(f)
        for f in REWARD_FIELDS
    }


async def create_task(
    session: AsyncSession, body: TaskCreate, task_id: str | None = None
) -> dict[str, Any]:
    task_id = task_id or str(uuid.uuid4())
    values = body.model_dump(mode="python")
    await repo.insert_task(session, {"id": task_id, **values})
    await repo.insert_version(session, task_id, 1, rule_snapshot(values))
    return await get_task(session, task_id)


async def get_task(session: AsyncSession, task_id: str) -> dict[str, Any]:
    row = await repo.get_task(session, task_id)
    if row is None:
        raise NotFound("task", task_id)
    return _row_to_dict(row)


async def patch_task(session: AsyncSession, task_id: str, patch: TaskPatch) -> dict[str, Any]:
    """Change a rule. A change to what it pays makes a new version: behaviors from then on
    are paid by it, and progress already made in the current period counts toward it."""
    row = await repo.get_task(session, task_id, for_update=True)
    if row is None:
        raise NotFound("task", task_id)
    changes = patch.model_dump(exclude_unset=True, mode="python")
    merged = {**_row_to_dict(row), **changes}
    if merged["kind"] == "checkin" and merged.get("ladder") and not merged.get("cycle_days"):
        changes["cycle_days"] = merged["cycle_days"] = merged["ladder"][-1]["day"]
    try:
        check_rule(merged)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    before = rule_snapshot(_row_to_dict(row))
    after = rule_snapshot(merged)
    if after != before:
        changes["version"] = row.version + 1
    if changes:
        await repo.update_task(session, task_id, changes)
    if after != before:
        await repo.insert_version(session, task_id, row.version + 1, after)
    return await get_task(session, task_id)


async def task_versions(session: AsyncSession, task_id: str) -> dict[str, Any]:
    await get_task(session, task_id)
    rows = await repo.versions_of(session, task_id)
    return {
        "task_id": task_id,
        "items": [{"version": r.version, "rule": r.rule, "created_at": r.created_at} for r in rows],
    }


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
                "reward_type": row.reward_type,
                "extra_rewards": row.extra_rewards,
                "max_per_period": rule.cap,
                "count": state.count,
                "completions": state.completions,
                "points_earned": state.points,
                "progress_to_next": state.count % row.target_count if row.kind == "count" else 0,
                "status": status_of(rule, state),
            }
        )
    return {"user_id": user_id, "items": items}
