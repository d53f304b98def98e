"""Adapters turn each upstream's own message shape into behavior envelopes.

Adding a source: write a class with `topic` and `to_envelopes(value) -> list[BehaviorEnvelope]`
(raise PoisonMessage for a message that can never be understood; return [] for messages that
are valid but not behaviors worth sensing), then list it in ADAPTERS.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.events import UPSTREAM_EVENTS, UPSTREAM_ORDERS, BehaviorEnvelope
from shared.messaging import PoisonMessage


def _json_object(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PoisonMessage(f"not valid UTF-8 JSON: {exc}") from exc


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])


class Adapter(Protocol):
    topic: str

    def to_envelopes(self, raw: bytes) -> list[BehaviorEnvelope]: ...


class EnvelopeAdapter:
    """upstream.events carries the contract's envelope as is (or a list of them)."""

    topic = UPSTREAM_EVENTS

    def to_envelopes(self, raw: bytes) -> list[BehaviorEnvelope]:
        body = _json_object(raw)
        items = body if isinstance(body, list) else [body]
        try:
            return [BehaviorEnvelope.model_validate(item) for item in items]
        except ValidationError as exc:
            raise PoisonMessage(f"invalid behavior envelope: {_errors(exc)}") from exc


class OrderMessage(BaseModel):
    """The order system's own message (camelCase, amount in yuan as text, epoch-ms times)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    order_no: str = Field(alias="orderNo", min_length=1, max_length=128)
    buyer_id: str = Field(alias="buyerId", min_length=1, max_length=64)
    order_status: str = Field(alias="orderStatus")
    pay_amount: Decimal = Field(alias="payAmount")
    currency: str = Field("CNY", max_length=8)
    paid_time: datetime | None = Field(None, alias="paidTime")
    shop_id: str | None = Field(None, alias="shopId")
    items: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("pay_amount", mode="before")
    @classmethod
    def _decimal(cls, value: Any) -> Decimal:
        if isinstance(value, float):
            value = repr(value)
        try:
            amount = Decimal(str(value))
        except InvalidOperation as exc:
            raise ValueError("payAmount must be a decimal amount in yuan") from exc
        if not amount.is_finite() or amount < 0:
            raise ValueError("payAmount must be a non-negative amount")
        return amount

    @field_validator("paid_time", mode="before")
    @classmethod
    def _epoch_ms(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value / 1000, UTC)
        return value


class OrderPaidAdapter:
    """upstream.orders: the order system's status changes; a PAID one becomes `order_paid`."""

    topic = UPSTREAM_ORDERS
    source = "order_system"

    def to_envelopes(self, raw: bytes) -> list[BehaviorEnvelope]:
        body = _json_object(raw)
        try:
            order = OrderMessage.model_validate(body)
        except ValidationError as exc:
            raise PoisonMessage(f"invalid order message: {_errors(exc)}") from exc
        if order.order_status.upper() != "PAID":
            return []  # created, cancelled, ...: not a behavior we reward
        if order.paid_time is None:
            raise PoisonMessage("a PAID order message needs paidTime")
        if order.paid_time.tzinfo is None:
            raise PoisonMessage("paidTime must carry a timezone (or be epoch milliseconds)")
        cents = int((order.pay_amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        attributes: dict[str, Any] = {
            "amount_cents": cents,
            "currency": order.currency,
            "item_count": len(order.items),
        }
        if order.shop_id:
            attributes["shop_id"] = order.shop_id
        return [
            BehaviorEnvelope(
                event_id=order.order_no,
                source=self.source,
                user_id=order.buyer_id,
                action="order_paid",
                occurred_at=order.paid_time,
                attributes=attributes,
            )
        ]


ADAPTERS: dict[str, Adapter] = {a.topic: a for a in (EnvelopeAdapter(), OrderPaidAdapter())}
