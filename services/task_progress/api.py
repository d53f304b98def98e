"""Task rule administration (operations) and a user's progress this period."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from services.task_progress import repository as repo
from services.task_progress import service
from services.task_progress.schemas import TaskCreate, TaskList, TaskOut, TaskPatch, UserTasks
from shared.auth import Principal, principal
from shared.service import runtime_of
from shared.unit_of_work import Reads, Writes

router = APIRouter(prefix="/v1", tags=["tasks"])
Caller = Annotated[Principal, Depends(principal)]
TaskId = Annotated[str, Path(min_length=1, max_length=36)]


@router.post("/tasks", response_model=TaskOut, status_code=201)
async def create_task(body: TaskCreate, caller: Caller, session: Writes) -> dict:
    caller.require_admin()
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
async def patch_task(task_id: TaskId, body: TaskPatch, caller: Caller, session: Writes) -> dict:
    """Change a rule; deactivate with {"active": false}. Progress already made is kept."""
    caller.require_admin()
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
