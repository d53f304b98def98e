"""Every SQL statement of task_progress."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress.models import grants, progress, tasks

ProgressKey = tuple[str, str, str]  # (user_id, task_id, period_key)


async def active_tasks(session: AsyncSession) -> list[Any]:
    return list(await session.execute(select(tasks).where(tasks.c.active)))


async def list_tasks(
    session: AsyncSession, active: bool | None, limit: int, offset: int
) -> tuple[list[Any], int]:
    query = select(tasks)
    count = select(func.count()).select_from(tasks)
    if active is not None:
        query, count = query.where(tasks.c.active == active), count.where(tasks.c.active == active)
    rows = await session.execute(
        query.order_by(tasks.c.created_at, tasks.c.id).limit(limit).offset(offset)
    )
    return list(rows), int((await session.execute(count)).scalar_one())


async def get_task(session: AsyncSession, task_id: str, *, for_update: bool = False) -> Any:
    query = select(tasks).where(tasks.c.id == task_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).one_or_none()


async def insert_task(
    session: AsyncSession, values: dict[str, Any], *, if_absent: bool = False
) -> None:
    stmt = pg_insert(tasks).values(**values)
    if if_absent:
        stmt = stmt.on_conflict_do_nothing()
    await session.execute(stmt)


async def update_task(session: AsyncSession, task_id: str, values: dict[str, Any]) -> None:
    await session.execute(
        update(tasks).where(tasks.c.id == task_id).values(**values, updated_at=func.now())
    )


async def lock_progress(
    session: AsyncSession, keys: Sequence[ProgressKey]
) -> dict[ProgressKey, Any]:
    """Create missing progress rows and lock all of them (in key order, to avoid deadlocks)."""
    ordered = sorted(set(keys))
    if not ordered:
        return {}
    await session.execute(
        pg_insert(progress)
        .values([{"user_id": u, "task_id": t, "period_key": p} for u, t, p in ordered])
        .on_conflict_do_nothing()
    )
    rows = await session.execute(
        select(progress)
        .where(tuple_(progress.c.user_id, progress.c.task_id, progress.c.period_key).in_(ordered))
        .order_by(progress.c.user_id, progress.c.task_id, progress.c.period_key)
        .with_for_update()
    )
    return {(r.user_id, r.task_id, r.period_key): r for r in rows}


async def save_progress(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    await session.execute(
        update(progress)
        .where(
            progress.c.user_id == bindparam("k_user"),
            progress.c.task_id == bindparam("k_task"),
            progress.c.period_key == bindparam("k_period"),
        )
        .values(
            count=bindparam("v_count"),
            completions=bindparam("v_completions"),
            points=bindparam("v_points"),
            status=bindparam("v_status"),
            last_event_at=bindparam("v_last"),
            updated_at=func.now(),
        ),
        rows,
    )


async def insert_grants(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(grants), rows)


async def progress_for_user(
    session: AsyncSession, user_id: str, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Any]:
    if not keys:
        return {}
    rows = await session.execute(
        select(progress).where(
            progress.c.user_id == user_id,
            tuple_(progress.c.task_id, progress.c.period_key).in_(list(keys)),
        )
    )
    return {(r.task_id, r.period_key): r for r in rows}


async def grants_for_user(session: AsyncSession, user_id: str, limit: int) -> list[Any]:
    rows = await session.execute(
        select(grants)
        .where(grants.c.user_id == user_id)
        .order_by(grants.c.created_at.desc())
        .limit(limit)
    )
    return list(rows)
