"""SQL of check-in days and make-up requests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress.models import checkins, makeups, tasks
from shared.bulk import Bulk

CHECKIN_FROM = Bulk("checkins", {"user_id": "text", "task_id": "text", "day": "date"})
# Per (user, task, day): the stored days from the day before on, and the last day before it.
_CHECKINS_FROM = text(
    "SELECT c.user_id, c.task_id, c.day, c.kind, c.streak, c.paid "
    f"FROM {CHECKIN_FROM.source()} "
    "JOIN checkins c ON c.user_id = v.user_id AND c.task_id = v.task_id "
    "AND c.day >= v.day - 1"
)
_LAST_BEFORE = text(
    "SELECT v.user_id, v.task_id, v.day AS asked, last.day, last.streak "
    f"FROM {CHECKIN_FROM.source()} "
    "JOIN LATERAL (SELECT day, streak FROM checkins c WHERE c.user_id = v.user_id "
    "AND c.task_id = v.task_id AND c.day < v.day ORDER BY day DESC LIMIT 1) last ON true"
)
CHECKIN_ROWS = Bulk(
    "checkins",
    {
        "user_id": "text",
        "task_id": "text",
        "day": "date",
        "kind": "text",
        "streak": "integer",
        "paid": "bigint",
    },
)
_SAVE_CHECKINS = CHECKIN_ROWS.insert(
    "ON CONFLICT (user_id, task_id, day) DO UPDATE "
    "SET streak = excluded.streak, paid = excluded.paid"
)


async def checkin_days(
    session: AsyncSession, asked: Sequence[tuple[str, str, date]]
) -> tuple[list[Any], list[Any]]:
    """For (user, task, day) asked: every stored day from the day before on, and the latest
    stored day before it (the caller holds the (user, task) lock)."""
    if not asked:
        return [], []
    params = CHECKIN_FROM.params({"user_id": u, "task_id": t, "day": d} for u, t, d in asked)
    days = list(await session.execute(_CHECKINS_FROM, params))
    last = list(await session.execute(_LAST_BEFORE, params))
    return days, last


async def save_checkins(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_SAVE_CHECKINS, CHECKIN_ROWS.params(rows))


async def checkins_between(
    session: AsyncSession, user_id: str, task_id: str, first: date, last: date
) -> list[Any]:
    rows = await session.execute(
        select(checkins.c.day, checkins.c.kind, checkins.c.streak, checkins.c.paid)
        .where(
            checkins.c.user_id == user_id,
            checkins.c.task_id == task_id,
            checkins.c.day >= first,
            checkins.c.day <= last,
        )
        .order_by(checkins.c.day)
    )
    return list(rows)


async def longest_streak(session: AsyncSession, user_id: str, task_id: str) -> int:
    result = await session.execute(
        select(func.coalesce(func.max(checkins.c.streak), 0)).where(
            checkins.c.user_id == user_id, checkins.c.task_id == task_id
        )
    )
    return int(result.scalar_one())


async def first_checkin_task(session: AsyncSession) -> Any:
    result = await session.execute(
        select(tasks)
        .where(tasks.c.kind == "checkin", tasks.c.active)
        .order_by(tasks.c.created_at, tasks.c.id)
        .limit(1)
    )
    return result.one_or_none()


# --- make-ups ----------------------------------------------------------------------------------


async def makeup_of(session: AsyncSession, user_id: str, task_id: str, day: date) -> Any:
    result = await session.execute(
        select(makeups).where(
            makeups.c.user_id == user_id, makeups.c.task_id == task_id, makeups.c.day == day
        )
    )
    return result.one_or_none()


async def makeups_in_month(
    session: AsyncSession, user_id: str, task_id: str, first: date, last: date
) -> int:
    result = await session.execute(
        select(func.count()).where(
            makeups.c.user_id == user_id,
            makeups.c.task_id == task_id,
            makeups.c.day >= first,
            makeups.c.day <= last,
        )
    )
    return int(result.scalar_one())


async def insert_makeup(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(pg_insert(makeups).values(**values).on_conflict_do_nothing())


async def finish_makeup(
    session: AsyncSession, user_id: str, task_id: str, day: date, result: dict[str, Any]
) -> None:
    await session.execute(
        update(makeups)
        .where(makeups.c.user_id == user_id, makeups.c.task_id == task_id, makeups.c.day == day)
        .values(status="done", result=result)
    )


async def drop_makeup(session: AsyncSession, user_id: str, task_id: str, day: date) -> None:
    await session.execute(
        delete(makeups).where(
            makeups.c.user_id == user_id,
            makeups.c.task_id == task_id,
            makeups.c.day == day,
            makeups.c.status == "pending",
        )
    )
