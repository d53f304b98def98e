"""Exchange HTTP routes: the catalog, one-click redemption, cancel/refund, fulfilment, reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from services.exchange import repository as repo
from services.exchange import service
from services.exchange.schemas import (
    CancelRequest,
    DeliverRequest,
    ItemCreate,
    ItemOut,
    ItemPatch,
    ItemsPage,
    QuickOptionsOut,
    ReconciliationOut,
    RedemptionOut,
    RedemptionRequest,
    RedemptionsPage,
    ShipRequest,
)
from shared.auth import Principal, optional_principal, principal
from shared.errors import NotFound, Unauthorized
from shared.hotpath import json_body, json_body_schema, json_response
from shared.service import runtime_of

router = APIRouter(prefix="/v1", tags=["exchange"])
UserId = Annotated[str, Path(min_length=1, max_length=64)]
ObjectId = Annotated[str, Path(min_length=1, max_length=36)]
Caller = Annotated[Principal, Depends(principal)]
MaybeCaller = Annotated[Principal | None, Depends(optional_principal)]

REFUSALS: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "Refused with a stable code: insufficient_points, out_of_stock, "
        "limit_reached, item_inactive, idempotency_key_reused"
    }
}


def exchange_of(request: Request) -> service.Exchange:
    ex: service.Exchange = runtime_of(request).extras["exchange"]
    return ex


# -- catalog ---------------------------------------------------------------------------


@router.post("/items", response_model=ItemOut, status_code=201)
async def create_item(body: ItemCreate, request: Request, caller: Caller) -> dict:
    caller.require_admin()
    async with runtime_of(request).db.transaction() as session:
        return await service.create_item(session, body.model_dump())


@router.get("/items", response_model=ItemsPage)
async def list_items(
    request: Request,
    caller: MaybeCaller,
    category: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    type: Annotated[Literal["physical", "coupon", "vip", "virtual"] | None, Query()] = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    affordable_for: Annotated[
        int | None, Query(ge=0, description="only items whose price fits this balance")
    ] = None,
    in_stock: bool = False,
    include_unavailable: Annotated[
        bool, Query(description="admin: also list inactive and out-of-window items")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict:
    """The public catalog: available items, cheapest first."""
    if include_unavailable:
        if caller is None:
            raise Unauthorized("include_unavailable needs the admin token")
        caller.require_admin()
    async with runtime_of(request).db.transaction() as session:
        rows, total = await repo.list_items(
            session,
            now=datetime.now(UTC),
            category=category,
            item_type=type,
            tag=tag,
            affordable_for=affordable_for,
            in_stock=in_stock,
            include_unavailable=include_unavailable,
            limit=limit,
            offset=offset,
        )
    return {
        "items": [service.item_view(r._mapping) for r in rows],
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if offset + limit < total else None,
    }


@router.get("/items/{item_id}", response_model=ItemOut)
async def get_item(item_id: ObjectId, request: Request) -> dict:
    async with runtime_of(request).db.transaction() as session:
        row = await repo.get_item(session, item_id)
    if row is None:
        raise NotFound("item", item_id)
    return service.item_view(row._mapping)


@router.patch("/items/{item_id}", response_model=ItemOut)
async def update_item(item_id: ObjectId, body: ItemPatch, request: Request, caller: Caller) -> dict:
    """Change an item. `stock` sets the units on the shelf (restock or withdraw);
    `active: false` takes it off sale (items are never deleted: redemptions refer to them)."""
    caller.require_admin()
    async with runtime_of(request).db.transaction() as session:
        return await service.update_item(session, item_id, body.model_dump(exclude_unset=True))


@router.delete("/items/{item_id}", response_model=ItemOut)
async def retire_item(item_id: ObjectId, request: Request, caller: Caller) -> dict:
    """Take an item off sale for good (kept for the redemptions that refer to it)."""
    caller.require_admin()
    async with runtime_of(request).db.transaction() as session:
        return await service.update_item(session, item_id, {"active": False})


# -- redemptions ------------------------------------------------------------------------


@router.post(
    "/redemptions",
    response_model=RedemptionOut,
    status_code=201,
    responses={
        200: {"description": "Replay of a completed redemption (same idempotency_key)"},
        202: {"description": "Accepted; the points service has not confirmed yet"},
        **REFUSALS,
    },
    openapi_extra=json_body_schema(RedemptionRequest),
)
async def redeem(request: Request) -> Response:
    """One-click redemption: reserve stock, debit the points, issue the reward.

    201 with the reward when done; 202 `pending` when the points service is slow or down
    (the redemption completes or is compensated on its own; poll GET /v1/redemptions/{id});
    409 with a stable code when refused. The same idempotency_key always returns the same
    redemption.
    """
    # The hottest endpoint: body and answer go through pydantic directly (shared/hotpath.py).
    caller = await principal(request)
    body = await json_body(request, RedemptionRequest)
    caller.require_user(body.user_id)
    result, status = await exchange_of(request).redeem(
        body.user_id, body.item_id, body.quantity, body.idempotency_key, body.shipping_address
    )
    return json_response(RedemptionOut.model_validate(result), status)


@router.get("/redemptions/{redemption_id}", response_model=RedemptionOut)
async def get_redemption(redemption_id: ObjectId, request: Request, caller: Caller) -> dict:
    async with runtime_of(request).db.transaction() as session:
        row = await repo.get_redemption(session, redemption_id)
    if row is None:
        raise NotFound("redemption", redemption_id)
    caller.require_user(row.user_id)
    return service.redemption_view(row)


@router.post("/redemptions/{redemption_id}/cancel", response_model=RedemptionOut)
async def cancel_redemption(
    redemption_id: ObjectId,
    body: CancelRequest,
    request: Request,
    response: Response,
    caller: Caller,
) -> dict:
    """Cancel and refund: points go back to the lots they came from, stock returns.

    Admins may cancel any completed redemption; a user may cancel their own physical item
    until it ships. Idempotent. 202 `cancelling` while the refund is not yet confirmed.
    """
    result, status = await exchange_of(request).cancel(redemption_id, caller, body.reason)
    response.status_code = status
    return result


@router.post("/redemptions/{redemption_id}/ship", response_model=RedemptionOut)
async def ship(
    redemption_id: ObjectId, body: ShipRequest, request: Request, caller: Caller
) -> dict:
    caller.require_admin()
    return await exchange_of(request).advance_fulfilment(
        redemption_id, "ship", body.carrier, body.tracking_number
    )


@router.post("/redemptions/{redemption_id}/deliver", response_model=RedemptionOut)
async def deliver(
    redemption_id: ObjectId, body: DeliverRequest, request: Request, caller: Caller
) -> dict:
    caller.require_admin()
    return await exchange_of(request).advance_fulfilment(redemption_id, "deliver")


@router.get("/users/{user_id}/redemptions", response_model=RedemptionsPage)
async def user_redemptions(
    user_id: UserId,
    request: Request,
    caller: Caller,
    status: Annotated[
        Literal["pending", "completed", "failed", "cancelling", "cancelled"] | None, Query()
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict:
    caller.require_user(user_id)
    async with runtime_of(request).db.transaction() as session:
        rows = await repo.user_redemptions(session, user_id, status, limit + 1, offset)
    return {
        "items": [service.redemption_view(r) for r in rows[:limit]],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if len(rows) > limit else None,
    }


@router.get("/users/{user_id}/quick-options", response_model=QuickOptionsOut)
async def quick_options(user_id: UserId, request: Request, caller: Caller) -> dict:
    """Up to three in-stock items the user can afford, closest to their balance first."""
    caller.require_user(user_id)
    return await exchange_of(request).quick_options(user_id)


@router.get("/reconciliation", response_model=ReconciliationOut)
async def reconciliation(request: Request, caller: Caller) -> dict:
    """Every unit of stock accounted for; limits, rewards and debits consistent."""
    caller.require_admin()
    return await exchange_of(request).reconcile()
