"""Task rule administration (operations), a user's progress this period, and order refunds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from services.task_progress import repository as repo
from services.task_progress import service
from services.task_progress.assets import AssetCatalog
from services.task_progress.schemas import (
    OrderOut,
    OrderSettlement,
    RefundRequest,
    TaskCreate,
    TaskList,
    TaskOut,
    TaskPatch,
    UserTasks,
    reward_assets,
)
from services.task_progress.settings import Settings
from shared.auth import Principal, principal
from shared.service import Runtime, runtime_of
from shared.unit_of_work import Reads, Writes

router = APIRouter(prefix="/v1", tags=["tasks"])
Caller = Annotated[Principal, Depends(principal)]
TaskId = Annotated[str, Path(min_length=1, max_length=36)]
OrderNo = Annotated[str, Path(min_length=1, max_length=128)]


def assets_of(request: Request) -> AssetCatalog:
    rt: Runtime[Settings, AssetCatalog] = runtime_of(request)
    return rt.parts


Assets = Annotated[AssetCatalog, Depends(assets_of)]


# The asset checks come before the first statement: the request's transaction has not taken
# a connection yet, so nothing of the database waits on the ledger.
@router.post("/tasks", response_model=TaskOut, status_code=201)
async def create_task(body: TaskCreate, caller: Caller, assets: Assets, session: Writes) -> dict:
    caller.require_admin()
    await assets.require(reward_assets(body.model_dump()))
    return await service.create_task(session, body)


@router.get("/tasks", response_model=TaskList)
async def list_tasks(
    caller: Caller,
    session: Reads,
    active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict:
    caller.require_admin()
    rows, total = await repo.list_tasks(session, active, limit, offset)
    return {"items": [dict(r._mapping) for r in rows], "total": total}


@router.get("/tasks/{task_id}", response_model=TaskOut)
async def get_task(task_id: TaskId, caller: Caller, session: Reads) -> dict:
    caller.require_admin()
    return await service.get_task(session, task_id)


@router.patch("/tasks/{task_id}", response_model=TaskOut)
async def patch_task(
    task_id: TaskId, body: TaskPatch, caller: Caller, assets: Assets, session: Writes
) -> dict:
    """Change a rule; deactivate with {"active": false}. Progress already made is kept."""
    caller.require_admin()
    await assets.require(reward_assets(body.model_dump(exclude_unset=True)))
    return await service.patch_task(session, task_id, body)


@router.get("/users/{user_id}/tasks", response_model=UserTasks)
async def user_tasks(
    user_id: Annotated[str, Path(min_length=1, max_length=64)],
    request: Request,
    caller: Caller,
    session: Reads,
) -> dict:
    caller.require_user(user_id)
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
    answer, new = await service.refund_order(
        session, body.source, order_no, body.refund_no, body.refund_amount_cents
    )
    if new:
        return answer
    return JSONResponse(OrderSettlement.model_validate(answer).model_dump(mode="json"))


@router.get("/orders/{order_no}", response_model=OrderOut)
async def get_order(
    order_no: OrderNo,
    caller: Caller,
    session: Reads,
    source: Annotated[str, Query(min_length=1, max_length=64)] = "order_system",
) -> dict:
    """A paid order, its refunds and its grants with how much of each is taken back."""
    caller.require_admin()
    return await service.order_view(session, source, order_no)
