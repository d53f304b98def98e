"""Reports the notifier reads: what expires soon (its reminders at T-7, T-3, T-1) and who
holds more than a balance (a campaign's audience).

`GET /v1/reports/expiring-lots` lists the points still in active lots that expire in a time
window, summed per (user, expiry instant), in (user_id, expires_at) order, a page at a time.
The page walks `ix_lots_spendable` (user_id, asset, expires_at) with a keyset, so a scan of
the whole window reads each active lot once, however many pages it takes, and no page holds
a lock: the reader sees one committed snapshot per page (a lot spent between two pages is
simply not counted any more, which is what a reminder wants).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Principal, principal
from shared.errors import InvalidInput
from shared.events import ASSET_PATTERN, DEFAULT_ASSET
from shared.instants import Instant
from shared.unit_of_work import Reads

router = APIRouter(prefix="/v1", tags=["ledger"])
Caller = Annotated[Principal, Depends(principal)]

MAX_WINDOW_DAYS = 31

_PAGE = text(
    """
    SELECT user_id, expires_at, sum(remaining) AS points
    FROM lots
    WHERE status = 'active' AND remaining > 0
      AND asset = :asset
      AND expires_at >= :start AND expires_at < :end
      AND (user_id, asset, expires_at) > (:after_user, :asset, :after_expires_at)
    GROUP BY user_id, asset, expires_at
    ORDER BY user_id, asset, expires_at
    LIMIT :limit
    """
)


class ExpiringLot(BaseModel):
    user_id: str
    expires_at: datetime
    points: int = Field(description="points still in the user's active lots expiring then")


class ExpiringCursor(BaseModel):
    user_id: str
    expires_at: datetime


class ExpiringPage(BaseModel):
    items: list[ExpiringLot]
    next: ExpiringCursor | None = Field(
        None, description="pass as after_user / after_expires_at for the next page"
    )


async def expiring_page(
    session: AsyncSession,
    asset: str,
    start: datetime,
    end: datetime,
    after: tuple[str, datetime] | None,
    limit: int,
) -> dict[str, Any]:
    after_user, after_at = after if after is not None else ("", start.replace(year=1))
    rows = (
        await session.execute(
            _PAGE,
            {
                "asset": asset,
                "start": start,
                "end": end,
                "after_user": after_user,
                "after_expires_at": after_at,
                "limit": limit,
            },
        )
    ).all()
    items = [{"user_id": r[0], "expires_at": r[1], "points": int(r[2])} for r in rows]
    last = items[-1] if len(items) == limit else None
    return {
        "items": items,
        "next": {"user_id": last["user_id"], "expires_at": last["expires_at"]} if last else None,
    }


@router.get("/reports/expiring-lots", response_model=ExpiringPage)
async def expiring_lots(
    caller: Caller,
    session: Reads,
    start: Annotated[Instant, Query(alias="from", description="window start (inclusive)")],
    end: Annotated[Instant, Query(alias="to", description="window end (exclusive)")],
    asset: Annotated[str, Query(pattern=ASSET_PATTERN)] = DEFAULT_ASSET,
    after_user: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    after_expires_at: Instant | None = None,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 10_000,
) -> dict[str, Any]:
    """Points in active lots expiring in [from, to), summed per user and expiry instant, in
    (user_id, expires_at) order; `next` continues the scan. At most 31 days at a time."""
    # ledger:expiring: insights's copy of the points expiring soon, without the holders list
    caller.require_scope("ledger:reports", "ledger:expiring")
    if end <= start:
        raise InvalidInput("`to` must be after `from`")
    if (end - start).days > MAX_WINDOW_DAYS:
        raise InvalidInput(f"the window is at most {MAX_WINDOW_DAYS} days")
    if (after_user is None) != (after_expires_at is None):
        raise InvalidInput("after_user and after_expires_at go together")
    after = (after_user, after_expires_at) if after_user and after_expires_at else None
    return await expiring_page(session, asset, start, end, after, limit)


_HOLDERS = text(
    """
    SELECT user_id, balance FROM accounts
    WHERE asset = :asset AND balance > :min_balance AND user_id > :after
    ORDER BY user_id
    LIMIT :limit
    """
)


class Holder(BaseModel):
    user_id: str
    balance: int


class HoldersPage(BaseModel):
    items: list[Holder]
    next: str | None = Field(None, description="pass as `after` for the next page")


@router.get("/reports/holders", response_model=HoldersPage)
async def holders(
    caller: Caller,
    session: Reads,
    min_balance: Annotated[int, Query(ge=0, le=10**15)] = 0,
    asset: Annotated[str, Query(pattern=ASSET_PATTERN)] = DEFAULT_ASSET,
    after: Annotated[str, Query(max_length=64)] = "",
    limit: Annotated[int, Query(ge=1, le=50_000)] = 10_000,
) -> dict[str, Any]:
    """Users whose available balance of `asset` is over `min_balance`, in user_id order (the
    accounts' primary key order), a page at a time."""
    caller.require_scope("ledger:reports")
    rows = (
        await session.execute(
            _HOLDERS, {"asset": asset, "min_balance": min_balance, "after": after, "limit": limit}
        )
    ).all()
    items = [{"user_id": r[0], "balance": int(r[1])} for r in rows]
    return {"items": items, "next": items[-1]["user_id"] if len(items) == limit else None}
