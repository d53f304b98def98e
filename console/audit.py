"""The audit log: every write an operator asked for, with what it changed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from console.models import audit_log
from shared.db import Database


async def record(
    db: Database,
    *,
    operator: str,
    role: str,
    action: str,
    target: str,
    status: int,
    outcome: str,
    request: Any = None,
    before: Any = None,
    after: Any = None,
    message: str | None = None,
) -> None:
    async with db.transaction() as session:
        await session.execute(
            insert(audit_log).values(
                operator=operator,
                role=role,
                action=action,
                target=target[:300],
                status=status,
                outcome=outcome[:64],
                request=request,
                before=before,
                after=after,
                message=message,
            )
        )


async def recent(
    db: Database, limit: int = 100, target: str | None = None, operator: str | None = None
) -> list[Any]:
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if target:
        query = query.where(audit_log.c.target == target)
    if operator:
        query = query.where(audit_log.c.operator == operator)
    async with db.read_only() as session:
        return list(await session.execute(query))
