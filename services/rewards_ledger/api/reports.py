"""Report routes: finance's liability and the reconciliation, and the pages the notifier and
insights read (points expiring in a window, holders of an asset)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from services.rewards_ledger import service
from services.rewards_ledger.api.deps import AssetCode, Caller, settings_of
from services.rewards_ledger.schemas import (
    ExpiringPage,
    HoldersPage,
    LiabilityOut,
    ReconciliationOut,
)
from shared.errors import InvalidInput
from shared.events import ASSET_PATTERN, DEFAULT_ASSET
from shared.instants import Instant
from shared.unit_of_work import Reads, Snapshot

router = APIRouter(prefix="/v1", tags=["ledger"])


@router.get("/reports/liability", response_model=LiabilityOut)
async def liability(
    request: Request, caller: Caller, session: Snapshot, asset: AssetCode = DEFAULT_ASSET
) -> dict:
    """Finance's view of one asset, from one snapshot: outstanding, pending, debt, what
    expires in each of the next 12 months, and the last 30 days' movements."""
    caller.require_scope("ledger:overview")
    return await service.liability_report(
        session, asset, datetime.now(UTC), settings_of(request).tz
    )


@router.get("/reconciliation", response_model=ReconciliationOut)
async def reconciliation(caller: Caller, session: Snapshot) -> dict:
    """Prove the books balance: every invariant in the contract, checked in one snapshot."""
    caller.require_scope("ledger:overview")
    return await service.reconcile(session)


MAX_WINDOW_DAYS = 31


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
    return await service.expiring_page(session, asset, start, end, after, limit)


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
    return await service.holders_page(session, asset, min_balance, after, limit)
