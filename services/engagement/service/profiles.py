"""Users' display names and avatars: set through the API or by an upstream's
`profile_updated` behaviors, the newest write of each field winning whatever order they
arrive in (the repository compares the times; a batch keeps its newest per user first)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import names
from services.engagement import repository as repo
from services.engagement.domain import aware
from shared.events import BehaviorEvent

# field -> the column holding when it was set
FIELDS = {"display_name": "name_at", "avatar_url": "avatar_at"}


def _row(user_id: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "display_name": None,
        "name_at": None,
        "avatar_url": None,
        "avatar_at": None,
    }


def _merge(row: dict[str, Any], fields: Mapping[str, str | None], at: datetime) -> None:
    for field, at_column in FIELDS.items():
        if field in fields and (row[at_column] is None or at >= row[at_column]):
            row[field] = fields[field]
            row[at_column] = at


def profile_changes(behaviors: Iterable[BehaviorEvent]) -> list[dict[str, Any]]:
    """One row per user of what the batch's `profile_updated` behaviors set, each field
    from the newest behavior carrying it."""
    rows: dict[str, dict[str, Any]] = {}
    for behavior in behaviors:
        if behavior.action != names.PROFILE_UPDATED:
            continue
        fields = names.profile_fields(behavior.attributes)
        if fields:
            row = rows.setdefault(behavior.user_id, _row(behavior.user_id))
            _merge(row, fields, aware(behavior.occurred_at))
    return list(rows.values())


async def apply_profiles(session: AsyncSession, behaviors: Iterable[BehaviorEvent]) -> list[str]:
    """Save what the batch's `profile_updated` behaviors set; returns the users changed."""
    rows = profile_changes(behaviors)
    await repo.save_profiles(session, rows)
    return [r["user_id"] for r in rows]


async def put_profile(
    session: AsyncSession, user_id: str, fields: Mapping[str, str | None], now: datetime
) -> repo.Profile:
    """Set these fields of a user's profile as of `now` (fields left out stay as they are)."""
    if fields:
        row = _row(user_id)
        _merge(row, fields, now)
        await repo.save_profiles(session, [row])
    return await get_profile(session, user_id)


async def get_profile(session: AsyncSession, user_id: str) -> repo.Profile:
    """A user's profile (empty when nothing was ever set)."""
    return await repo.get_profile(session, user_id) or repo.Profile(user_id, None, None)
