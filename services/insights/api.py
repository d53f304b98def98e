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
    KPI_NAME,
    AssignmentOut,
    BusinessHealth,
    ExperimentCreate,
    ExperimentList,
    ExperimentOut,
    KpiSeries,
    KpiSummary,
    KpiTargetHistory,
    KpiTargetPut,
    KpiTargets,
    RecommendationsOut,
    ResultsOut,
    StatusPatch,
    StoredKpiTarget,
)
from services.insights.service import Recommender
from services.insights.settings import Settings
from shared.auth import Principal, optional_principal, principal
from shared.errors import InvalidInput
from shared.events import ASSET_PATTERN, DEFAULT_ASSET
from shared.instants import Day
from shared.service import Runtime, runtime_of
from shared.unit_of_work import Reads, Writes

router = APIRouter(prefix="/v1", tags=["insights"])
Caller = Annotated[Principal, Depends(principal)]
MaybeCaller = Annotated[Principal | None, Depends(optional_principal)]
Kpi = Annotated[str, Path(pattern=KPI_NAME)]
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


@router.get("/kpis/targets", response_model=KpiTargets)
async def kpi_targets(caller: Caller, session: Reads) -> dict[str, Any]:
    """Each KPI's target as stored (the seed's until an operator changes it), with the
    seed's value beside it and who changed it last."""
    caller.require_scope("insights:read")
    return {"items": await service.list_targets(session)}


@router.put("/kpis/targets/{kpi}", response_model=StoredKpiTarget)
async def put_kpi_target(
    kpi: Kpi, body: KpiTargetPut, caller: Caller, session: Writes
) -> dict[str, Any]:
    """Change a KPI's target (the summary, the `met` gauges and the alerts follow it); the
    change is recorded with who made it, the old and new values and when. The comparison
    (at least / at most) is the KPI's own and does not change."""
    caller.require_admin()
    return await service.set_target(
        session, kpi, body.target, _who(caller), body.operator, body.reason
    )


@router.get("/kpis/targets/{kpi}/history", response_model=KpiTargetHistory)
async def kpi_target_history(kpi: Kpi, caller: Caller, session: Reads) -> dict[str, Any]:
    """The KPI's target changes, newest first (at most 200)."""
    caller.require_scope("insights:read")
    return {"kpi": kpi, "items": await service.target_history(session, kpi)}


def _who(caller: Principal) -> str:
    return f"service:{caller.service}" if caller.kind == "service" else caller.kind


# -- business health ------------------------------------------------------------------------


@router.get(
    "/health/business",
    response_model=BusinessHealth,
    responses={503: {"description": "critical: the same body, with `error` and `message`"}},
)
async def business_health(caller: MaybeCaller, session: Reads, settings: Config) -> JSONResponse:
    """Healthy / warning / critical from the seed's signals: redemption and expiry rates
    over `JIFEN_HEALTH_WINDOW_DAYS`, the redemptions' p99, the suite's consumer lag, both
    reconciliations; 503 when critical (for a monitor: not a load balancer's readiness,
    which is /health/ready). Anyone gets the verdicts; the admin and `insights:read` also
    the values, thresholds and messages."""
    detailed = caller is not None and (
        caller.is_admin or (caller.kind == "service" and "insights:read" in caller.scopes)
    )
    now = dt.datetime.now(dt.UTC)
    report = BusinessHealth.model_validate(
        await service.business_health(session, settings, now, detailed)
    ).model_dump(mode="json")
    if report["status"] != "critical":
        return JSONResponse(report)
    critical = [r["signal"] for r in report["reasons"] if r["status"] == "critical"]
    message = "critical: " + ", ".join(critical)
    # the suite's error shape ({error, message}) around the same report
    return JSONResponse({"error": "business_critical", "message": message, **report}, 503)


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
    limit: Annotated[int, Query(ge=1, le=20)] = 5,
    min_price: Annotated[
        int | None, Query(ge=1, le=10**12, description="lowest price (with max_price)")
    ] = None,
    max_price: Annotated[
        int | None, Query(ge=1, le=10**12, description="highest price (with min_price)")
    ] = None,
) -> JSONResponse:
    """Items for the user to redeem, each with its reason: priced 0.5-1.5x their balance (or
    min_price..max_price: the exchange's quick options ask for 0.3-1.0x), in stock, within
    their limits and tier; nothing for a balance of 0; at most 2 per category. The
    recommender is the user's arm of the `recommender` experiment (exposure logged), or
    `item_item` when it does not run: `item_item` ranks 60% by what users who redeemed the
    same things redeemed and 40% by similar names, categories and tags, the most redeemed of
    the last 7 days for a user with no redemptions; `user_based` by what users with a
    balance within 0.7-1.3x theirs redeemed, weighted by how close the balances are. For the
    user, an operator, or a service with `insights:recommendations` (the exchange)."""
    caller.require_user_or_scope(user_id, "insights:recommendations")
    band: tuple[int, int] | None = None
    if min_price is not None or max_price is not None:
        if min_price is None or max_price is None or min_price > max_price:
            raise InvalidInput("give min_price <= max_price together, or neither")
        band = (min_price, max_price)
    # A hot read answers with its JSON straight away: the response model documents it, and
    # validating the items again would cost about as much as ranking them.
    return JSONResponse(await service.recommendations(session, recommender, user_id, limit, band))
