"""Task rule administration (operations), a user's progress this period, and order refunds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from services.rewards_ledger.client import LedgerClient
from services.task_progress import checkins, service
from services.task_progress import repository as repo
from services.task_progress.schemas import (
    CheckinsOut,
    MakeupOut,
    MakeupRequest,
    OrderOut,
    OrderSettlement,
    RefundRequest,
    SimulateRequest,
    SimulationOut,
    TaskCreate,
    TaskList,
    TaskOut,
    TaskPatch,
    TaskVersions,
    UserTasks,
    reward_assets,
)
from services.task_progress.settings import Settings
from services.task_progress.simulate import simulate
from shared.auth import Principal, principal
from shared.service import Runtime, runtime_of
from shared.unit_of_work import Reads, Snapshot, Writes

router = APIRouter(prefix="/v1", tags=["tasks"])
UserId = Annotated[str, Path(min_length=1, max_length=64)]
Caller = Annotated[Principal, Depends(principal)]
TaskId = Annotated[str, Path(min_length=1, max_length=36)]
OrderNo = Annotated[str, Path(min_length=1, max_length=128)]


def assets_of(request: Request) -> LedgerClient:
    rt: Runtime[Settings, LedgerClient] = runtime_of(request)
    return rt.parts


Assets = Annotated[LedgerClient, Depends(assets_of)]


# The asset checks come before the first statement: the request's transaction has not taken
# a connection yet, so nothing of the database waits on the ledger.
@router.post("/tasks", response_model=TaskOut, status_code=201)
async def create_task(body: TaskCreate, caller: Caller, assets: Assets, session: Writes) -> dict:
    caller.require_scope("tasks:write")
    await service.require_assets(assets, reward_assets(body.model_dump()))
    return await service.create_task(session, body)


@router.get("/tasks", response_model=TaskList)
async def list_tasks(
    caller: Caller,
    session: Reads,
    active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict:
    # tasks:rules: insights's copy of the rules, which needs this list and nothing else
    caller.require_scope("tasks:read", "tasks:rules")
    rows, total = await repo.list_tasks(session, active, limit, offset)
    return {"items": [dict(r._mapping) for r in rows], "total": total}


@router.get("/tasks/{task_id}", response_model=TaskOut)
async def get_task(task_id: TaskId, caller: Caller, session: Reads) -> dict:
    caller.require_scope("tasks:read")
    return await service.get_task(session, task_id)


@router.patch("/tasks/{task_id}", response_model=TaskOut)
async def patch_task(
    task_id: TaskId, body: TaskPatch, caller: Caller, assets: Assets, session: Writes
) -> dict:
    """Change a rule; deactivate with {"active": false}. Progress already made is kept."""
    caller.require_scope("tasks:write")
    await service.require_assets(assets, reward_assets(body.model_dump(exclude_unset=True)))
    return await service.patch_task(session, task_id, body)


@router.get("/users/{user_id}/tasks", response_model=UserTasks)
async def user_tasks(
    user_id: Annotated[str, Path(min_length=1, max_length=64)],
    request: Request,
    caller: Caller,
    session: Reads,
) -> dict:
    caller.require_user_or_scope(user_id, "tasks:read")
    return await service.user_tasks(session, user_id, runtime_of(request).settings.tz)


@router.post(
    "/orders/{order_no}/refunds",
    response_model=OrderSettlement,
    status_code=201,
    responses={200: {"model": OrderSettlement, "description": "refund_no seen before"}},
)
async def refund_order(
    order_no: OrderNo, body: RefundRequest, caller: Caller, session: Writes
) -> object:
    """Refund (part of) a paid order: every grant it caused is taken back in proportion.

    201 with the clawbacks emitted; 200 with the same answer for a refund_no seen before."""
    caller.require_admin()
    settled, new = await service.refund_order(
        session, body.source, order_no, body.refund_no, body.refund_amount_cents
    )
    answer = OrderSettlement.model_validate(settled)
    if new:
        return answer
    return JSONResponse(answer.model_dump(mode="json"))


@router.get("/orders/{order_no}", response_model=OrderOut)
async def get_order(
    order_no: OrderNo,
    caller: Caller,
    session: Reads,
    source: Annotated[str, Query(min_length=1, max_length=64)] = "order_system",
) -> OrderOut:
    """A paid order, its refunds and its grants with how much of each is taken back."""
    caller.require_admin()
    return OrderOut.model_validate(await service.order_view(session, source, order_no))


@router.post("/tasks/simulate", response_model=SimulationOut)
async def simulate_rule(
    body: SimulateRequest, request: Request, caller: Caller, session: Snapshot
) -> dict:
    """Dry run: what a draft rule would have paid on the behaviors seen in [from, to),
    decided by the same code as the live rule (progress counted from `from`). Writes
    nothing. Behaviors are kept JIFEN_BEHAVIOR_HISTORY_HOURS."""
    caller.require_scope("tasks:read")
    await service.require_assets(assets_of(request), reward_assets(body.rule.model_dump()))
    return await simulate(session, body, runtime_of(request).settings.tz)


@router.get("/tasks/{task_id}/versions", response_model=TaskVersions)
async def task_versions(task_id: TaskId, caller: Caller, session: Reads) -> dict:
    """Every version of a rule: what it paid from when. Grants name the version that paid
    them (in the ledger entry's reason)."""
    caller.require_scope("tasks:read")
    return await service.task_versions(session, task_id)


@router.get("/users/{user_id}/checkins", response_model=CheckinsOut)
async def user_checkins(
    user_id: UserId,
    request: Request,
    caller: Caller,
    session: Reads,
    # years 1970-2999: year 0 or 9999-12 (whose next month is year 10000) are no calendar
    month: Annotated[
        str | None, Query(pattern=r"^(19[7-9]\d|2\d{3})-(0[1-9]|1[0-2])$", examples=["2026-12"])
    ] = None,
    task_id: Annotated[str | None, Query(min_length=1, max_length=36)] = None,
) -> dict:
    """A month of check-ins (default: this month, business timezone) of a check-in rule
    (default: the first active one), with the streaks and what today and tomorrow pay."""
    caller.require_user_or_scope(user_id, "tasks:read")
    tz = runtime_of(request).settings.tz
    return await checkins.calendar(session, user_id, task_id, month, tz)


@router.post(
    "/users/{user_id}/checkins/makeup",
    response_model=MakeupOut,
    status_code=201,
    responses={200: {"model": MakeupOut, "description": "that day was made up before"}},
)
async def makeup(user_id: UserId, body: MakeupRequest, request: Request, caller: Caller) -> object:
    """补签: check in a missed day, paid with points (409 `insufficient_points`,
    `makeup_limit_reached`, `makeup_not_allowed`; 503 `ledger_unavailable` leaves it to
    be retried). Only the ladder steps the make-up newly reaches are paid. The same day
    again answers the first result (200) and charges nothing more."""
    caller.require_user(user_id)
    rt: Runtime[Settings, LedgerClient] = runtime_of(request)
    answer, created = await checkins.makeup(
        rt.db, rt.parts, user_id, body.task_id, body.day, body.idempotency_key, rt.settings.tz
    )
    if created:
        return answer
    return JSONResponse(MakeupOut.model_validate(answer).model_dump(mode="json"))
