"""Engagement HTTP routes: leaderboards (ops define them, anyone reads them), badges, tiers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from services.engagement import repository as repo
from services.engagement import service
from services.engagement.leaderboards import Leaderboards
from services.engagement.schemas import (
    BadgeCreate,
    BadgeList,
    BadgeOut,
    BoardCreate,
    BoardList,
    BoardOut,
    HistoryOut,
    LadderOut,
    RebuildOut,
    TierIn,
    TopOut,
    UserBadges,
    UserRankOut,
    UserTierOut,
)
from services.engagement.settings import Settings
from shared.auth import Principal, principal
from shared.service import Runtime, runtime_of
from shared.unit_of_work import Reads, Writes

router = APIRouter(prefix="/v1", tags=["engagement"])
Caller = Annotated[Principal, Depends(principal)]
Code = Annotated[str, Path(min_length=1, max_length=64)]
UserId = Annotated[str, Path(min_length=1, max_length=64)]
PeriodParam = Annotated[
    str,
    Query(
        min_length=1,
        max_length=16,
        description="current, or a period key of the board's window: 2026-11-30 (day), "
        "2026-W49 (week), 2026-11 (month), all (all_time)",
    ),
]


def boards_of(request: Request) -> Leaderboards:
    rt: Runtime[Settings, Leaderboards] = runtime_of(request)
    return rt.parts


def settings_of(request: Request) -> Settings:
    rt: Runtime[Settings, Leaderboards] = runtime_of(request)
    return rt.settings


Boards = Annotated[Leaderboards, Depends(boards_of)]
Config = Annotated[Settings, Depends(settings_of)]


# -- leaderboards ---------------------------------------------------------------------------


@router.post("/leaderboards", response_model=BoardOut, status_code=201)
async def create_board(
    body: BoardCreate, caller: Caller, boards: Boards, session: Writes
) -> repo.Board:
    caller.require_admin()
    values = body.model_dump()
    values["prizes"] = [p.model_dump() for p in body.prizes]
    view = await service.create_board(session, values)
    boards.forget(body.code)
    return view


@router.get("/leaderboards", response_model=BoardList)
async def list_boards(session: Reads) -> dict:
    return {"items": await repo.list_boards(session)}


@router.get("/leaderboards/{code}", response_model=BoardOut)
async def get_board(code: Code, session: Reads) -> repo.Board:
    return await service.get_board(session, code)


@router.get("/leaderboards/{code}/top", response_model=TopOut)
async def top(
    code: Code,
    boards: Boards,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    period: PeriodParam = "current",
) -> JSONResponse:
    # The hot reads answer with their JSON straight away: the response model documents them,
    # and validating every item again would cost more than the lookup (bench/engagement.py).
    return JSONResponse(await boards.top(code, period, limit))


@router.get("/leaderboards/{code}/users/{user_id}", response_model=UserRankOut)
async def user_rank(
    code: Code,
    user_id: UserId,
    boards: Boards,
    period: PeriodParam = "current",
    around: Annotated[int, Query(ge=0, le=50, description="users shown either side")] = 2,
) -> JSONResponse:
    """Rank, score, how many are ranked, the top percent ("前X%") and the users around;
    404 `not_ranked` when the user has no score on the board in that period."""
    return JSONResponse(await boards.user(code, user_id, period, around))


@router.get("/leaderboards/{code}/users/{user_id}/history", response_model=HistoryOut)
async def rank_history(
    code: Code, user_id: UserId, boards: Boards, days: Annotated[int, Query(ge=1, le=90)] = 7
) -> dict:
    return await boards.history(code, user_id, days)


@router.post("/leaderboards/{code}/rebuild", response_model=RebuildOut)
async def rebuild(
    code: Code, caller: Caller, boards: Boards, period: PeriodParam = "current"
) -> dict:
    """Rebuild the board's index for a period from PostgreSQL (the scores' truth)."""
    caller.require_scope("engagement:rebuild")
    return await boards.rebuild(code, period)


# -- badges ---------------------------------------------------------------------------------


@router.post("/badges", response_model=BadgeOut, status_code=201)
async def create_badge(body: BadgeCreate, caller: Caller, session: Writes) -> repo.Badge:
    caller.require_admin()
    values = body.model_dump()
    return await service.create_badge(session, values)


@router.get("/badges", response_model=BadgeList)
async def list_badges(session: Reads) -> dict:
    return {"items": await repo.list_badges(session)}


@router.get("/users/{user_id}/badges", response_model=UserBadges)
async def user_badges(user_id: UserId, caller: Caller, settings: Config, session: Reads) -> dict:
    caller.require_user_or_scope(user_id, "engagement:read")
    return await service.user_badges(session, user_id, settings.tz, datetime.now(UTC))


# -- tiers ----------------------------------------------------------------------------------


@router.put("/tiers", response_model=LadderOut)
async def put_tiers(
    tiers: Annotated[list[TierIn], Body(min_length=1, max_length=50)],
    caller: Caller,
    session: Writes,
) -> dict:
    """Replace the tier ladder (lowest min_growth first). Users' tiers are re-evaluated as
    their growth changes (upgrades) and at the end of their terms (downgrades)."""
    caller.require_admin()
    return await service.replace_ladder(session, [t.model_dump() for t in tiers])


@router.get("/tiers", response_model=LadderOut)
async def get_tiers(session: Reads) -> dict:
    ladder, version = await service.load_ladder(session)
    return {
        "version": version,
        "tiers": [service.tier_view(t, i + 1) for i, t in enumerate(ladder.tiers)],
    }


@router.get("/users/{user_id}/tier", response_model=UserTierOut)
async def user_tier(user_id: UserId, caller: Caller, settings: Config, session: Reads) -> dict:
    caller.require_user_or_scope(user_id, "engagement:read")
    return await service.user_tier(session, user_id, settings, datetime.now(UTC))
