"""Insights use cases. They run inside the caller's unit of work and only flush.

`apply_batch` turns one consumed batch of every topic into the rollups: daily counters, the
sets they count (active users, redeemers, task-periods, notifications, holders), exposures
and outcomes for experiments, and the recommender's read models.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.insights import repository as repo
from services.insights import stats
from services.insights.domain import (
    DAU,
    NO_ASSET,
    PUSH_OPENED,
    PUSH_SENT,
    REDEEMERS,
    REDEMPTIONS,
    TARGETS,
    TASKS_COMPLETED,
    TASKS_STARTED,
    Cohort,
    CounterKey,
    Holding,
    apply_balances,
    business_day,
    cohort_deltas,
    days_between,
    kpi_day,
    ledger_counters,
    merge_cohort,
    window_kpis,
)
from services.insights.models import messaging
from services.insights.recommend import Model, Redeemed, UserView, recommend
from services.insights.settings import Settings
from shared.errors import DomainError, InvalidInput, NotFound
from shared.events import (
    EXPERIMENT_EXPOSURES,
    BehaviorEvent,
    EngagementEvent,
    ExchangeEvent,
    ExperimentExposure,
    LedgerEvent,
    NotifyEvent,
    ProgressEvent,
    stable_id,
)
from shared.experiments import assign
from shared.messaging import OutgoingEvent, add_to_outbox
from shared.periods import calendar_key

MAX_KPI_DAYS = 366
SUMMARY_DAYS = 30

# Outcome kinds an experiment's metric can name.
OUTCOME_KINDS = ("redemption", "points_spent", "notification_opened")


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


# -- KPIs ---------------------------------------------------------------------------------------


def _check_range(start: date, end: date) -> None:
    if end < start:
        raise InvalidInput("`to` must not be before `from`")
    if (end - start).days + 1 > MAX_KPI_DAYS:
        raise InvalidInput(f"at most {MAX_KPI_DAYS} days at a time")


async def kpi_series(
    session: AsyncSession, start: date, end: date, asset: str
) -> list[dict[str, Any]]:
    """Each business day's KPIs in [start, end]."""
    _check_range(start, end)
    by_day: dict[date, dict[tuple[str, str], int]] = {}
    for r in await repo.counters_between(session, start, end):
        by_day.setdefault(r.day, {})[(r.asset, r.metric)] = int(r.value)
    holders = (await repo.holders_before(session, start)).get(asset, 0)
    series = []
    for day in days_between(start, end):
        counts = by_day.get(day, {})
        series.append(kpi_day(day, counts, holders, asset))
        holders += counts.get((asset, "holder_opens"), 0) - counts.get((asset, "holder_closes"), 0)
    return series


async def window(session: AsyncSession, start: date, end: date, asset: str) -> dict[str, Any]:
    """The KPIs of the window [start, end], DAU growth against the window just before."""
    days = (end - start).days + 1
    before_start = start - timedelta(days=days)
    totals: Counter[tuple[str, str]] = Counter()
    dau: Counter[date] = Counter()
    for r in await repo.counters_between(session, before_start, end):
        if r.metric == DAU:
            dau[r.day] += int(r.value)
        if r.day >= start:
            totals[(r.asset, r.metric)] += int(r.value)
    dau_now = sum(v for d, v in dau.items() if d >= start) / days
    dau_before = sum(v for d, v in dau.items() if d < start) / days
    holders = (await repo.holders_before(session, start)).get(asset, 0)
    redeemers = await repo.distinct_redeemers(session, start, end)
    return window_kpis(totals, holders, redeemers, dau_now, dau_before, asset)


async def summary(session: AsyncSession, today: date, asset: str) -> dict[str, Any]:
    start = today - timedelta(days=SUMMARY_DAYS - 1)
    values = await window(session, start, today, asset)
    return {
        "from": start.isoformat(),
        "to": today.isoformat(),
        "asset": asset,
        "items": [
            {
                "kpi": t.kpi,
                "value": values[t.kpi],
                "target": t.target,
                "comparison": t.comparison,
                "met": t.met(values[t.kpi]),
                "description": t.description,
            }
            for t in TARGETS
        ],
        "values": values,
    }


# -- experiments --------------------------------------------------------------------------------


def experiment_view(row: Any) -> dict[str, Any]:
    return {
        "key": row.key,
        "name": row.name,
        "description": row.description,
        "variants": row.variants,
        "metric": row.metric,
        "namespace": row.namespace,
        "coverage": row.coverage,
        "seed": row.seed,
        "hash_version": row.hash_version,
        "status": row.status,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


_DEFINITION = (
    "name",
    "description",
    "variants",
    "metric",
    "namespace",
    "coverage",
    "seed",
    "hash_version",
)


async def create_experiment(
    session: AsyncSession, values: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """Define an experiment. The same definition again replays it (created False); another
    one under an existing key is refused (409 experiment_exists)."""
    created = await repo.insert_experiment(session, values)
    row = await repo.experiment(session, values["key"])
    assert row is not None
    view = experiment_view(row)
    if not created and any(view[k] != values[k] for k in _DEFINITION):
        raise DomainError(
            "experiment_exists", f"experiment {values['key']!r} exists with another definition"
        )
    return view, created


async def get_experiment(session: AsyncSession, key: str) -> Any:
    row = await repo.experiment(session, key)
    if row is None:
        raise NotFound("experiment", key)
    return row


async def change_status(session: AsyncSession, key: str, status: str) -> dict[str, Any]:
    row = await get_experiment(session, key)
    if row.status == "stopped" and status != "stopped":
        raise DomainError("experiment_stopped", f"experiment {key!r} is stopped for good")
    updated = await repo.set_status(session, key, status)
    return experiment_view(updated)


def assignment_of(row: Any, user_id: str) -> str | None:
    """The variant the user sees: the shared assignment function, running experiments only."""
    if row.status != "running":
        return None
    return assign(
        row.key,
        user_id,
        [(v["key"], float(v["weight"])) for v in row.variants],
        seed=row.seed,
        namespace=tuple(row.namespace) if row.namespace else None,
        coverage=float(row.coverage),
        hash_version=int(row.hash_version),
    )


async def assignment(
    session: AsyncSession, key: str, user_id: str, expose: bool, now: datetime | None = None
) -> dict[str, Any]:
    """The user's variant; with `expose`, an exposure is logged on experiment.exposures
    (once per user: its id is derived from the experiment and the user)."""
    row = await get_experiment(session, key)
    variant = assignment_of(row, user_id)
    if expose and variant is not None:
        exposure = ExperimentExposure(
            event_id=stable_id("exposure", key, user_id),
            experiment=key,
            variant=variant,
            user_id=user_id,
            source="insights",
            occurred_at=now or datetime.now(UTC),
        )
        await add_to_outbox(
            session,
            messaging.outbox,
            [OutgoingEvent(EXPERIMENT_EXPOSURES, user_id, exposure.model_dump_json())],
        )
    return {
        "experiment": key,
        "user_id": user_id,
        "variant": variant,
        "in_experiment": variant is not None,
        "status": row.status,
    }


SRM_THRESHOLD = 0.001


def _arm(row: Any) -> tuple[int, int, float, float]:
    if row is None:
        return 0, 0, 0.0, 0.0
    return int(row.n), int(row.converted), float(row.total), float(row.total_squares)


async def results(session: AsyncSession, key: str) -> dict[str, Any]:
    """Per variant: users exposed, conversions (or the mean), a 95% interval, the lift over
    the first (control) variant and its p-value; and the sample-ratio-mismatch check."""
    row = await get_experiment(session, key)
    metric = row.metric
    kind = metric["type"]
    totals = await repo.variant_totals(session, key, metric["event"], int(metric["window_days"]))
    keys = [v["key"] for v in row.variants]
    weights = [float(v["weight"]) for v in row.variants]
    n0, c0, t0, s0 = _arm(totals.get(keys[0]))
    mean0 = t0 / n0 if n0 else None
    var0 = (s0 - n0 * mean0 * mean0) / (n0 - 1) if n0 > 1 and mean0 is not None else 0.0
    variants = []
    for index, variant in enumerate(keys):
        n, converted, total, squares = _arm(totals.get(variant))
        item: dict[str, Any] = {"key": variant, "weight": weights[index], "n": n}
        if kind == "conversion":
            rate = converted / n if n else None
            control = c0 / n0 if n0 else None
            item |= {"conversions": converted, "rate": rate}
            interval = stats.wilson_interval(converted, n)
            test = stats.two_proportion_z(c0, n0, converted, n) if index else None
            value, base = rate, control
        else:
            mean = total / n if n else None
            variance = (squares - n * mean * mean) / (n - 1) if n > 1 and mean is not None else 0.0
            item |= {"conversions": converted, "mean": mean, "total": total}
            interval = stats.mean_interval(mean, variance, n) if mean is not None else None
            test = (
                stats.welch_t(mean0 or 0.0, var0, n0, mean or 0.0, variance, n) if index else None
            )
            value, base = mean, mean0
        item["ci"] = list(interval) if interval else None
        item["lift"] = value / base - 1.0 if index and value is not None and base else None
        item["p_value"] = test.p_value if test else None
        item["statistic"] = test.statistic if test else None
        if test is not None and test.df is not None:
            item["df"] = test.df
        variants.append(item)
    srm = stats.srm_chi_square([v["n"] for v in variants], weights)
    return {
        "experiment": key,
        "status": row.status,
        "metric": metric,
        "test": "two_proportion_z" if kind == "conversion" else "welch_t",
        "control": keys[0],
        "variants": variants,
        "exposures": sum(v["n"] for v in variants),
        "srm": {
            "chi_square": srm.statistic if srm else None,
            "p_value": srm.p_value if srm else None,
            "threshold": SRM_THRESHOLD,
            "mismatch": bool(srm and srm.p_value < SRM_THRESHOLD),
        },
        "unknown_variants": sorted(set(totals) - set(keys)),
    }


# -- recommendations ----------------------------------------------------------------------------


async def recommendations(
    session: AsyncSession,
    model: Model,
    user_id: str,
    limit: int,
    settings: Settings,
    now: datetime | None = None,
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    row = await repo.user_view(
        session, user_id, now, now + timedelta(days=settings.expiring_window_days)
    )
    tier = row.tier or {}
    user = UserView(
        user_id=user_id,
        balance=int(row.balance or 0),
        tier=tier.get("tier"),
        ladder=tuple(tier.get("ladder") or ()),
        redeemed=[
            Redeemed(item, int(quantity), datetime.fromisoformat(at))
            for item, quantity, at in row.redeemed
        ],
        expiring=[(datetime.fromisoformat(at), int(points)) for at, points in row.expiring],
    )
    chosen = recommend(
        model,
        user,
        limit=limit,
        now=now,
        tz=settings.tz,
        per_category=settings.recommendations_per_category,
    )
    return {
        "user_id": user_id,
        "balance": user.balance,
        "strategy": "personalized" if user.redeemed else "popular",
        "items": [
            {
                "item_id": r.item_id,
                "name": r.name,
                "category": r.category,
                "points_price": r.points_price,
                "score": r.score,
                "reason": r.reason,
            }
            for r in chosen
        ],
    }
