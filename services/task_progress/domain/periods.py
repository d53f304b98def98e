"""Periods: which period a behavior belongs to (its key) and when a period ends, in the
business timezone."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from shared.periods import calendar_key

Period = Literal["day", "week", "month", "once", "lifetime"]
PERIODS: tuple[str, ...] = ("day", "week", "month", "once", "lifetime")


def period_key(period: str, occurred_at: datetime, tz: ZoneInfo) -> str:
    """Which period a behavior belongs to, by when it happened in the business timezone."""
    if period in ("once", "lifetime"):
        return period
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}")
    return calendar_key(period, occurred_at, tz)


def period_end(period: str, now: datetime, tz: ZoneInfo) -> datetime | None:
    """When the period containing `now` ends (None for periods that never reset)."""
    local = now.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return midnight + timedelta(days=1)
    if period == "week":
        return midnight + timedelta(days=7 - local.weekday())
    if period == "month":
        first = midnight.replace(day=1)
        return (first + timedelta(days=32)).replace(day=1)
    return None
