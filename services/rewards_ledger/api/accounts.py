"""Account routes: an account and its history, and the movements on it (debits, one or a
batch, refunds, operations credits, extensions)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from services.rewards_ledger import service
from services.rewards_ledger.api.deps import AssetCode, Caller, UserId, settings_of
from services.rewards_ledger.schemas import (
    AccountOut,
    BalancesOut,
    CreditRequest,
    DebitBatchOut,
    DebitBatchRequest,
    DebitOut,
    DebitRequest,
    EntriesPage,
    EntryOut,
    ExtensionOut,
    ExtensionRequest,
    RefundOut,
    RefundRequest,
)
from shared.auth import principal
from shared.errors import DomainError, InvalidInput
from shared.events import DEFAULT_ASSET
from shared.hotpath import json_body, json_body_schema, json_response
from shared.openapi import AUTHENTICATED
from shared.unit_of_work import Reads, Writes

router = APIRouter(prefix="/v1", tags=["ledger"])


@router.get("/accounts/{user_id}", response_model=AccountOut)
async def get_account(
    user_id: UserId,
    request: Request,
    caller: Caller,
    session: Reads,
    asset: AssetCode = DEFAULT_ASSET,
) -> dict:
    caller.require_user_or_scope(user_id, "ledger:read", "ledger:accounts")
    settings = settings_of(request)
    return await service.account_view(
        session, user_id, datetime.now(UTC), settings.expiring_soon_days, asset
    )


@router.get("/accounts/{user_id}/balances", response_model=BalancesOut)
async def get_balances(user_id: UserId, caller: Caller, session: Reads) -> dict:
    """Every asset: available balance, pending and debt."""
    caller.require_user_or_scope(user_id, "ledger:accounts")
    return await service.balances(session, user_id)


@router.get("/accounts/{user_id}/entries", response_model=EntriesPage)
async def list_entries(
    user_id: UserId,
    caller: Caller,
    session: Reads,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    asset: AssetCode = DEFAULT_ASSET,
) -> dict:
    caller.require_user_or_scope(user_id, "ledger:accounts")
    return await service.history(session, user_id, limit, before_id, asset)


@router.post("/accounts/{user_id}/debits", response_model=DebitOut, status_code=201)
async def debit(
    user_id: UserId, body: DebitRequest, response: Response, caller: Caller, session: Writes
) -> dict:
    """Spend points (services such as exchange, or operations). Same key, same result."""
    # ledger:adjust: an operator's deduction from the console
    caller.require_scope("ledger:debit", "ledger:adjust")
    result, created = await service.debit(
        session,
        user_id,
        body.points,
        body.idempotency_key,
        body.reason,
        body.reference,
        asset=body.asset,
    )
    if not created:
        response.status_code = 200
    return result


@router.post(
    "/debits/batch",
    response_model=DebitBatchOut,
    openapi_extra={**json_body_schema(DebitBatchRequest), "security": AUTHENTICATED},
)
async def debit_batch(request: Request, session: Writes) -> Response:
    """Many debits in one unit of work (the exchange sends concurrent redemptions this way).

    Each debit is judged exactly as `POST /v1/accounts/{user_id}/debits` would judge it, and
    its result says so with that call's status: 201 debited, 200 replayed (same key, same
    result), or a 4xx refusal with `error` and `message`. A refusal changes nothing and does
    not affect the other debits. A 5xx means none of them was applied.
    """
    # The exchange's hot path: body and answer go through pydantic directly (shared/hotpath.py).
    caller = await principal(request)
    caller.require_scope("ledger:debit")
    body = await json_body(request, DebitBatchRequest)
    commands = [
        service.DebitCommand(d.user_id, d.points, d.idempotency_key, d.reason, d.reference, d.asset)
        for d in body.debits
    ]
    outcomes = await service.debit_many(session, commands)
    results = []
    for outcome in outcomes:
        if isinstance(outcome, DomainError):
            results.append(
                {
                    "status": outcome.status,
                    "error": outcome.code,
                    "message": outcome.message,
                    "details": outcome.details,
                }
            )
        else:
            result, created = outcome
            results.append({"status": 201 if created else 200, "debit": result})
    return json_response(DebitBatchOut.model_validate({"results": results}), 200)


@router.post("/accounts/{user_id}/refunds", response_model=RefundOut, status_code=201)
async def refund(
    user_id: UserId, body: RefundRequest, response: Response, caller: Caller, session: Writes
) -> dict:
    """Undo a debit, identified by the idempotency key it was made with.

    The points go back to the lots they were taken from, keeping those lots' expiry dates;
    points whose lot has expired since are refunded and expire at once. If no such debit
    exists the key is voided (status `voided`), so a late-arriving debit with it is refused
    with `debit_voided`. Repeating a refund returns the first result (200).
    """
    caller.require_scope("ledger:refund")
    result, created = await service.refund(
        session,
        user_id,
        body.debit_idempotency_key,
        body.reason,
        body.reference,
        asset=body.asset,
    )
    if not created:
        response.status_code = 200
    return result


@router.post("/accounts/{user_id}/credits", response_model=EntryOut, status_code=201)
async def credit(
    user_id: UserId,
    body: CreditRequest,
    request: Request,
    response: Response,
    caller: Caller,
    session: Writes,
) -> dict:
    """Operations adjustment: add an asset (points by default) as a new lot. Same key, same
    result. An account in debt repays it from these points first."""
    caller.require_scope("ledger:adjust")
    entry, created = await service.adjust(
        session,
        user_id,
        body.points,
        body.idempotency_key,
        body.reason,
        body.expires_at,
        body.reference,
        asset=body.asset,
        validity_days=body.validity_days,
        default_validity=settings_of(request).points_validity,
        validity=body.validity,
        tz=settings_of(request).tz,
    )
    if not created:
        response.status_code = 200
    return entry


@router.post("/accounts/{user_id}/extensions", response_model=ExtensionOut, status_code=201)
async def extend(
    user_id: UserId,
    body: ExtensionRequest,
    request: Request,
    response: Response,
    caller: Caller,
    session: Writes,
) -> dict:
    """积分延期: push back the expiry of the points expiring soon, for a fee in points.

    Every lot expiring within the configured window (`JIFEN_EXTENSION_WINDOW_DAYS`) that was
    never extended gets `days` more; the fee (`JIFEN_EXTENSION_FEE_PERCENT` of the points
    extended, at least `JIFEN_EXTENSION_FEE_MINIMUM`) is taken from the other lots,
    earliest-expiring first. 409 `nothing_to_extend` / `insufficient_points`. The user may
    extend their own points. Same key, same result (200).
    """
    caller.require_user(user_id)
    settings = settings_of(request)
    if body.days > settings.extension_max_days:
        raise InvalidInput(f"days must be at most {settings.extension_max_days}")
    result, created = await service.extend(
        session,
        user_id,
        body.days,
        body.idempotency_key,
        asset=body.asset,
        window_days=settings.extension_window_days,
        fee_percent=settings.extension_fee_percent,
        fee_minimum=settings.extension_fee_minimum,
    )
    if not created:
        response.status_code = 200
    return result
