"""A user's preferences (opt-outs, quiet hours, timezone, language): reading them with their
defaults, and changing what is given."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier import domain
from services.notifier import repository as repo
from services.notifier.domain import Preferences
from services.notifier.settings import Settings
from shared.errors import InvalidInput


def preferences_from(row: Any, settings: Settings, prefix: str = "") -> Preferences:
    """A user's preferences from their row (None: the defaults)."""
    default_start = domain.parse_hhmm(settings.quiet_start)
    default_end = domain.parse_hhmm(settings.quiet_end)
    if row is None or getattr(row, f"{prefix}reminders", None) is None:
        return Preferences(
            quiet_start=default_start,
            quiet_end=default_end,
            timezone=settings.business_timezone,
        )
    start = getattr(row, f"{prefix}quiet_start")
    end = getattr(row, f"{prefix}quiet_end")
    return Preferences(
        reminders=getattr(row, f"{prefix}reminders"),
        marketing=getattr(row, f"{prefix}marketing"),
        quiet_enabled=getattr(row, f"{prefix}quiet_enabled"),
        quiet_start=domain.parse_hhmm(start) if start else default_start,
        quiet_end=domain.parse_hhmm(end) if end else default_end,
        timezone=getattr(row, f"{prefix}timezone") or settings.business_timezone,
        locale=getattr(row, f"{prefix}locale") or domain.DEFAULT_LOCALE,
    )


def user_zones(settings: Settings, prefs: dict[str, Any], users: Iterable[str]) -> dict[str, str]:
    return {
        u: (prefs[u].timezone if u in prefs and prefs[u].timezone else settings.business_timezone)
        for u in users
    }


def preferences_out(user_id: str, prefs: Preferences) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "categories": {
            "transactional": True,
            "reminders": prefs.reminders,
            "marketing": prefs.marketing,
        },
        "quiet_hours": {
            "enabled": prefs.quiet_enabled,
            "start": prefs.quiet_start.strftime("%H:%M"),
            "end": prefs.quiet_end.strftime("%H:%M"),
        },
        "timezone": prefs.timezone,
        "locale": prefs.locale,
    }


async def get_preferences(session: AsyncSession, settings: Settings, user_id: str) -> dict:
    return preferences_out(
        user_id, preferences_from(await repo.preferences_of(session, user_id), settings)
    )


async def put_preferences(
    session: AsyncSession, settings: Settings, user_id: str, body: dict[str, Any]
) -> dict:
    categories = body.get("categories") or {}
    if categories.get("transactional") is False:
        raise InvalidInput("transactional messages cannot be switched off")
    current = preferences_from(await repo.preferences_of(session, user_id), settings)
    quiet = body.get("quiet_hours") or {}
    values = {
        "user_id": user_id,
        "reminders": categories.get("reminders", current.reminders),
        "marketing": categories.get("marketing", current.marketing),
        "quiet_enabled": quiet.get("enabled", current.quiet_enabled),
        "quiet_start": quiet.get("start", current.quiet_start.strftime("%H:%M")),
        "quiet_end": quiet.get("end", current.quiet_end.strftime("%H:%M")),
        "timezone": body.get("timezone") or current.timezone,
        "locale": body.get("locale") or current.locale,
    }
    await repo.put_preferences(session, values)
    return await get_preferences(session, settings, user_id)
