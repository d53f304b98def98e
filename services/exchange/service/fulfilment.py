"""Fulfilment of physical redemptions: shipping and delivery steps, and the shipping queue."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange import domain
from services.exchange import repository as repo
from services.exchange.events import FULFILMENT_EVENTS, emit
from services.exchange.schemas import RedemptionOut, RedemptionsPage
from shared.errors import DomainError, NotFound


async def advance_fulfilment(
    session: AsyncSession,
    redemption_id: str,
    action: str,
    carrier: str | None = None,
    tracking_number: str | None = None,
) -> RedemptionOut:
    """Ship or deliver a completed physical redemption (idempotent per step)."""
    row = await repo.get_redemption(session, redemption_id, lock=True)
    if row is None:
        raise NotFound("redemption", redemption_id)
    if row.item_type != "physical" or row.status != "completed":
        done = "shipped" if action == "ship" else "delivered"
        raise DomainError(
            "invalid_transition",
            f"only a completed physical redemption can be {done}",
            redemption_status=row.status,
        )
    target = domain.fulfilment_step(action, row.fulfilment_status)
    if target == row.fulfilment_status:
        return RedemptionOut.model_validate(row)
    values: dict[str, Any] = {"fulfilment_status": target}
    if action == "ship":
        values.update(carrier=carrier, tracking_number=tracking_number)
    row = await repo.update_redemption(session, redemption_id, values)
    await emit(session, [(row, FULFILMENT_EVENTS[target])])
    return RedemptionOut.model_validate(row)


async def fulfilment_queue(
    session: AsyncSession, fulfilment_status: str, user_id: str | None, limit: int, offset: int
) -> RedemptionsPage:
    """A page of the physical redemptions waiting at a fulfilment step, oldest first."""
    rows = await repo.fulfilment_queue(session, fulfilment_status, user_id, limit + 1, offset)
    return RedemptionsPage(
        items=[RedemptionOut.model_validate(r) for r in rows[:limit]],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if len(rows) > limit else None,
    )
