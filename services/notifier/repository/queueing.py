"""Queueing notifications: the insert that leaves a cause already queued alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.bulk import Bulk

NOTIFICATIONS = Bulk(
    "notifications",
    {
        "id": "text",
        "user_id": "text",
        "category": "text",
        "trigger": "text",
        "template": "text",
        "title": "text",
        "body": "text",
        "data": "jsonb",
        "campaign_id": "text",
        "experiment": "text",
        "variant": "text",
        "due_at": "timestamptz",
    },
)

_QUEUE = NOTIFICATIONS.insert("ON CONFLICT (id) DO NOTHING RETURNING id")


async def queue(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Insert notifications; an id already there (the same cause again) is left alone.
    Returns the ids that are new."""
    if not rows:
        return []
    result = await session.execute(_QUEUE, NOTIFICATIONS.params(rows))
    return [r[0] for r in result]
