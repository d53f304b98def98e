"""The copies of other services' reference data (catalog, task rules, points expiring soon),
each replaced whole."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bulk import Bulk

_CATALOG = Bulk(
    "catalog_items",
    {
        "item_id": "text",
        "name": "text",
        "category": "text",
        "tags": "jsonb",
        "points_price": "bigint",
        "stock": "bigint",
        "per_user_limit": "jsonb",
        "min_tier": "text",
        "available": "boolean",
    },
)


def _set_excluded(bulk: Bulk, keys: Sequence[str]) -> str:
    return ", ".join(f"{c} = excluded.{c}" for c in bulk.columns if c not in keys)


_CATALOG_FIELDS = [c for c in _CATALOG.columns if c != "item_id"]

# Rows that did not change are left alone: synced_at then says when the copy last changed.
_UPSERT_CATALOG = _CATALOG.insert(
    f"ON CONFLICT (item_id) DO UPDATE SET {_set_excluded(_CATALOG, ['item_id'])}, "
    "synced_at = now() WHERE "
    f"({', '.join(f'catalog_items.{c}' for c in _CATALOG_FIELDS)}) IS DISTINCT FROM "
    f"({', '.join(f'excluded.{c}' for c in _CATALOG_FIELDS)})"
)

_RULES = Bulk(
    "task_rules",
    {
        "task_id": "text",
        "action": "text",
        "period": "text",
        "active": "boolean",
        "starts_at": "timestamptz",
        "ends_at": "timestamptz",
    },
)

_UPSERT_RULES = _RULES.insert(
    f"ON CONFLICT (task_id) DO UPDATE SET {_set_excluded(_RULES, ['task_id'])}"
)

_EXPIRING = Bulk(
    "expiring_points", {"user_id": "text", "expires_at": "timestamptz", "points": "bigint"}
)


async def replace_catalog(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Make the copy of the catalog exactly `rows` (items gone from the exchange go here too)."""
    await session.execute(
        text("DELETE FROM catalog_items WHERE NOT (item_id = ANY(CAST(:ids AS text[])))"),
        {"ids": [r["item_id"] for r in rows]},
    )
    if rows:
        await session.execute(_UPSERT_CATALOG, _CATALOG.params(rows))


async def replace_rules(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(
        text("DELETE FROM task_rules WHERE NOT (task_id = ANY(CAST(:ids AS text[])))"),
        {"ids": [r["task_id"] for r in rows]},
    )
    if rows:
        await session.execute(_UPSERT_RULES, _RULES.params(rows))


async def replace_expiring(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(text("DELETE FROM expiring_points"))
    if rows:
        await session.execute(_EXPIRING.insert(), _EXPIRING.params(rows))
