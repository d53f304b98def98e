"""Campaigns: scheduling a broadcast (idempotent by its key), reading one with its
notifications counted by status, and the notifications a chunk of its audience is sent."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier import domain
from services.notifier import repository as repo
from services.notifier.schemas import CampaignIn
from services.notifier.service.queueing import Planned
from services.notifier.service.templating import template_book
from shared.errors import DomainError, InvalidInput, NotFound
from shared.events import stable_id


async def get_campaign(session: AsyncSession, campaign_id: str) -> repo.Campaign:
    row = await repo.campaign(session, campaign_id)
    if row is None:
        raise NotFound("campaign", campaign_id)
    [found] = await repo.campaigns_with_counts(session, [row])
    return found


async def list_campaigns(session: AsyncSession, limit: int) -> list[repo.Campaign]:
    return await repo.campaigns_page(session, limit)


async def create_campaign(session: AsyncSession, body: CampaignIn) -> tuple[str, bool]:
    """Schedule a broadcast; returns its id and whether it is new. The same idempotency key
    with the same body finds the campaign there; with another body it is refused."""
    if body.template is not None:
        book = await template_book(session)
        if body.template not in book:
            raise InvalidInput(f"unknown template {body.template}")
    campaign_id = stable_id("campaign", body.idempotency_key)
    audience = body.audience.model_dump(exclude_none=True)
    values = {
        "id": campaign_id,
        "name": body.name,
        "audience": json.dumps(audience, ensure_ascii=False),
        "category": body.category,
        "template": body.template,
        "title": body.title,
        "body": body.body,
        "variables": json.dumps(body.variables, ensure_ascii=False),
        "send_at": body.send_at or datetime.now(UTC),
    }
    if await repo.insert_campaign(session, values):
        return campaign_id, True
    existing = await repo.campaign(session, campaign_id)
    same = (
        existing.name == body.name
        and existing.audience == audience
        and existing.category == body.category
        and existing.template == body.template
        and existing.title == body.title
        and existing.body == body.body
    )
    if not same:
        raise DomainError(
            "idempotency_conflict",
            "this idempotency key was used for another campaign",
        )
    return campaign_id, False


def campaign_plans(campaign: Any, users: Iterable[str], now: datetime) -> list[Planned]:
    """The notifications of one chunk of a campaign's audience (due now)."""
    return [
        Planned(
            id=domain.notification_id("campaign", campaign.id, user_id),
            user_id=user_id,
            trigger="campaign",
            due_at=now,
            template=campaign.template,
            title=campaign.title,
            body=campaign.body,
            variables=dict(campaign.variables or {}),
            category=campaign.category,
            campaign_id=campaign.id,
        )
        for user_id in users
    ]
