"""SQL of the member tier history (the points multiplier)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bulk import Bulk

TIER_CHANGES = Bulk(
    "tier_history",
    {
        "user_id": "text",
        "sequence": "integer",
        "tier": "text",
        "multiplier": "numeric",
        "effective_at": "timestamptz",
    },
)
_INSERT_TIER_CHANGES = TIER_CHANGES.insert("ON CONFLICT DO NOTHING")
_TIERS_OF = text(
    "SELECT user_id, sequence, multiplier, effective_at FROM tier_history "
    "WHERE user_id = ANY(CAST(:users AS text[]))"
)


async def insert_tier_changes(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Record tier changes; one seen before (same user and sequence) changes nothing."""
    if rows:
        await session.execute(_INSERT_TIER_CHANGES, TIER_CHANGES.params(rows))


async def tier_changes_of(session: AsyncSession, user_ids: Sequence[str]) -> list[Any]:
    if not user_ids:
        return []
    return list(await session.execute(_TIERS_OF, {"users": list(user_ids)}))
