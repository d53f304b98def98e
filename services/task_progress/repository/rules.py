"""SQL of task rules (tasks) and their versions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress.models import task_versions, tasks


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


async def insert_version(
    session: AsyncSession, task_id: str, version: int, rule: dict[str, Any]
) -> None:
    await session.execute(
        pg_insert(task_versions)
        .values(task_id=task_id, version=version, rule=rule)
        .on_conflict_do_nothing()
    )


async def versions_of(session: AsyncSession, task_id: str) -> list[Any]:
    rows = await session.execute(
        select(task_versions)
        .where(task_versions.c.task_id == task_id)
        .order_by(task_versions.c.version)
    )
    return list(rows)
