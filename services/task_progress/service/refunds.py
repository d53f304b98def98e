"""Orders and refunds: paid orders recorded from behaviors, refunds (behaviors or an
operator's request) settled against the grants their order caused, clawbacks emitted."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress import repository as repo
from services.task_progress.domain import (
    Clawback,
    OrderGrant,
    clawbacks,
    order_behavior_id,
    refunded_total,
    yuan,
)
from services.task_progress.events import clawback_events
from services.task_progress.metrics import REFUNDS
from services.task_progress.models import messaging
from services.task_progress.repository import Grant, Order, Refund
from shared.errors import InvalidInput, NotFound
from shared.events import BehaviorEvent
from shared.messaging import OutgoingEvent, add_to_outbox

log = logging.getLogger(__name__)
ORDER_PAID = "order_paid"
ORDER_REFUNDED = "order_refunded"


def _is_amount(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _text(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= 128


@dataclass(frozen=True)
class RefundCause:
    """What a clawback names as its reason for being: the refund and when it happened."""

    reference: str
    occurred_at: datetime


@dataclass
class OrderBehaviors:
    """A batch's paid orders and refunds, as rows to insert, and each refunded order's cause."""

    paid: dict[str, dict[str, Any]]
    refunds: dict[tuple[str, str], dict[str, Any]]
    causes: dict[str, RefundCause]


def orders_and_refunds(events: list[BehaviorEvent]) -> OrderBehaviors:
    """The paid orders and refunds among a batch's behaviors; a refund missing its order
    number, refund number or amount is counted invalid and left aside."""
    found = OrderBehaviors({}, {}, {})
    for event in events:
        attrs = event.attributes
        if event.action == ORDER_PAID and _is_amount(attrs.get("amount_cents")):
            found.paid[event.behavior_id] = {
                "order_behavior_id": event.behavior_id,
                "user_id": event.user_id,
                "source": event.source,
                "order_no": event.event_id,
                "paid_cents": attrs["amount_cents"],
            }
        elif event.action == ORDER_REFUNDED:
            order_no, refund_no = attrs.get("order_no"), attrs.get("refund_no")
            amount = attrs.get("refund_amount_cents")
            if not (_text(order_no) and _text(refund_no) and _is_amount(amount)):
                REFUNDS.labels("invalid").inc()
                log.warning(
                    "refund behavior %s left aside: needs order_no, refund_no and "
                    "refund_amount_cents >= 0",
                    event.behavior_id,
                )
                continue
            order_id = order_behavior_id(event.source, order_no)
            found.refunds[(order_id, refund_no)] = {
                "order_behavior_id": order_id,
                "refund_no": refund_no,
                "user_id": event.user_id,
                "amount_cents": amount,
            }
            found.causes[order_id] = RefundCause(event.behavior_id, event.occurred_at)
    return found


async def record_orders_and_refunds(session: AsyncSession, events: list[BehaviorEvent]) -> None:
    """Record a batch's paid orders and refunds, and take back what every order with a new
    refund (or a new order a refund waited for) has earned."""
    found = orders_and_refunds(events)
    paid, refunds, causes = found.paid, found.refunds, found.causes
    if not paid and not refunds:
        return
    if refunds:
        # Lock the refunded orders before adding refunds, in the order the HTTP refund takes
        # (order, then refund): the two never wait on each other in a cycle.
        await repo.orders_by_id(session, sorted(causes), for_update=True)
    # Refunds before orders: an order of this very batch then finds the refunds waiting for it.
    new_refunds = await repo.insert_refunds(session, list(refunds.values()))
    refunded_orders = await repo.insert_orders(session, list(paid.values()))
    REFUNDS.labels("duplicate").inc(len(refunds) - len(new_refunds))
    touched = {order_id for order_id, _ in new_refunds} | refunded_orders
    if not touched:
        return
    settled = await settle(session, sorted(touched), lock=True)
    for order_id, _ in new_refunds:
        REFUNDS.labels("applied" if order_id in settled else "waiting").inc()
    await emit_clawbacks(session, list(settled.values()), causes)


@dataclass(frozen=True)
class SettledGrant:
    """A grant an order caused, with how much of it the order's refunds take back in all."""

    grant_id: str
    task_id: str
    asset: str
    points: int
    completion: int
    expires_at: datetime | None
    available_at: datetime | None
    clawed_total: int


@dataclass(frozen=True)
class Settlement:
    """An order, its refunds and the cumulative clawback of each grant it caused. The
    response schemas (OrderSettlement, OrderOut) read it as it is."""

    order: Order
    refunds: list[Refund]
    grants: list[SettledGrant]
    refunded_cents: int
    clawbacks: list[Clawback]

    @property
    def order_no(self) -> str:
        return self.order.order_no

    @property
    def paid_cents(self) -> int:
        return self.order.paid_cents

    @property
    def source(self) -> str:
        return self.order.source

    @property
    def user_id(self) -> str:
        return self.order.user_id

    @property
    def created_at(self) -> datetime:
        return self.order.created_at


async def settle(
    session: AsyncSession, order_ids: Sequence[str], *, lock: bool
) -> dict[str, Settlement]:
    """What the known orders among `order_ids` take back from their grants (all grants their
    behavior caused for the same user: ratio, bonus and extra rewards alike)."""
    found = await repo.orders_by_id(session, order_ids, for_update=lock)
    ids = list(found)
    refunds = await repo.refunds_of(session, ids)
    caused = await repo.grants_caused_by(session, ids)
    settled = {}
    for order_id, order in found.items():
        amounts = [r.amount_cents for r in refunds[order_id]]
        own = [g for g in caused[order_id] if g.user_id == order.user_id]
        taken = clawbacks(
            [OrderGrant(g.grant_id, g.asset, g.points) for g in own], order.paid_cents, amounts
        )
        settled[order_id] = Settlement(
            order=order,
            refunds=refunds[order_id],
            grants=_settled_grants(own, taken),
            refunded_cents=refunded_total(order.paid_cents, amounts),
            clawbacks=taken,
        )
    return settled


def _settled_grants(grants: list[Grant], taken: list[Clawback]) -> list[SettledGrant]:
    clawed = {c.grant_id: c.clawed_total for c in taken}
    return [
        SettledGrant(
            grant_id=g.grant_id,
            task_id=g.task_id,
            asset=g.asset,
            points=g.points,
            completion=g.completion,
            expires_at=g.expires_at,
            available_at=g.available_at,
            clawed_total=clawed.get(g.grant_id, 0),
        )
        for g in grants
    ]


async def emit_clawbacks(
    session: AsyncSession,
    settlements: Sequence[Settlement],
    causes: dict[str, RefundCause],
) -> None:
    """Put one ClawbackCommand per clawed grant in the outbox (rewards.grants, by user).

    The totals are cumulative and the ids follow from them, so emitting a settlement again
    emits duplicates the ledger ignores, never a second reversal."""
    outgoing: list[OutgoingEvent] = []
    for s in settlements:
        order = s.order
        cause = causes.get(order.order_behavior_id) or RefundCause(
            f"refund:{order.order_no}:{s.refunds[-1].refund_no}" if s.refunds else order.order_no,
            datetime.now(UTC),
        )
        reason = (
            f"order {order.order_no} refunded {yuan(s.refunded_cents)} "
            f"of {yuan(order.paid_cents)} yuan"
        )
        outgoing += clawback_events(
            order.user_id, s.clawbacks, cause.reference, reason, cause.occurred_at
        )
    await add_to_outbox(session, messaging.outbox, outgoing)


async def refund_order(
    session: AsyncSession,
    source: str,
    order_no: str,
    refund_no: str,
    amount_cents: int | None,
) -> tuple[Settlement, bool]:
    """Record one refund of a known order and take back its share of the order's grants.

    Returns the order's settlement and whether the refund is new (a refund number seen
    before changes nothing). Without an amount the refund is whatever is left of the order.
    """
    order_id = order_behavior_id(source, order_no)
    order = (await repo.orders_by_id(session, [order_id], for_update=True)).get(order_id)
    if order is None:
        raise NotFound("order", order_no)
    earlier = (await repo.refunds_of(session, [order_id]))[order_id]
    if any(r.refund_no == refund_no for r in earlier):
        REFUNDS.labels("duplicate").inc()
        return (await settle(session, [order_id], lock=False))[order_id], False
    left = order.paid_cents - refunded_total(order.paid_cents, [r.amount_cents for r in earlier])
    amount = left if amount_cents is None else amount_cents
    if amount > left:
        raise InvalidInput(
            f"a refund of {yuan(amount)} yuan is more than the {yuan(left)} yuan left "
            f"to refund of order {order_no}"
        )
    await repo.insert_refunds(
        session,
        [
            {
                "order_behavior_id": order_id,
                "refund_no": refund_no,
                "user_id": order.user_id,
                "amount_cents": amount,
            }
        ],
    )
    REFUNDS.labels("applied").inc()
    settled = (await settle(session, [order_id], lock=False))[order_id]
    cause = RefundCause(f"refund:{order_no}:{refund_no}", datetime.now(UTC))
    await emit_clawbacks(session, [settled], {order_id: cause})
    return settled, True
