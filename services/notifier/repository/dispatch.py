"""The dispatcher's statements: claiming due notifications, the day's counters, the
decisions, the waves marked `sending`, the attempts, deliveries and outcomes recorded.

A row's `due_at` is its lease while it is `claimed` or `sending`: marking a wave and recording
its outcome match it too, so a replica whose lease ran out (and another took the row over)
changes nothing (a fencing token: no column needed, the instant is exact to the microsecond)."""

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

RECORDED = Bulk(
    "notifications",
    {
        "id": "text",
        "lease": "timestamptz",
        "status": "text",
        "reason": "text",
        "due_at": "timestamptz",
        "attempts": "int",
        "provider": "text",
        "provider_message_id": "text",
        "sent_at": "timestamptz",
    },
)
# The first delivery's provider, message id and time stay (a later round only adds devices).
_RECORDED = RECORDED.update(
    ["id"],
    "status = v.status, reason = v.reason, due_at = v.due_at, attempts = v.attempts, "
    "provider = CASE WHEN notifications.sent_at IS NULL THEN v.provider "
    "ELSE notifications.provider END, "
    "provider_message_id = CASE WHEN notifications.sent_at IS NULL "
    "THEN v.provider_message_id ELSE notifications.provider_message_id END, "
    "sent_at = COALESCE(notifications.sent_at, v.sent_at), updated_at = now()",
    "AND notifications.status = 'sending' AND notifications.due_at = v.lease "
    "RETURNING notifications.id",
)

DELIVERIES = Bulk(
    "deliveries",
    {
        "notification_id": "text",
        "device": "text",
        "platform": "text",
        "provider": "text",
        "status": "text",
        "status_code": "smallint",
        "error": "text",
        "provider_message_id": "text",
        "sent_at": "timestamptz",
    },
)
# A device is tried again only while its delivery is `retry`: a delivered one never changes.
_DELIVERIES = DELIVERIES.insert(
    "ON CONFLICT (notification_id, device) DO UPDATE SET platform = EXCLUDED.platform, "
    "provider = EXCLUDED.provider, status = EXCLUDED.status, "
    "attempts = deliveries.attempts + 1, status_code = EXCLUDED.status_code, "
    "error = EXCLUDED.error, provider_message_id = EXCLUDED.provider_message_id, "
    "sent_at = EXCLUDED.sent_at, updated_at = now() WHERE deliveries.status <> 'sent'"
)

_SETTLED = text(
    "SELECT notification_id, device, status, provider FROM deliveries "
    "WHERE notification_id = ANY(CAST(:ids AS text[])) AND status <> 'retry'"
)

# notification id -> device digest -> (status, provider) of the devices settled before
Settled = dict[str, dict[str, tuple[str, str]]]

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
    "UPDATE notifications SET status = 'sending', due_at = :lease, updated_at = now() "
    "FROM unnest(CAST(:ids AS text[]), CAST(:held AS timestamptz[])) AS v(id, held) "
    "WHERE notifications.id = v.id AND notifications.status = 'claimed' "
    "AND notifications.due_at = v.held RETURNING notifications.id"
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
    """Write the outcome of the sends; only rows still under the lease the sender held
    change (not one another replica took over after it ran out). Returns the ids written."""
    if not rows:
        return set()
    result = await session.execute(_RECORDED, RECORDED.params(rows))
    return {r[0] for r in result}


async def mark_sending(
    session: AsyncSession, held: Sequence[tuple[str, datetime]], lease: datetime
) -> set[str]:
    """The next wave is about to go out: from here on its outcome is unknown until recorded.
    Each (id, lease held) still held becomes `sending` under the new lease; returns those."""
    if not held:
        return set()
    result = await session.execute(
        _SENDING,
        {"ids": [i for i, _ in held], "held": [h for _, h in held], "lease": lease},
    )
    return {r[0] for r in result}


async def settled_deliveries(session: AsyncSession, ids: Sequence[str]) -> Settled:
    """The devices that already have (or will never get) these notifications."""
    settled: Settled = {}
    if ids:
        for r in await session.execute(_SETTLED, {"ids": list(ids)}):
            settled.setdefault(r.notification_id, {})[r.device] = (r.status, r.provider)
    return settled


async def upsert_deliveries(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_DELIVERIES, DELIVERIES.params(rows))


async def insert_attempts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_ATTEMPTS, ATTEMPTS.params(rows))
