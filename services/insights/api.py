"""Insights HTTP routes: KPIs (operators), experiments (operators define them; assignment for
any service or the user), recommendations (the user or an operator)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from services.insights import service
from services.insights.domain import business_day
from services.insights.parts import Parts
from services.insights.schemas import (
    EXPERIMENT_KEY,
    AssignmentOut,
    ExperimentCreate,
    ExperimentList,
    ExperimentOut,
    KpiSeries,
    KpiSummary,
    RecommendationsOut,
    ResultsOut,
    StatusPatch,
)
from services.insights.service import Recommender
from services.insights.settings import Settings
from shared.auth import Principal, principal
from shared.events import ASSET_PATTERN, DEFAULT_ASSET
from shared.instants import Day
from shared.service import Runtime, runtime_of
from shared.unit_of_work import Reads, Writes

router = APIRouter(prefix="/v1", tags=["insights"])
Caller = Annotated[Principal, Depends(principal)]
UserId = Annotated[str, Path(min_length=1, max_length=64)]
Key = Annotated[str, Path(pattern=EXPERIMENT_KEY)]
Asset = Annotated[str, Query(pattern=ASSET_PATTERN, description="asset the point KPIs are of")]


async def recommender_of(request: Request) -> Recommender:
    rt: Runtime[Settings, Parts] = runtime_of(request)
    return rt.parts.recommender


async def settings_of(request: Request) -> Settings:
    rt: Runtime[Settings, Parts] = runtime_of(request)
    return rt.settings


Recommenders = Annotated[Recommender, Depends(recommender_of)]
Config = Annotated[Settings, Depends(settings_of)]


# -- KPIs -----------------------------------------------------------------------------------


@router.get("/kpis", response_model=KpiSeries)
async def kpis(
    caller: Caller,
    session: Reads,
    start: Annotated[Day, Query(alias="from", description="first business day")],
    end: Annotated[Day, Query(alias="to", description="last business day (inclusive)")],
    asset: Asset = DEFAULT_ASSET,
) -> JSONResponse:
    """Each business day's KPIs: DAU, task completion (completed / started task-periods,
    on the day they started), push open rate (opened / sent, on the day sent), redemption
    rate (points redeemed / issued; redeemers / users holding at least 100 points), the
    exact earn-to-redeem cycle, expiry rate, and points issued / redeemed / expired per
    asset. At most 366 days."""
    caller.require_scope("insights:read")
    items = await service.kpi_series(session, start, end, asset)
    # Up to 366 days of plain numbers: answered as built (the response model documents them).
    return JSONResponse(
        {"from": start.isoformat(), "to": end.isoformat(), "asset": asset, "items": items}
    )


@router.get("/kpis/summary", response_model=KpiSummary)
async def kpi_summary(
    caller: Caller, session: Reads, settings: Config, asset: Asset = DEFAULT_ASSET
) -> dict[str, Any]:
    """The last 30 business days against the design's targets."""
    caller.require_scope("insights:read")
    today = business_day(dt.datetime.now(dt.UTC), settings.tz)
    return await service.summary(session, today, asset)


# -- experiments ----------------------------------------------------------------------------


def _definition(body: ExperimentCreate) -> dict[str, Any]:
    values = body.model_dump()
    values["variants"] = [v.model_dump() for v in body.variants]
    values["metric"] = body.metric.model_dump()
    ns = body.namespace
    values["namespace"] = None if ns is None else [ns.name, ns.start, ns.end]
    return values


@router.post("/experiments", response_model=ExperimentOut, status_code=201)
async def create_experiment(
    body: ExperimentCreate, caller: Caller, session: Writes, response: Response
) -> ExperimentOut:
    """Define an experiment. Posting the same definition again answers 200 with it; another
    definition under an existing key is 409 `experiment_exists`."""
    caller.require_admin()
    view, created = await service.create_experiment(session, _definition(body))
    if not created:
        response.status_code = 200
    return view


@router.get("/experiments", response_model=ExperimentList)
async def list_experiments(
    caller: Caller,
    session: Reads,
    status: Literal["draft", "running", "stopped"] | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    caller.require_scope("insights:read")
    items, total = await service.list_experiments(session, status, limit, offset)
    return {
        "items": items,
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.get("/experiments/{key}", response_model=ExperimentOut)
async def get_experiment(key: Key, caller: Caller, session: Reads) -> ExperimentOut:
    caller.require_admin()
    return ExperimentOut.model_validate(await service.get_experiment(session, key))


@router.patch("/experiments/{key}", response_model=ExperimentOut)
async def patch_experiment(
    key: Key, body: StatusPatch, caller: Caller, session: Writes
) -> ExperimentOut:
    """Start (`running`), pause (`draft`) or stop an experiment; a stopped one stays stopped."""
    caller.require_admin()
    return await service.change_status(session, key, body.status)


@router.get("/experiments/{key}/assignment/{user_id}", response_model=AssignmentOut)
async def assignment(
    key: Key,
    user_id: UserId,
    caller: Caller,
    session: Writes,
    expose: Annotated[
        bool,
        Query(description="also log the exposure on experiment.exposures (once per user)"),
    ] = False,
) -> dict[str, Any]:
    """The variant the user sees, from the shared assignment function (any service computes
    the same with `shared.experiments.assign`); null when the user is outside the
    experiment or it is not running."""
    caller.require_user(user_id)
    return await service.assignment(session, key, user_id, expose)


@router.get("/experiments/{key}/results", response_model=ResultsOut)
async def results(key: Key, caller: Caller, session: Reads) -> dict[str, Any]:
    """Per variant: users exposed, conversions, rate or mean with its 95% interval, lift
    over the control (the first variant) and its p-value (two-proportion z for a
    conversion, Welch's t for a mean); and the sample-ratio-mismatch check (chi-square of
    exposures against the weights, flagged below p = 0.001)."""
    caller.require_scope("insights:read")
    return await service.results(session, key)


# -- recommendations -------------------------------------------------------------------------


@router.get("/users/{user_id}/recommendations", response_model=RecommendationsOut)
async def recommendations(
    user_id: UserId,
    caller: Caller,
    session: Reads,
    recommender: Recommenders,
    settings: Config,
    limit: Annotated[int, Query(ge=1, le=20)] = 5,
) -> JSONResponse:
    """Items for the user to redeem, each with its reason: priced 0.5-1.5x their balance,
    in stock, within their limits and tier; ranked 60% by what users who redeemed the same
    things redeemed and 40% by similar names, categories and tags; the most redeemed of
    the last 7 days for a user with no redemptions; at most 2 per category."""
    caller.require_user(user_id)
    model = await recommender.model()
    # A hot read answers with its JSON straight away: the response model documents it, and
    # validating the items again would cost about as much as ranking them.
    return JSONResponse(await service.recommendations(session, model, user_id, limit, settings))
