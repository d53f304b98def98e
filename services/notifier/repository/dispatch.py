"""The dispatcher's statements: claiming due notifications, the day's counters, the
decisions, the waves marked `sending`, the attempts and outcomes recorded."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bulk import Bulk, KeyedRows

_DUE = text(
    """
    SELECT n.id, n.user_id, n.category, n.trigger, n.title, n.body, n.data, n.status,
           n.attempts, n.campaign_id, n.experiment, n.variant,
           p.reminders, p.marketing, p.quiet_enabled, p.quiet_start, p.quiet_end,
           p.timezone, p.locale
    FROM notifications n LEFT JOIN preferences p ON p.user_id = n.user_id
    WHERE n.status IN ('queued', 'deferred', 'claimed', 'sending') AND n.due_at <= :now
    ORDER BY n.due_at
    LIMIT :limit
    FOR UPDATE OF n SKIP LOCKED
    """
)

COUNTS = KeyedRows(
    Bulk("daily_counts", {"user_id": "text", "day": "date"}), "t.capped, t.marketing"
)

_SET_COUNTS = Bulk(
    "daily_counts", {"user_id": "text", "day": "date", "capped": "int", "marketing": "int"}
).update(["user_id", "day"], "capped = v.capped, marketing = v.marketing")

_DECIDED = Bulk(
    "notifications",
    {"id": "text", "status": "text", "reason": "text", "due_at": "timestamptz"},
).update(
    ["id"],
    "status = v.status, reason = v.reason, due_at = v.due_at, updated_at = now()",
)

_RECORDED = Bulk(
    "notifications",
    {
        "id": "text",
        "status": "text",
        "reason": "text",
        "due_at": "timestamptz",
        "attempts": "int",
        "provider": "text",
        "provider_message_id": "text",
        "sent_at": "timestamptz",
    },
).update(
    ["id"],
    "status = v.status, reason = v.reason, due_at = v.due_at, attempts = v.attempts, "
    "provider = v.provider, provider_message_id = v.provider_message_id, "
    "sent_at = v.sent_at, updated_at = now()",
    "AND notifications.status IN ('claimed', 'sending') RETURNING notifications.id",
)

ATTEMPTS = Bulk(
    "attempts",
    {
        "notification_id": "text",
        "device": "text",
        "provider": "text",
        "outcome": "text",
        "status_code": "smallint",
        "detail": "text",
        "provider_message_id": "text",
    },
)

_ATTEMPTS = ATTEMPTS.insert()

_SENDING = text(
    "UPDATE notifications SET status = 'sending', updated_at = now() "
    "WHERE id = ANY(CAST(:ids AS text[])) AND status = 'claimed'"
)


async def claim_due(session: AsyncSession, now: datetime, limit: int) -> list[Row[Any]]:
    return list(await session.execute(_DUE, {"now": now, "limit": limit}))


async def lock_counts(
    session: AsyncSession, keys: Iterable[tuple[str, date]]
) -> dict[tuple[Any, ...], Row[Any]]:
    return await COUNTS.lock(session, keys)


async def set_counts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_SET_COUNTS, _counts_params(rows))


def _counts_params(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    return {
        "b_user_id": [r["user_id"] for r in rows],
        "b_day": [r["day"] for r in rows],
        "b_capped": [r["capped"] for r in rows],
        "b_marketing": [r["marketing"] for r in rows],
    }


async def set_decided(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(
            _DECIDED,
            {
                "b_id": [r["id"] for r in rows],
                "b_status": [r["status"] for r in rows],
                "b_reason": [r["reason"] for r in rows],
                "b_due_at": [r["due_at"] for r in rows],
            },
        )


async def set_recorded(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Write the outcome of the sends; only rows still `claimed` or `sending` (not taken over
    by another replica after the lease) change. Returns the ids written."""
    if not rows:
        return set()
    result = await session.execute(
        _RECORDED,
        {
            f"b_{c}": [r[c] for r in rows]
            for c in (
                "id",
                "status",
                "reason",
                "due_at",
                "attempts",
                "provider",
                "provider_message_id",
                "sent_at",
            )
        },
    )
    return {r[0] for r in result}


async def mark_sending(session: AsyncSession, ids: Sequence[str]) -> None:
    """The next wave is about to go out: from here on its outcome is unknown until recorded."""
    if ids:
        await session.execute(_SENDING, {"ids": list(ids)})


async def insert_attempts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_ATTEMPTS, ATTEMPTS.params(rows))
