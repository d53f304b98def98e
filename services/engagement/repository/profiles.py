"""Users' display names and avatars: last write wins per field, by the time it was set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.bulk import Bulk


@dataclass(frozen=True)
class Profile:
    user_id: str
    display_name: str | None
    avatar_url: str | None
    updated_at: datetime | None = None


PROFILES = Bulk(
    "user_profiles",
    {
        "user_id": "text",
        "display_name": "text",
        "name_at": "timestamptz",  # null: this write leaves the name alone
        "avatar_url": "text",
        "avatar_at": "timestamptz",  # null: this write leaves the avatar alone
    },
)


def _newest(value: str, at: str) -> str:
    """SET expressions keeping `value` from whichever write set it last (a tie: this one)."""
    newer = (
        f"EXCLUDED.{at} IS NOT NULL AND "
        f"(user_profiles.{at} IS NULL OR EXCLUDED.{at} >= user_profiles.{at})"
    )
    return ", ".join(
        f"{column} = CASE WHEN {newer} THEN EXCLUDED.{column} ELSE user_profiles.{column} END"
        for column in (value, at)
    )


_SAVE = PROFILES.insert(
    "ON CONFLICT (user_id) DO UPDATE SET "
    f"{_newest('display_name', 'name_at')}, {_newest('avatar_url', 'avatar_at')}, "
    "updated_at = now()"
)


async def save_profiles(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Write these profile changes (one row per user), each field only over an older one."""
    if rows:
        await session.execute(_SAVE, PROFILES.params(sorted(rows, key=lambda r: str(r["user_id"]))))


async def profiles_of(
    session: AsyncSession | AsyncConnection, user_ids: Sequence[str]
) -> dict[str, Profile]:
    """The profiles of these users (a page of a board's entries: one query; the boards'
    hot reads run it on a connection of its own, see leaderboards.py)."""
    if not user_ids:
        return {}
    rows = await session.execute(
        text(
            "SELECT user_id, display_name, avatar_url, updated_at FROM user_profiles "
            "WHERE user_id = ANY(CAST(:ids AS text[]))"
        ),
        {"ids": list(user_ids)},
    )
    return {r.user_id: Profile(**r._mapping) for r in rows}


async def get_profile(session: AsyncSession, user_id: str) -> Profile | None:
    return (await profiles_of(session, [user_id])).get(user_id)
