"""Stored templates (the built-ins live in `services.notifier.templates`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.models import templates


async def stored_templates(session: AsyncSession) -> dict[str, Row[Any]]:
    rows = await session.execute(templates.select())
    return {r.code: r for r in rows}


async def put_template(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(
        text(
            "INSERT INTO templates (code, category, texts, variables) "
            "VALUES (:code, :category, CAST(:texts AS jsonb), CAST(:variables AS jsonb)) "
            "ON CONFLICT (code) DO UPDATE SET category = EXCLUDED.category, "
            "texts = EXCLUDED.texts, variables = EXCLUDED.variables, updated_at = now()"
        ),
        values,
    )
