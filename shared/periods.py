"""Calendar periods in the business timezone, shared by every service that counts by them
(task_progress's rule periods, engagement's leaderboard windows)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

CALENDAR_UNITS = ("day", "week", "month")


def calendar_key(unit: str, at: datetime, tz: ZoneInfo) -> str:
    """The day (`2026-11-30`), ISO week (`2026-W49`) or month (`2026-11`) that `at` falls in,
    in `tz`. Raises ValueError for another unit."""
    local = at.astimezone(tz)
    if unit == "day":
        return local.date().isoformat()  # cheaper than strftime, on every event
    if unit == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if unit == "month":
        return f"{local.year:04d}-{local.month:02d}"
    raise ValueError(f"unknown calendar unit {unit!r}")
