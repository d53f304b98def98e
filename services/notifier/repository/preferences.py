"""Preferences: one user's, many users' at once (rendering, timezones), and the
timezones in use."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.models import preferences

_PREFS_OF = text(
    "SELECT user_id, reminders, marketing, quiet_enabled, quiet_start, quiet_end, timezone, "
    "locale FROM preferences WHERE user_id = ANY(CAST(:users AS text[]))"
)


async def prefs_of(session: AsyncSession, users: Iterable[str]) -> dict[str, Row[Any]]:
    rows = await session.execute(_PREFS_OF, {"users": sorted(set(users))})
    return {r.user_id: r for r in rows}


async def preferences_of(session: AsyncSession, user_id: str) -> Row[Any] | None:
    rows = await session.execute(preferences.select().where(preferences.c.user_id == user_id))
    return rows.one_or_none()


async def put_preferences(session: AsyncSession, values: dict[str, Any]) -> None:
    columns = ", ".join(values)
    binds = ", ".join(f":{c}" for c in values)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in values if c != "user_id")
    await session.execute(
        text(
            f"INSERT INTO preferences ({columns}) VALUES ({binds}) "
            f"ON CONFLICT (user_id) DO UPDATE SET {sets}, updated_at = now()"
        ),
        values,
    )


async def timezones_in_use(session: AsyncSession) -> list[str]:
    rows = await session.execute(
        text("SELECT DISTINCT timezone FROM preferences WHERE timezone IS NOT NULL")
    )
    return [r[0] for r in rows]
