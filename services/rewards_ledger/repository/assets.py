"""SQL of assets."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger.models import assets
from services.rewards_ledger.repository.rows import AssetRow, row_as


async def all_assets(session: AsyncSession) -> list[AssetRow]:
    rows = await session.execute(select(assets).order_by(assets.c.created_at, assets.c.code))
    return [row_as(AssetRow, r) for r in rows]


async def asset_by_code(session: AsyncSession, code: str) -> AssetRow | None:
    row = (await session.execute(select(assets).where(assets.c.code == code))).one_or_none()
    return None if row is None else row_as(AssetRow, row)


async def assets_by_codes(session: AsyncSession, codes: Iterable[str]) -> dict[str, AssetRow]:
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    rows = await session.execute(select(assets).where(assets.c.code.in_(wanted)))
    return {r.code: row_as(AssetRow, r) for r in rows}


async def insert_asset(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert an asset unless its code exists; True when inserted."""
    result = await session.execute(
        pg_insert(assets).values(**values).on_conflict_do_nothing().returning(assets.c.code)
    )
    return result.scalar_one_or_none() is not None
