"""Exchange HTTP routes: the catalog, one-click redemption, cancel/refund, fulfilment, reads."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response

from services.exchange import catalog, service
from services.exchange.domain import CatalogQuery, Outcome
from services.exchange.parts import Parts
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
from services.exchange.settings import Settings
from shared.auth import Principal, optional_principal, principal
from shared.errors import Unauthorized
from shared.hotpath import json_body, json_body_schema, json_response
from shared.openapi import AUTHENTICATED
from shared.service import Runtime, runtime_of
from shared.unit_of_work import Reads, Snapshot, Writes

router = APIRouter(prefix="/v1", tags=["exchange"])
UserId = Annotated[str, Path(min_length=1, max_length=64)]
ObjectId = Annotated[str, Path(min_length=1, max_length=36)]
Caller = Annotated[Principal, Depends(principal)]
MaybeCaller = Annotated[Principal | None, Depends(optional_principal)]

REFUSALS: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "Refused with a stable code: insufficient_points, out_of_stock, "
        "limit_reached, item_inactive, tier_required, idempotency_key_reused"
    }
}


# How a use case's outcome is answered.
STATUS: dict[Outcome, int] = {
    "created": 201,
    "replayed": 200,
    "pending": 202,
    "cancelling": 202,
    "cancelled": 200,
}


def exchange_of(request: Request) -> service.Exchange:
    """The redemption saga; it opens a unit of work per step itself (see service/)."""
    rt: Runtime[Settings, Parts] = runtime_of(request)
    return rt.parts.exchange


# -- catalog ---------------------------------------------------------------------------


@router.post("/items", response_model=ItemOut, status_code=201)
async def create_item(body: ItemCreate, caller: Caller, session: Writes) -> ItemOut:
    caller.require_scope("exchange:items")
    return await catalog.create_item(session, body.model_dump())


@router.get("/items", response_model=ItemsPage)
async def list_items(
    caller: MaybeCaller,
    session: Reads,
    category: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    type: Annotated[Literal["physical", "coupon", "vip", "virtual"] | None, Query()] = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    affordable_for: Annotated[
        int | None,
        Query(ge=0, le=10**15, description="only items whose price fits this balance"),
    ] = None,
    in_stock: bool = False,
    include_unavailable: Annotated[
        bool,
        Query(
            description="also list inactive and out-of-window items (the admin token or a "
            "service credential with exchange:catalog)"
        ),
    ] = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ItemsPage:
    """The public catalog: available items, cheapest first."""
    if include_unavailable:
        if caller is None:
            raise Unauthorized("include_unavailable needs the admin token or a credential")
        caller.require_scope("exchange:catalog")
    query = CatalogQuery(
        category, type, tag, affordable_for, in_stock, include_unavailable, limit, offset
    )
    return await catalog.list_items(session, query)


@router.get("/items/{item_id}", response_model=ItemOut)
async def get_item(item_id: ObjectId, session: Reads) -> ItemOut:
    return await catalog.get_item(session, item_id)


@router.patch("/items/{item_id}", response_model=ItemOut)
async def update_item(
    item_id: ObjectId, body: ItemPatch, caller: Caller, session: Writes
) -> ItemOut:
    """Change an item. `stock` sets the units on the shelf (restock or withdraw);
    `active: false` takes it off sale (items are never deleted: redemptions refer to them)."""
    caller.require_scope("exchange:items")
    return await catalog.update_item(session, item_id, body.model_dump(exclude_unset=True))


@router.delete("/items/{item_id}", response_model=ItemOut)
async def retire_item(item_id: ObjectId, caller: Caller, session: Writes) -> ItemOut:
    """Take an item off sale for good (kept for the redemptions that refer to it)."""
    caller.require_admin()
    return await catalog.retire_item(session, item_id)


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
    openapi_extra={**json_body_schema(RedemptionRequest), "security": AUTHENTICATED},
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
    caller.require_user_or_scope(body.user_id, "exchange:redeem")
    result, outcome = await exchange_of(request).redeem(
        body.user_id, body.item_id, body.quantity, body.idempotency_key, body.shipping_address
    )
    return json_response(result, STATUS[outcome])


@router.get("/redemptions/{redemption_id}", response_model=RedemptionOut)
async def get_redemption(redemption_id: ObjectId, caller: Caller, session: Reads) -> RedemptionOut:
    return await service.get_redemption(session, redemption_id, caller)


@router.post("/redemptions/{redemption_id}/cancel", response_model=RedemptionOut)
async def cancel_redemption(
    redemption_id: ObjectId,
    request: Request,
    response: Response,
    caller: Caller,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> RedemptionOut:
    """Cancel and refund: points go back to the lots they came from, stock returns.

    Admins may cancel any completed redemption; a user may cancel their own physical item
    until it ships. Idempotent. 202 `cancelling` while the refund is not yet confirmed.
    The body is optional.
    """
    reason = body.reason if body is not None else ""
    result, outcome = await exchange_of(request).cancel(redemption_id, caller, reason)
    response.status_code = STATUS[outcome]
    return result


@router.post("/redemptions/{redemption_id}/ship", response_model=RedemptionOut)
async def ship(
    redemption_id: ObjectId, body: ShipRequest, caller: Caller, session: Writes
) -> RedemptionOut:
    caller.require_scope("exchange:fulfil")
    return await service.advance_fulfilment(
        session, redemption_id, "ship", body.carrier, body.tracking_number
    )


@router.post("/redemptions/{redemption_id}/deliver", response_model=RedemptionOut)
async def deliver(
    redemption_id: ObjectId,
    caller: Caller,
    session: Writes,
    body: Annotated[DeliverRequest | None, Body()] = None,
) -> RedemptionOut:
    """Mark a shipped parcel delivered. The body is optional."""
    caller.require_scope("exchange:fulfil")
    return await service.advance_fulfilment(session, redemption_id, "deliver")


@router.get("/fulfilments", response_model=RedemptionsPage)
async def fulfilment_queue(
    caller: Caller,
    session: Reads,
    status: Annotated[Literal["pending", "shipped", "delivered", "cancelled"], Query()] = "pending",
    user_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> RedemptionsPage:
    """Operations' shipping queue: physical redemptions at a fulfilment step (`pending`:
    to ship, `shipped`: to deliver), oldest first; one user's with `user_id`."""
    caller.require_scope("exchange:read")
    return await service.fulfilment_queue(session, status, user_id, limit, offset)


@router.get("/users/{user_id}/redemptions", response_model=RedemptionsPage)
async def user_redemptions(
    user_id: UserId,
    caller: Caller,
    session: Reads,
    status: Annotated[
        Literal["pending", "completed", "failed", "cancelling", "cancelled"] | None, Query()
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> RedemptionsPage:
    caller.require_user_or_scope(user_id, "exchange:read")
    return await service.user_redemptions(session, user_id, status, limit, offset)


@router.get("/users/{user_id}/quick-options", response_model=QuickOptionsOut)
async def quick_options(user_id: UserId, request: Request, caller: Caller, session: Reads) -> dict:
    """One-click options (一键兑换) for a balance of at least 100 points: up to three items
    the user may redeem (tier, limits, stock) priced 0.3-1.0x the balance, nearest 0.7x
    first, then the most redeemed of the last 7 days; the recommender's items (the
    recommender experiment's arm for the user) before the catalog's, the catalog alone when
    the recommender does not answer. An option warns about expiring points only when the
    points expiring within 7 days cover its price. With nothing to offer, `points_needed`
    to reach an option and the two task rules that earn them fastest."""
    caller.require_user(user_id)
    rt: Runtime[Settings, Parts] = runtime_of(request)
    return await rt.parts.quick.for_user(session, user_id)


@router.get("/reconciliation", response_model=ReconciliationOut)
async def reconciliation(request: Request, caller: Caller, session: Snapshot) -> dict:
    """Every unit of stock accounted for; limits, rewards and debits consistent."""
    # exchange:reconciliation: this report only (insights' business health), no user's data
    caller.require_scope("exchange:read", "exchange:reconciliation")
    return await service.reconcile(session, exchange_of(request).settings.pending_deadline_s)
