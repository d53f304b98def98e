"""Rewards of completed redemptions: coupons issued and revoked, VIP memberships."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange.models import coupons, memberships
from shared.bulk import Bulk

COUPONS = Bulk(
    "coupons",
    {
        "code": "text",
        "redemption_id": "text",
        "user_id": "text",
        "item_id": "text",
        "value_cents": "bigint",
        "expires_at": "timestamptz",
    },
)
_INSERT_COUPONS = COUPONS.insert()


async def insert_coupons(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_INSERT_COUPONS, COUPONS.params(rows))


async def revoke_coupons(session: AsyncSession, redemption_id: str) -> None:
    await session.execute(
        update(coupons).where(coupons.c.redemption_id == redemption_id).values(status="revoked")
    )


async def lock_membership(session: AsyncSession, user_id: str) -> datetime | None:
    result = await session.execute(
        select(memberships.c.vip_until).where(memberships.c.user_id == user_id).with_for_update()
    )
    return result.scalar_one_or_none()


async def set_membership(session: AsyncSession, user_id: str, vip_until: datetime) -> None:
    stmt = pg_insert(memberships).values(user_id=user_id, vip_until=vip_until)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[memberships.c.user_id],
            set_={"vip_until": stmt.excluded.vip_until, "updated_at": func.now()},
        )
    )
