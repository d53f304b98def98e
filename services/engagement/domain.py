"""Pure engagement rules (no I/O): what a ledger movement adds to what a user earned, which
period of a board an event falls in, display ranks and percentiles, prize ranks, tier
qualification, badge progress, and the ids of what engagement pays out."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from shared.events import LedgerEvent, stable_id
from shared.periods import CALENDAR_UNITS, calendar_key

Window = Literal["day", "week", "month", "all_time"]
Metric = Literal["points_earned", "growth_earned", "action_count"]
WINDOWS: tuple[str, ...] = ("day", "week", "month", "all_time")
ALL_TIME = "all"
METRIC_ASSET = {"points_earned": "points", "growth_earned": "growth"}

# -- what was earned ------------------------------------------------------------------------

# Movements that make points spendable for the first time: a credit, a positive (or
# negative, an operator's correction) adjustment, and a pending lot becoming available.
# A pending credit counts when it is released, not when it is credited: until then it can
# still be clawed back before the user ever had it (a refunded order), and counting it once
# at release needs no reversal for that case.
EARNING_TYPES = frozenset({"credited", "adjusted", "released"})


def earned_delta(event: LedgerEvent) -> int:
    """How much this ledger movement changes what the user EARNED of its asset.

    Spending (debited), refunds of a spend, expiry and debt repayment leave it alone:
    earned is not the balance, so a redemption never costs rank. A clawback lowers it by
    what it took back from available points plus what it recorded as debt (the part that
    had been spent); the pending part it cancels was never counted.
    """
    if event.type in EARNING_TYPES:
        return event.points
    if event.type == "clawed_back":
        return event.points - event.debt  # points <= 0, debt >= 0
    return 0


# -- periods --------------------------------------------------------------------------------


def period_key(window: str, at: datetime, tz: ZoneInfo) -> str:
    """The period of a board's window that `at` falls in, in the business timezone."""
    if window == "all_time":
        return ALL_TIME
    if window not in CALENDAR_UNITS:
        raise ValueError(f"unknown window {window!r}")
    return calendar_key(window, at, tz)


def period_bounds(window: str, key: str, tz: ZoneInfo) -> tuple[datetime, datetime] | None:
    """[start, end) of a period in the business timezone; None for all_time (never ends).
    Raises ValueError for a key that is not one of this window's."""
    if window == "all_time":
        if key != ALL_TIME:
            raise ValueError(f"the all_time window has one period, {ALL_TIME!r}")
        return None
    if window == "day":
        start_day = date.fromisoformat(key)
        end_day = start_day + timedelta(days=1)
    elif window == "week":
        year, _, week = key.partition("-W")
        start_day = date.fromisocalendar(int(year), int(week), 1)
        end_day = start_day + timedelta(days=7)
    elif window == "month":
        year, _, month = key.partition("-")
        start_day = date(int(year), int(month), 1)
        end_day = (start_day + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown window {window!r}")
    if period_key(window, _midnight(start_day, tz), tz) != key:
        raise ValueError(f"{key!r} is not a {window} period key")
    return _midnight(start_day, tz), _midnight(end_day, tz)


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def local_day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def aware(at: datetime) -> datetime:
    """`at`, read as UTC when it carries no zone."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def window_start(now: datetime, tz: ZoneInfo, days: int) -> date:
    """First business day of the rolling window of `days` days ending today."""
    return local_day(now, tz) - timedelta(days=days - 1)


# -- ranks ----------------------------------------------------------------------------------


def display_ranks(
    scores: Sequence[float], first_position: int = 1, first_rank: int = 1
) -> list[int]:
    """Competition ranks (1, 2, 2, 4) of a run of scores sorted high to low, taken from a
    board at `first_position` (1-based) whose first member has rank `first_rank` (lower
    than its position when it ties with members before the run). Equal scores share a
    rank; a score below the one before it ranks at its own position."""
    ranks: list[int] = []
    for i, score in enumerate(scores):
        if i == 0:
            ranks.append(first_rank)
        elif score == scores[i - 1]:
            ranks.append(ranks[-1])
        else:
            ranks.append(first_position + i)
    return ranks


def percentile(rank: int, total: int) -> int:
    """Which top percent the rank is in ("前X%"), from 1 to 100: the leader of any board is
    in the top 1%, never 0%."""
    if total <= 0 or rank <= 0:
        raise ValueError("rank and total must be positive")
    return max(1, min(100, math.ceil(rank * 100 / total)))


@dataclass(frozen=True)
class Prize:
    rank_from: int
    rank_to: int
    reward_type: str
    amount: int


@dataclass(frozen=True)
class Standing:
    user_id: str
    score: int
    reached_at: datetime


@dataclass(frozen=True)
class Placed:
    position: int  # 1.. with ties broken by who reached the score first (prizes)
    rank: int  # competition rank, ties shared (display)
    user_id: str
    score: int
    prize: Prize | None


def final_standings(standings: Sequence[Standing], prizes: Sequence[Prize]) -> list[Placed]:
    """Order a closed period: higher score first, then who reached it first, then user id
    (so the order is total and a re-run gives the same). Prizes go by position, so a tie
    never pays two people the same prize rank."""
    ordered = sorted(standings, key=lambda s: (-s.score, s.reached_at, s.user_id))
    ranks = display_ranks([s.score for s in ordered])
    placed = []
    for i, (s, rank) in enumerate(zip(ordered, ranks, strict=True)):
        position = i + 1
        prize = next((p for p in prizes if p.rank_from <= position <= p.rank_to), None)
        placed.append(Placed(position, rank, s.user_id, s.score, prize))
    return placed


def prize_grant_id(board: str, period: str, user_id: str) -> str:
    """One prize per (board, period, user): a close run twice pays nobody twice."""
    return stable_id("leaderboard.prize", board, period, user_id)


def badge_grant_id(badge: str, user_id: str) -> str:
    return stable_id("badge.reward", badge, user_id)


# -- tiers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tier:
    code: str
    name: str
    min_growth: int
    multiplier: float
    benefits: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ladder:
    """Tiers from lowest to highest qualifying growth; a tier's level is its place (1..n),
    0 meaning no tier at all (a ladder whose lowest tier needs growth above 0)."""

    tiers: tuple[Tier, ...]

    def qualified(self, growth: int) -> Tier | None:
        best = None
        for tier in self.tiers:
            if growth >= tier.min_growth:
                best = tier
        return best

    def level(self, code: str | None) -> int:
        for i, tier in enumerate(self.tiers):
            if tier.code == code:
                return i + 1
        return 0

    def get(self, code: str | None) -> Tier | None:
        return next((t for t in self.tiers if t.code == code), None)

    def above(self, tier: Tier | None) -> Tier | None:
        level = self.level(tier.code) if tier else 0
        return self.tiers[level] if level < len(self.tiers) else None

    @property
    def codes(self) -> list[str]:
        return [t.code for t in self.tiers]


def validate_ladder(tiers: Sequence[Tier]) -> str | None:
    """Why a ladder cannot be used, or None."""
    codes = [t.code for t in tiers]
    if len(set(codes)) != len(codes):
        return "tier codes must be unique"
    growths = [t.min_growth for t in tiers]
    if growths != sorted(growths) or len(set(growths)) != len(growths):
        return "tiers must be listed from the lowest min_growth to the highest, each different"
    return None


@dataclass(frozen=True)
class TierChange:
    tier: Tier | None
    previous: Tier | None
    direction: Literal["up", "down", "same"]


def upgrade(ladder: Ladder, current: str | None, growth: int) -> Tier | None:
    """The tier a user moves UP to with `growth` in the window, or None when they stay.
    Upgrades are immediate; lowering waits for the end of the term (`evaluate`)."""
    qualified = ladder.qualified(growth)
    if qualified is not None and ladder.level(qualified.code) > ladder.level(current):
        return qualified
    return None


def evaluate(ladder: Ladder, current: str | None, growth: int) -> TierChange:
    """At the end of a term (and its grace): the tier the window's growth keeps, lowers or
    (had an upgrade not been applied yet) raises the user to."""
    qualified = ladder.qualified(growth)
    held = ladder.get(current)
    now_level = ladder.level(current)
    new_level = ladder.level(qualified.code if qualified else None)
    if new_level == now_level:
        return TierChange(held, held, "same")
    return TierChange(qualified, held, "up" if new_level > now_level else "down")


def term_end(since: datetime, qualification_days: int) -> datetime:
    return since + timedelta(days=qualification_days)


# -- badges ---------------------------------------------------------------------------------

# The per-user counters (user_counters.name) that badge criteria read.
REDEMPTIONS = "redemptions"
BEST_STREAK = "best_streak"


@dataclass
class UserStats:
    """What badge criteria are measured against, for one user."""

    actions: dict[str, int] = field(default_factory=dict)  # lifetime count per action
    recent: dict[tuple[str, int], int] = field(default_factory=dict)  # (action, days) -> count
    earned: dict[str, int] = field(default_factory=dict)  # asset -> total earned
    best_streak: int = 0
    redemptions: int = 0


def badge_progress(criteria: Mapping[str, Any], stats: UserStats) -> tuple[int, int]:
    """(current, target) of a badge's criteria; the badge is earned when current >= target."""
    kind = criteria["type"]
    if kind == "first_action":
        return min(stats.actions.get(criteria["action"], 0), 1), 1
    if kind == "action_count":
        days = criteria.get("within_days")
        count = (
            stats.recent.get((criteria["action"], int(days)), 0)
            if days
            else stats.actions.get(criteria["action"], 0)
        )
        return count, int(criteria["count"])
    if kind == "streak":
        return stats.best_streak, int(criteria["days"])
    if kind == "total_earned":
        return stats.earned.get(criteria["asset"], 0), int(criteria["amount"])
    if kind == "redemptions":
        return stats.redemptions, int(criteria["count"])
    raise ValueError(f"unknown badge criteria {kind!r}")


def badge_earned(criteria: Mapping[str, Any], stats: UserStats) -> bool:
    current, target = badge_progress(criteria, stats)
    return current >= target
