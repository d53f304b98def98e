"""Hold routes (积分抵现 at checkout): place a hold when the user confirms an order, capture it
when the payment succeeds, void it when the order is cancelled; read one, or a user's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from services.rewards_ledger import service
from services.rewards_ledger.api.deps import AssetCode, Caller, UserId, settings_of
from services.rewards_ledger.schemas import (
    CaptureRequest,
    HoldList,
    HoldOut,
    HoldRequest,
    VoidRequest,
)
from shared.errors import InvalidInput
from shared.events import DEFAULT_ASSET
from shared.unit_of_work import Reads, Writes

router = APIRouter(prefix="/v1", tags=["ledger"])
HoldId = Annotated[str, Path(min_length=1, max_length=36)]
# who may place, capture and void holds: an order system (or the order adapter) with this
# scope, or the admin; ledger:accounts (the console) may read them too
HOLD_SCOPE = "ledger:hold"


@router.post("/holds", response_model=HoldOut, status_code=201)
async def place_hold(
    body: HoldRequest, request: Request, response: Response, caller: Caller, session: Writes
) -> dict:
    """Reserve points for an order: taken from the earliest-expiring lots, no longer available
    (the account shows them as `held`) until the hold is captured or voided, or until
    `expires_in_s` has passed, when it is voided. 409 `insufficient_points` when less is
    available. Same key, same hold (200); the same key for another user or number of points
    is refused (409 `idempotency_key_reused`)."""
    caller.require_scope(HOLD_SCOPE)
    settings = settings_of(request)
    if body.expires_in_s > settings.hold_max_expires_in_s:
        raise InvalidInput(f"expires_in_s must be at most {settings.hold_max_expires_in_s}")
    command = service.HoldCommand(
        body.user_id,
        body.points,
        body.idempotency_key,
        datetime.now(UTC) + timedelta(seconds=body.expires_in_s),
        body.reference,
        body.asset,
    )
    result, created = await service.place_hold(session, command)
    if not created:
        response.status_code = 200
    return result


@router.get("/holds/{hold_id}", response_model=HoldOut)
async def get_hold(hold_id: HoldId, caller: Caller, session: Reads) -> dict:
    caller.require_scope(HOLD_SCOPE, "ledger:accounts")
    return await service.hold_view(session, hold_id)


@router.post("/holds/{hold_id}/capture", response_model=HoldOut)
async def capture_hold(
    hold_id: HoldId, body: CaptureRequest, caller: Caller, session: Writes
) -> dict:
    """Take the held points (`points`, or all of them) as a debit journaled under
    `idempotency_key` (so a refund with that key gives them back), releasing the rest.
    Same key, same result; 409 `invalid_transition` once voided (or captured with another
    key), `hold_expired` past the deadline, `capture_exceeds_hold`."""
    caller.require_scope(HOLD_SCOPE)
    result, _ = await service.capture_hold(session, hold_id, body.points, body.idempotency_key)
    return result


@router.post("/holds/{hold_id}/void", response_model=HoldOut)
async def void_hold(hold_id: HoldId, body: VoidRequest, caller: Caller, session: Writes) -> dict:
    """Release the whole hold (the order was cancelled). Voiding a voided hold answers it as
    it is; 409 `invalid_transition` once captured."""
    caller.require_scope(HOLD_SCOPE)
    result, _ = await service.void_hold(session, hold_id, body.idempotency_key)
    return result


@router.get("/accounts/{user_id}/holds", response_model=HoldList)
async def list_holds(
    user_id: UserId,
    caller: Caller,
    session: Reads,
    status: Literal["open", "captured", "voided"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    asset: AssetCode = DEFAULT_ASSET,
) -> dict:
    """A user's holds, newest first."""
    caller.require_user_or_scope(user_id, "ledger:accounts", HOLD_SCOPE)
    return await service.holds_of_user(session, user_id, asset, status, limit)
