"""Notifier HTTP routes: a user's devices, preferences and notifications (the user or an
admin), open tracking, templates, campaigns and trigger runs (admin)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from services.notifier import repository as repo
from services.notifier import service
from services.notifier.parts import Parts
from services.notifier.schemas import (
    CampaignIn,
    CampaignList,
    CampaignOut,
    DeviceIn,
    DeviceList,
    DeviceOut,
    NotificationDetail,
    NotificationList,
    NotificationOut,
    PreferencesIn,
    PreferencesOut,
    TemplateIn,
    TemplateList,
    TemplateOut,
    TriggerRunIn,
    TriggerRunList,
    TriggerRunOut,
)
from services.notifier.settings import Settings
from services.notifier.templates import BUILTIN
from services.notifier.triggers import TRIGGERS
from shared.auth import Principal, principal
from shared.instants import Instant
from shared.service import Runtime, runtime_of
from shared.unit_of_work import Reads, Writes

router = APIRouter(prefix="/v1", tags=["notifier"])
Caller = Annotated[Principal, Depends(principal)]
UserId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\x00]+$")]
Token = Annotated[str, Path(min_length=8, max_length=4096, pattern=r"^[A-Za-z0-9_:\-.]+$")]
NotificationId = Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]
TemplateCode = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.]*$")]


def parts_of(request: Request) -> Parts:
    rt: Runtime[Settings, Parts] = runtime_of(request)
    return rt.parts


def settings_of(request: Request) -> Settings:
    rt: Runtime[Settings, Parts] = runtime_of(request)
    return rt.settings


Config = Annotated[Settings, Depends(settings_of)]
NotifierParts = Annotated[Parts, Depends(parts_of)]


# -- devices and preferences ----------------------------------------------------------------


@router.post("/users/{user_id}/devices", response_model=DeviceOut, status_code=201)
async def register_device(
    user_id: UserId, body: DeviceIn, response: Response, caller: Caller, session: Writes
) -> dict:
    """Register a device token (201), or refresh one already known (200; a token that moved
    to another user follows them, and a deactivated one is active again)."""
    caller.require_user(user_id)
    device, created = await service.register_device(session, user_id, body.platform, body.token)
    if not created:
        response.status_code = 200
    return {"user_id": user_id, "platform": device["platform"], "active": True, "created": created}


@router.get("/users/{user_id}/devices", response_model=DeviceList)
async def list_devices(user_id: UserId, caller: Caller, session: Reads) -> dict:
    caller.require_user(user_id)
    return {"items": await service.list_devices(session, user_id)}


@router.delete("/users/{user_id}/devices/{token}", status_code=204)
async def remove_device(user_id: UserId, token: Token, caller: Caller, session: Writes) -> Response:
    caller.require_user(user_id)
    await service.remove_device(session, user_id, token)
    return Response(status_code=204)


@router.get("/users/{user_id}/preferences", response_model=PreferencesOut)
async def get_preferences(
    user_id: UserId, caller: Caller, settings: Config, session: Reads
) -> dict:
    caller.require_user(user_id)
    return await service.get_preferences(session, settings, user_id)


@router.put("/users/{user_id}/preferences", response_model=PreferencesOut)
async def put_preferences(
    user_id: UserId, body: PreferencesIn, caller: Caller, settings: Config, session: Writes
) -> dict:
    """Change what is given; the rest stays. `transactional` cannot be switched off."""
    caller.require_user(user_id)
    return await service.put_preferences(
        session, settings, user_id, body.model_dump(exclude_none=True)
    )


# -- notifications ---------------------------------------------------------------------------


@router.get("/users/{user_id}/notifications", response_model=NotificationList)
async def list_notifications(
    user_id: UserId,
    caller: Caller,
    session: Reads,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Instant | None = None,
) -> dict:
    """Newest first; `before` (a created_at, with its offset) pages back."""
    caller.require_user_or_scope(user_id, "notifier:read")
    return {"items": await service.list_notifications(session, user_id, limit, before)}


@router.get("/notifications/{notification_id}", response_model=NotificationDetail)
async def get_notification(
    notification_id: NotificationId, caller: Caller, session: Reads
) -> NotificationDetail:
    """One notification with every attempt to deliver it."""
    caller.require_user(await service.owner_of(session, notification_id))
    return await service.get_notification(session, notification_id)


@router.post("/notifications/{notification_id}/opened", response_model=NotificationOut)
async def opened(
    notification_id: NotificationId, caller: Caller, session: Writes
) -> NotificationOut:
    """Open tracking (the app calls it when the user opens the push): the first open is
    recorded and published as `opened` on notify.events; later calls change nothing."""
    caller.require_user(await service.owner_of(session, notification_id))
    return await service.opened(session, notification_id, datetime.now(UTC))


# -- templates --------------------------------------------------------------------------------


@router.get("/templates", response_model=TemplateList)
async def list_templates(caller: Caller, session: Reads) -> dict:
    caller.require_admin()
    return {"items": await service.list_templates(session)}


@router.put("/templates/{code}", response_model=TemplateOut)
async def put_template(
    code: TemplateCode, body: TemplateIn, caller: Caller, session: Writes
) -> dict:
    """Create or replace a template (zh-CN required, en optional; `{name}` variables must be
    declared). A built-in template's replacement keeps its category and variables."""
    caller.require_admin()
    payload = body.model_dump()
    payload["texts"] = {k: v for k, v in payload["texts"].items()}
    return await service.put_template(session, code, payload)


# -- campaigns --------------------------------------------------------------------------------


@router.post(
    "/campaigns",
    response_model=CampaignOut,
    status_code=201,
    responses={200: {"model": CampaignOut, "description": "this idempotency key was used before"}},
)
async def create_campaign(
    body: CampaignIn, response: Response, caller: Caller, session: Writes, parts: NotifierParts
) -> repo.Campaign:
    """Schedule a broadcast: queued in chunks from `send_at`, resumable, each recipient at
    most once. The same idempotency key and body again answers 200 with the campaign; the
    same key with another body is 409."""
    caller.require_admin()
    campaign_id, created = await service.create_campaign(session, body)
    if not created:
        response.status_code = 200
    parts.wake_expander(session)
    return await service.get_campaign(session, campaign_id)


@router.get("/campaigns", response_model=CampaignList)
async def list_campaigns(
    caller: Caller, session: Reads, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> dict:
    caller.require_scope("notifier:read")
    return {"items": await service.list_campaigns(session, limit)}


@router.get("/campaigns/{campaign_id}", response_model=CampaignOut)
async def get_campaign(
    campaign_id: Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")],
    caller: Caller,
    session: Reads,
) -> repo.Campaign:
    """The campaign with its notifications counted by status."""
    caller.require_admin()
    return await service.get_campaign(session, campaign_id)


# -- trigger runs ------------------------------------------------------------------------------


@router.get("/triggers/runs", response_model=TriggerRunList)
async def list_runs(
    caller: Caller, session: Reads, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> dict:
    caller.require_admin()
    rows = await repo.runs(session, limit)
    return {
        "items": [
            {
                "trigger": r.trigger,
                "timezone": r.timezone,
                "day": r.day,
                "status": r.status,
                "queued": r.queued,
            }
            for r in rows
        ]
    }


@router.post("/triggers/{trigger}/runs", response_model=TriggerRunList)
async def run_trigger(
    trigger: Annotated[str, Path(pattern=r"^(points_expiring|streak_at_risk|tasks_unfinished)$")],
    body: TriggerRunIn,
    caller: Caller,
    parts: NotifierParts,
    settings: Config,
) -> dict:
    """Run a daily trigger for a local day now (a missed day, or a re-run after fixing a
    template): what it queued before is not queued again. Every timezone in use unless one
    is given."""
    caller.require_admin()
    assert trigger in TRIGGERS
    zones = [body.timezone] if body.timezone else await parts.zones()
    now = datetime.now(UTC)
    results: list[TriggerRunOut | dict[str, Any]] = []
    for tz in zones:
        results.append(
            await parts.scanner.run(
                trigger, tz, body.day, now, immediate=body.immediate, restart=True
            )
        )
    parts.wake_dispatch()
    return {"items": results}


__all__ = ["BUILTIN", "router"]
