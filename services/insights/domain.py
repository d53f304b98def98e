"""Pure rules of the rollups: which daily counters an event moves, how a set's row merges
with what a batch saw (order-independent, so a replay in any order lands on the same rows),
and how the KPIs and their targets are computed from the counters. No I/O here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared.events import LedgerEvent

NO_ASSET = ""
CounterKey = tuple[date, str, str]  # (day, asset, metric)

# Metrics kept per day (and asset where one applies).
DAU = "dau"
TASKS_STARTED = "tasks_started"
TASKS_COMPLETED = "tasks_completed"
PUSH_SENT = "push_sent"
PUSH_OPENED = "push_opened"
ISSUED = "issued"
REDEEMED = "redeemed"
REFUNDED = "refunded"
EXPIRED = "expired"
CYCLE_POINTS = "cycle_points"
CYCLE_POINT_SECONDS = "cycle_point_seconds"
REDEMPTIONS = "redemptions"
REDEEMERS = "redeemers"
HOLDER_OPENS = "holder_opens"
HOLDER_CLOSES = "holder_closes"
NPS_RESPONSES = "nps_responses"
NPS_PROMOTERS = "nps_promoters"
NPS_DETRACTORS = "nps_detractors"

# The survey behavior NPS is counted from: `attributes.score`, an integer 0-10.
NPS_ACTION = "nps_submitted"

POINTS = "points"


def business_day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def ledger_counters(events: Iterable[LedgerEvent], tz: ZoneInfo) -> Counter[CounterKey]:
    """Points issued, redeemed (spent on debits), refunded and expired per day and asset, and
    the earn-to-redeem cycle of each debited point (from the lots it was drawn from)."""
    counts: Counter[CounterKey] = Counter()
    for e in events:
        day = business_day(e.occurred_at, tz)
        if e.type == "credited":
            counts[(day, e.asset, ISSUED)] += e.points
        elif e.type == "pending":
            counts[(day, e.asset, ISSUED)] += e.pending
        elif e.type == "debited":
            counts[(day, e.asset, REDEEMED)] += -e.points
            for draw in e.lots or ():
                held = max(0, int((e.occurred_at - draw.earned_at).total_seconds()))
                counts[(day, e.asset, CYCLE_POINTS)] += draw.points
                counts[(day, e.asset, CYCLE_POINT_SECONDS)] += draw.points * held
        elif e.type == "refunded":
            counts[(day, e.asset, REFUNDED)] += e.points
        elif e.type == "expired":
            counts[(day, e.asset, EXPIRED)] += -e.points
    return counts


@dataclass
class Holding:
    """An account as the rollup knows it: the last balance applied and whether it holds at
    least the threshold."""

    balance: int
    entry_id: int
    holder: bool


def apply_balances(
    accounts: dict[tuple[str, str], Holding],
    events: Sequence[LedgerEvent],
    threshold: int,
    tz: ZoneInfo,
) -> Counter[CounterKey]:
    """Move each account to its newest balance (an older entry arriving late changes
    nothing) and count the days it crossed the holder threshold, up or down."""
    counts: Counter[CounterKey] = Counter()
    for e in events:
        key = (e.user_id, e.asset)
        held = accounts.setdefault(key, Holding(0, 0, False))
        if e.entry_id <= held.entry_id:
            continue
        holder = e.balance_after >= threshold
        if holder != held.holder:
            metric = HOLDER_OPENS if holder else HOLDER_CLOSES
            counts[(business_day(e.occurred_at, tz), e.asset, metric)] += 1
        held.balance, held.entry_id, held.holder = e.balance_after, e.entry_id, holder
    return counts


@dataclass
class Cohort:
    """A row counted on its day (the earliest seen) with flags that only turn on."""

    day: date | None
    flags: tuple[bool, ...]


def merge_cohort(old: Cohort, day: date, flags: tuple[bool, ...]) -> Cohort:
    merged_day = day if old.day is None else min(old.day, day)
    return Cohort(merged_day, tuple(a or b for a, b in zip(old.flags, flags, strict=True)))


def cohort_deltas(
    old: Cohort, new: Cohort, metrics: Sequence[str | None], asset: str = NO_ASSET
) -> Counter[CounterKey]:
    """Counter moves from a row's old state to its new one: `metrics[0]` counts rows (None:
    no row count), `metrics[k]` rows with flag k-1 set."""
    counts: Counter[CounterKey] = Counter()
    for state, sign in ((old, -1), (new, 1)):
        if state.day is None:
            continue
        if metrics[0] is not None:
            counts[(state.day, asset, metrics[0])] += sign
        for flag, metric in zip(state.flags, metrics[1:], strict=True):
            if flag and metric is not None:
                counts[(state.day, asset, metric)] += sign
    return Counter({k: v for k, v in counts.items() if v})


def nps_score(attributes: Mapping[str, Any]) -> int | None:
    """The 0-10 score of an `nps_submitted` behavior; None when it carries none (an integer,
    or a string or float holding one: upstream forms send all three)."""
    score = attributes.get("score")
    if isinstance(score, bool):
        return None
    if isinstance(score, str):
        score = score.strip()
        if not score.isdigit():
            return None
        score = int(score)
    if isinstance(score, float) and score.is_integer():
        score = int(score)
    if isinstance(score, int) and 0 <= score <= 10:
        return score
    return None


def nps_counters(day: date, score: int) -> Counter[CounterKey]:
    """What one response adds: a response, and a promoter (9-10) or a detractor (0-6)."""
    counts: Counter[CounterKey] = Counter({(day, NO_ASSET, NPS_RESPONSES): 1})
    if score >= 9:
        counts[(day, NO_ASSET, NPS_PROMOTERS)] += 1
    elif score <= 6:
        counts[(day, NO_ASSET, NPS_DETRACTORS)] += 1
    return counts


def nps(promoters: int, detractors: int, responses: int) -> float | None:
    """Net promoter score in points (-100..100): % promoters minus % detractors."""
    return None if not responses else 100.0 * (promoters - detractors) / responses


# -- KPIs -----------------------------------------------------------------------------------


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def kpi_day(
    day: date,
    counts: Mapping[tuple[str, str], int],
    holders_at_start: int,
    asset: str = POINTS,
) -> dict[str, Any]:
    """One day's KPIs from its counters: `counts[(asset, metric)]`."""

    def c(metric: str, of: str = NO_ASSET) -> int:
        return int(counts.get((of, metric), 0))

    holders = holders_at_start + c(HOLDER_OPENS, asset)
    redeemed = c(REDEEMED, asset) - c(REFUNDED, asset)
    issued = c(ISSUED, asset)
    cycle_points = c(CYCLE_POINTS, asset)
    cycle = ratio(c(CYCLE_POINT_SECONDS, asset), cycle_points)
    assets = sorted({a for a, _ in counts if a != NO_ASSET})
    return {
        "day": day.isoformat(),
        "dau": c(DAU),
        "tasks_started": c(TASKS_STARTED),
        "tasks_completed": c(TASKS_COMPLETED),
        "task_completion_rate": ratio(c(TASKS_COMPLETED), c(TASKS_STARTED)),
        "push_sent": c(PUSH_SENT),
        "push_opened": c(PUSH_OPENED),
        "push_open_rate": ratio(c(PUSH_OPENED), c(PUSH_SENT)),
        "redemptions": c(REDEMPTIONS),
        "redeemers": c(REDEEMERS),
        "holders": holders,
        "redeemer_rate": ratio(c(REDEEMERS), holders),
        "points_issued": issued,
        "points_redeemed": redeemed,
        "points_expired": c(EXPIRED, asset),
        "redemption_rate": ratio(redeemed, issued),
        "expiry_rate": ratio(c(EXPIRED, asset), issued),
        "earn_to_redeem_days": None if cycle is None else cycle / 86_400,
        "nps_responses": c(NPS_RESPONSES),
        "nps_promoters": c(NPS_PROMOTERS),
        "nps_detractors": c(NPS_DETRACTORS),
        "nps": nps(c(NPS_PROMOTERS), c(NPS_DETRACTORS), c(NPS_RESPONSES)),
        "assets": {
            a: {
                "issued": c(ISSUED, a),
                "redeemed": c(REDEEMED, a) - c(REFUNDED, a),
                "expired": c(EXPIRED, a),
            }
            for a in assets
        },
    }


@dataclass(frozen=True)
class Target:
    kpi: str
    comparison: str  # ">=" or "<="
    target: float
    description: str
    low: float = 0.0  # the values a target may be set to (an operator's typo is refused)
    high: float = 1.0

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value >= self.target if self.comparison == ">=" else value <= self.target


# The seed's KPI targets: the defaults of the stored targets (kpi_targets, editable through
# PUT /v1/kpis/targets/{kpi}); the summary compares the last 30 days with the stored ones.
TARGETS = (
    Target("dau_growth", ">=", 0.30, "average DAU up 30% on the 30 days before", -1, 100),
    Target("task_completion_rate", ">=", 0.60, "completed / started task-periods"),
    Target("push_open_rate", ">=", 0.15, "opened / sent notifications"),
    # a window may redeem points issued before it: over 1 is possible, if unusual
    Target("redemption_rate", ">=", 0.20, "points redeemed / points issued", 0, 10),
    Target("redeemer_rate", ">=", 0.20, "redeemers / users holding at least the threshold", 0, 10),
    Target("earn_to_redeem_days", "<=", 30.0, "average days a redeemed point was held", 0, 3650),
    Target("expiry_rate", "<=", 0.15, "points expired / issued", 0, 10),
    Target(
        "nps", ">=", 50.0, "% promoters (9-10) minus % detractors (0-6) of NPS responses", -100, 100
    ),
)
TARGET_OF = {t.kpi: t for t in TARGETS}


def window_kpis(
    counts: Mapping[tuple[str, str], int],
    holders_at_start: int,
    distinct_redeemers: int,
    dau_average: float | None,
    dau_average_before: float | None,
    asset: str = POINTS,
) -> dict[str, float | None]:
    """The KPIs of a window from its summed counters (`counts[(asset, metric)]`)."""

    def c(metric: str, of: str = NO_ASSET) -> int:
        return int(counts.get((of, metric), 0))

    issued = c(ISSUED, asset)
    redeemed = c(REDEEMED, asset) - c(REFUNDED, asset)
    cycle = ratio(c(CYCLE_POINT_SECONDS, asset), c(CYCLE_POINTS, asset))
    holders = holders_at_start + c(HOLDER_OPENS, asset)
    growth = (
        None
        if dau_average is None or not dau_average_before
        else dau_average / dau_average_before - 1.0
    )
    return {
        "dau_average": dau_average,
        "dau_growth": growth,
        "task_completion_rate": ratio(c(TASKS_COMPLETED), c(TASKS_STARTED)),
        "push_open_rate": ratio(c(PUSH_OPENED), c(PUSH_SENT)),
        "redeemer_rate": ratio(distinct_redeemers, holders),
        "redemption_rate": ratio(redeemed, issued),
        "earn_to_redeem_days": None if cycle is None else cycle / 86_400,
        "expiry_rate": ratio(c(EXPIRED, asset), issued),
        "nps": nps(c(NPS_PROMOTERS), c(NPS_DETRACTORS), c(NPS_RESPONSES)),
        "nps_responses": float(c(NPS_RESPONSES)),
        "points_issued": float(issued),
        "points_redeemed": float(redeemed),
        "points_expired": float(c(EXPIRED, asset)),
        "holders": float(holders),
        "redeemers": float(distinct_redeemers),
    }
