"""Catalog use cases: list, read, create, change and retire items."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange import repository as repo
from services.exchange.domain import CatalogQuery
from services.exchange.schemas import ItemOut, ItemsPage
from shared.errors import DomainError, NotFound


def _item_columns(fields: dict[str, Any]) -> dict[str, Any]:
    """Map the API's item fields onto columns (per_user_limit is two columns)."""
    values = dict(fields)
    if "per_user_limit" in values:
        limit = values.pop("per_user_limit")
        values["limit_period"] = limit["period"] if limit else None
        values["limit_quantity"] = limit["quantity"] if limit else None
    return values


async def list_items(session: AsyncSession, query: CatalogQuery) -> ItemsPage:
    """A page of the catalog (available items only unless `include_unavailable`),
    cheapest first."""
    rows, total = await repo.list_items(session, query, datetime.now(UTC))
    limit, offset = query.limit, query.offset
    return ItemsPage(
        items=[ItemOut.model_validate(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
        next_offset=offset + limit if offset + limit < total else None,
    )


async def get_item(session: AsyncSession, item_id: str) -> ItemOut:
    row = await repo.get_item(session, item_id)
    if row is None:
        raise NotFound("item", item_id)
    return ItemOut.model_validate(row)


async def create_item(session: AsyncSession, fields: dict[str, Any]) -> ItemOut:
    values = _item_columns(fields)
    values["id"] = str(uuid.uuid4())
    values["stock_total"] = values["stock"]
    return ItemOut.model_validate(await repo.insert_item(session, values))


async def update_item(session: AsyncSession, item_id: str, fields: dict[str, Any]) -> ItemOut:
    current = await repo.get_item(session, item_id, lock=True)
    if current is None:
        raise NotFound("item", item_id)
    values = _item_columns(fields)
    merged = {**asdict(current), **values}
    if merged["type"] == "vip" and not merged["vip_days"]:
        raise DomainError("validation_error", "a vip item needs vip_days", status=422)
    if merged["starts_at"] and merged["ends_at"] and merged["ends_at"] <= merged["starts_at"]:
        raise DomainError("validation_error", "ends_at must be after starts_at", status=422)
    if "stock" in values:
        # Setting the shelf count supplies (or withdraws) units; the total follows the change.
        values["stock_total"] = current.stock_total + (values["stock"] - current.stock)
    return ItemOut.model_validate(await repo.update_item(session, item_id, values))


async def retire_item(session: AsyncSession, item_id: str) -> ItemOut:
    """Take an item off sale for good (kept for the redemptions that refer to it)."""
    return await update_item(session, item_id, {"active": False})
