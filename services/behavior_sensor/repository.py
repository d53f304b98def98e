"""Every SQL statement of behavior_sensor."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.behavior_sensor.models import farming_counters, received_events
from shared.events import BehaviorEnvelope


async def record_received(
    session: AsyncSession, envelopes: list[BehaviorEnvelope], channel: str
) -> int:
    """Insert behaviors not seen before (by source and event_id); returns how many were new."""
    if not envelopes:
        return 0
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
    result = await session.execute(
        pg_insert(received_events)
        .values(rows)
        .on_conflict_do_nothing()
        .returning(received_events.c.id)
    )
    return len(result.all())


async def claim_pending(session: AsyncSession, limit: int) -> list[Any]:
    rows = await session.execute(
        select(received_events)
        .where(received_events.c.status == "received")
        .order_by(received_events.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows)


async def lock_counters(
    session: AsyncSession, keys: Iterable[tuple[str, str, datetime]]
) -> dict[tuple[str, str, datetime], int]:
    ordered = sorted(set(keys))
    if not ordered:
        return {}
    await session.execute(
        pg_insert(farming_counters)
        .values([{"user_id": u, "action": a, "window_start": w} for u, a, w in ordered])
        .on_conflict_do_nothing()
    )
    rows = await session.execute(
        select(farming_counters)
        .where(
            tuple_(
                farming_counters.c.user_id,
                farming_counters.c.action,
                farming_counters.c.window_start,
            ).in_(ordered)
        )
        .order_by(
            farming_counters.c.user_id, farming_counters.c.action, farming_counters.c.window_start
        )
        .with_for_update()
    )
    return {(r.user_id, r.action, r.window_start): r._mapping["count"] for r in rows}


async def save_counters(
    session: AsyncSession, counts: dict[tuple[str, str, datetime], int]
) -> None:
    if counts:
        await session.execute(
            update(farming_counters)
            .where(
                farming_counters.c.user_id == bindparam("k_user"),
                farming_counters.c.action == bindparam("k_action"),
                farming_counters.c.window_start == bindparam("k_window"),
            )
            .values(count=bindparam("v_count")),
            [
                {"k_user": u, "k_action": a, "k_window": w, "v_count": c}
                for (u, a, w), c in counts.items()
            ],
        )


async def mark_processed(session: AsyncSession, outcomes: list[dict[str, Any]]) -> None:
    if outcomes:
        await session.execute(
            update(received_events)
            .where(received_events.c.id == bindparam("k_id"))
            .values(
                status=bindparam("v_status"),
                status_reason=bindparam("v_reason"),
                enrichment=bindparam("v_enrichment", type_=JSONB),
                processed_at=func.now(),
            ),
            outcomes,
        )


async def diverted(session: AsyncSession, user_id: str | None, limit: int) -> list[Any]:
    query = select(received_events).where(received_events.c.status == "diverted")
    if user_id is not None:
        query = query.where(received_events.c.user_id == user_id)
    return list(await session.execute(query.order_by(received_events.c.id.desc()).limit(limit)))


async def pending_count(session: AsyncSession) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(received_events)
        .where(received_events.c.status == "received")
    )
    return int(result.scalar_one())
