"""Every SQL statement of behavior_sensor."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.behavior_sensor.models import received_events
from shared.bulk import Bulk, KeyedRows
from shared.db import inline
from shared.events import BehaviorEnvelope

RECEIVED = Bulk(
    "received_events",
    {
        "source": "text",
        "event_id": "text",
        "user_id": "text",
        "action": "text",
        "occurred_at": "timestamptz",
        "attributes": "jsonb",
        "channel": "text",
    },
)
# the same, with the traceparent each behavior came in with (used only when one has one)
RECEIVED_TRACED = Bulk("received_events", {**RECEIVED.columns, "traceparent": "text"})
COUNTER_KEYS = Bulk(
    "farming_counters", {"user_id": "text", "action": "text", "window_start": "timestamptz"}
)
COUNTERS = Bulk(
    "farming_counters",
    {"user_id": "text", "action": "text", "window_start": "timestamptz", "count": "integer"},
)
OUTCOMES = Bulk(
    "received_events",
    {"id": "bigint", "status": "text", "status_reason": "text", "enrichment": "jsonb"},
)
# Both return the new rows, typed like a SELECT of the table. The first leaves them for the
# processor; the second is for a caller that processes them in the same transaction, and
# writes them as published, which is what nearly all of them become: only what processing
# changes from that (a diversion, an enrichment) is written again.
_AS_PUBLISHED = {"status": "'published'", "enrichment": "'{}'::jsonb", "processed_at": "now()"}
_RECORD = RECEIVED.insert("ON CONFLICT DO NOTHING RETURNING *").columns(*received_events.c)
_RECORD_PUBLISHED = RECEIVED.insert("ON CONFLICT DO NOTHING RETURNING *", _AS_PUBLISHED).columns(
    *received_events.c
)
_RECORD_TRACED = RECEIVED_TRACED.insert("ON CONFLICT DO NOTHING RETURNING *").columns(
    *received_events.c
)
_RECORD_PUBLISHED_TRACED = RECEIVED_TRACED.insert(
    "ON CONFLICT DO NOTHING RETURNING *", _AS_PUBLISHED
).columns(*received_events.c)
LOCKED_COUNTERS = KeyedRows(COUNTER_KEYS, "t.count AS n")
_SAVE_COUNTERS = COUNTERS.update(["user_id", "action", "window_start"], "count = v.count")
_MARK_PROCESSED = OUTCOMES.update(
    ["id"],
    "status = v.status, status_reason = v.status_reason, "
    "enrichment = CAST(v.enrichment AS jsonb), processed_at = now()",
)


async def record_received(
    session: AsyncSession,
    envelopes: list[BehaviorEnvelope],
    channel: str,
    *,
    as_published: bool = False,
    traceparents: Sequence[str | None] | None = None,
) -> list[Any]:
    """Insert behaviors not seen before (by source and event_id); returns the new rows.

    They are inserted `received` for the processor, or with `as_published` already
    `published` (no enrichment) for a caller that processes them before it commits.
    `traceparents`: the trace each came in with (None: none has one).
    """
    if not envelopes:
        return []
    rows = [
        {
            "source": e.source,
            "event_id": e.event_id,
            "user_id": e.user_id,
            "action": e.action,
            "occurred_at": e.occurred_at,
            "attributes": e.attributes,
            "channel": channel,
        }
        for e in envelopes
    ]
    if traceparents is not None:
        for row, traceparent in zip(rows, traceparents, strict=True):
            row["traceparent"] = traceparent
        traced = _RECORD_PUBLISHED_TRACED if as_published else _RECORD_TRACED
        return list(await session.execute(traced, RECEIVED_TRACED.params(rows)))
    statement = _RECORD_PUBLISHED if as_published else _RECORD
    return list(await session.execute(statement, RECEIVED.params(rows)))


def _pending(limit: int) -> Any:
    return (
        select(received_events)
        .where(received_events.c.status == inline("received"))
        .order_by(received_events.c.id)
        .limit(limit)
    )


async def pending(session: AsyncSession, limit: int) -> list[Any]:
    """Received behaviors waiting for the processor, oldest first, without locking them."""
    return list(await session.execute(_pending(limit)))


async def claim_pending(
    session: AsyncSession, limit: int, ids: Sequence[int] | None = None
) -> list[Any]:
    """Lock received behaviors no other replica holds (only `ids`, when given)."""
    statement = _pending(limit)
    if ids is not None:
        statement = statement.where(received_events.c.id.in_(ids))
    return list(await session.execute(statement.with_for_update(skip_locked=True)))


CounterKey = tuple[str, str, datetime]


async def lock_counters(session: AsyncSession, keys: Iterable[CounterKey]) -> dict[CounterKey, int]:
    """Create missing anti-farming counters and lock all of them, in key order."""
    rows = await LOCKED_COUNTERS.lock(session, keys)
    return {(u, a, w): row.n for (u, a, w), row in rows.items()}


async def save_counters(session: AsyncSession, counts: dict[CounterKey, int]) -> None:
    if counts:
        await session.execute(
            _SAVE_COUNTERS,
            COUNTERS.params(
                {"user_id": u, "action": a, "window_start": w, "count": c}
                for (u, a, w), c in counts.items()
            ),
        )


async def mark_processed(session: AsyncSession, outcomes: list[dict[str, Any]]) -> None:
    """outcomes: {id, status, status_reason, enrichment} per processed behavior."""
    if outcomes:
        await session.execute(_MARK_PROCESSED, OUTCOMES.params(outcomes))


async def diverted(session: AsyncSession, user_id: str | None, limit: int) -> list[Any]:
    query = select(received_events).where(received_events.c.status == inline("diverted"))
    if user_id is not None:
        query = query.where(received_events.c.user_id == user_id)
    return list(await session.execute(query.order_by(received_events.c.id.desc()).limit(limit)))


async def received(session: AsyncSession, source: str, event_id: str) -> Any | None:
    """One received behavior, locked until the transaction ends (an operator's decision)."""
    query = (
        select(received_events)
        .where(received_events.c.source == source, received_events.c.event_id == event_id)
        .with_for_update()
    )
    return (await session.execute(query)).first()


async def decide_diverted(
    session: AsyncSession, row_id: int, status: str, reason: str
) -> Any | None:
    """Move a diverted behavior to `status` (released | rejected); None when it was no
    longer diverted, so that concurrent decisions take effect once."""
    statement = (
        update(received_events)
        .where(received_events.c.id == row_id, received_events.c.status == inline("diverted"))
        .values(status=status, status_reason=reason, processed_at=func.now())
        .returning(*received_events.c)
    )
    return (await session.execute(statement)).first()


async def pending_count(session: AsyncSession) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(received_events)
        .where(received_events.c.status == inline("received"))
    )
    return int(result.scalar_one())
