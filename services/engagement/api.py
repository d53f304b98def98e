"""Engagement HTTP routes: leaderboards (ops define them, anyone reads them: by display name,
never by user id, except to operators), users' display names, badges, tiers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from services.engagement import repository as repo
from services.engagement import service
from services.engagement.leaderboards import Leaderboards
from services.engagement.names import Viewer
from services.engagement.schemas import (
    BadgeCreate,
    BadgeList,
    BadgeOut,
    BoardCreate,
    BoardList,
    BoardOut,
    BoardUpdate,
    HistoryOut,
    LadderOut,
    ProfileIn,
    ProfileOut,
    RebuildOut,
    TierIn,
    TopOut,
    UserBadges,
    UserRankOut,
    UserTierOut,
)
from services.engagement.settings import Settings
from shared.auth import Principal, optional_principal, principal
from shared.db import after_commit
from shared.service import Runtime, runtime_of
from shared.unit_of_work import Reads, Writes

router = APIRouter(prefix="/v1", tags=["engagement"])
Caller = Annotated[Principal, Depends(principal)]
MaybeCaller = Annotated[Principal | None, Depends(optional_principal)]
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
READ_SCOPE = "engagement:read"


def viewer_of(caller: MaybeCaller) -> Viewer:
    """Operators (the admin, a service credential carrying engagement:read) see user ids on
    the boards; a user's own entries are flagged `me`; anyone else sees names only."""
    if caller is None:
        return Viewer()
    operator = caller.is_admin or (caller.kind == "service" and READ_SCOPE in caller.scopes)
    return Viewer(ids=operator, user_id=caller.user_id if caller.kind == "user" else None)


Reader = Annotated[Viewer, Depends(viewer_of)]


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


@router.patch("/leaderboards/{code}", response_model=BoardOut)
async def update_board(
    code: Code, body: BoardUpdate, caller: Caller, boards: Boards, session: Writes
) -> repo.Board:
    """Rename a board or change how it shows users (`name_display`); fields left out stay."""
    caller.require_admin()
    values = body.model_dump(exclude_none=True)
    view = await service.update_board(session, code, values)
    after_commit(session, lambda: boards.forget(code))
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
    viewer: Reader,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    period: PeriodParam = "current",
) -> JSONResponse:
    """The best `limit`, each shown by display name as the board's `name_display` says (a
    pseudonym for a user with no name); user ids only to operators."""
    # The hot reads answer with their JSON straight away: the response model documents them,
    # and validating every item again would cost more than the lookup (bench/engagement.py).
    return JSONResponse(await boards.top(code, period, limit, viewer))


@router.get("/leaderboards/{code}/users/{user_id}", response_model=UserRankOut)
async def user_rank(
    code: Code,
    user_id: UserId,
    boards: Boards,
    viewer: Reader,
    period: PeriodParam = "current",
    around: Annotated[int, Query(ge=0, le=50, description="users shown either side")] = 2,
) -> JSONResponse:
    """Rank, score, how many are ranked, the top percent ("前X%") and the users around (by
    display name, as on the top); 404 `not_ranked` when the user has no score on the board
    in that period. The id is echoed to operators and the user themselves only."""
    return JSONResponse(await boards.user(code, user_id, period, around, viewer))


@router.get(
    "/leaderboards/{code}/users/{user_id}/history",
    response_model=HistoryOut,
    response_model_exclude_unset=True,  # no user_id at all for the public, as on the ranks
)
async def rank_history(
    code: Code,
    user_id: UserId,
    boards: Boards,
    viewer: Reader,
    days: Annotated[int, Query(ge=1, le=90)] = 7,
) -> dict:
    return await boards.history(code, user_id, days, viewer)


@router.post("/leaderboards/{code}/rebuild", response_model=RebuildOut)
async def rebuild(
    code: Code, caller: Caller, boards: Boards, period: PeriodParam = "current"
) -> dict:
    """Rebuild the board's index for a period from PostgreSQL (the scores' truth)."""
    caller.require_scope("engagement:rebuild")
    return await boards.rebuild(code, period)


# -- profiles -------------------------------------------------------------------------------


@router.put("/users/{user_id}/profile", response_model=ProfileOut)
async def put_profile(
    user_id: UserId, body: ProfileIn, caller: Caller, boards: Boards, session: Writes
) -> repo.Profile:
    """Set the display name and avatar the boards show (the user themselves or the admin).
    Fields left out stay as they are, null clears one; a newer `profile_updated` behavior
    overrides this, an older one does not."""
    caller.require_user(user_id)
    fields = body.model_dump(include=body.model_fields_set)
    profile = await service.put_profile(session, user_id, fields, datetime.now(UTC))
    after_commit(session, lambda: boards.names.forget([user_id]))
    return profile


@router.get("/users/{user_id}/profile", response_model=ProfileOut)
async def get_profile(user_id: UserId, caller: Caller, session: Reads) -> repo.Profile:
    """The stored display name and avatar, unmasked."""
    caller.require_user_or_scope(user_id, READ_SCOPE)
    return await service.get_profile(session, user_id)


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
    caller.require_user_or_scope(user_id, READ_SCOPE)
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
    caller.require_user_or_scope(user_id, READ_SCOPE)
    return await service.user_tier(session, user_id, settings, datetime.now(UTC))
