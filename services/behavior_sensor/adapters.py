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
    """The order system's own message (camelCase, amounts in yuan as text, epoch-ms times)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    order_no: str = Field(alias="orderNo", min_length=1, max_length=128)
    buyer_id: str = Field(alias="buyerId", min_length=1, max_length=64)
    order_status: str = Field(alias="orderStatus")
    pay_amount: Decimal = Field(alias="payAmount")
    currency: str = Field("CNY", max_length=8)
    paid_time: datetime | None = Field(None, alias="paidTime")
    shop_id: str | None = Field(None, alias="shopId")
    items: list[dict[str, Any]] = Field(default_factory=list)
    refund_no: str | None = Field(None, alias="refundNo", min_length=1, max_length=64)
    refund_amount: Decimal | None = Field(None, alias="refundAmount")
    refund_time: datetime | None = Field(None, alias="refundTime")

    @field_validator("pay_amount", "refund_amount", mode="before")
    @classmethod
    def _decimal(cls, value: Any) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, float):
            value = repr(value)
        try:
            amount = Decimal(str(value))
        except InvalidOperation as exc:
            raise ValueError("must be a decimal amount in yuan") from exc
        if not amount.is_finite() or amount < 0:
            raise ValueError("must be a non-negative amount")
        return amount

    @field_validator("paid_time", "refund_time", mode="before")
    @classmethod
    def _epoch_ms(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value / 1000, UTC)
        return value


def _cents(yuan: Decimal) -> int:
    return int((yuan * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _aware(value: datetime | None, status: str, field: str) -> datetime:
    if value is None:
        raise PoisonMessage(f"a {status} order message needs {field}")
    if value.tzinfo is None:
        raise PoisonMessage(f"{field} must carry a timezone (or be epoch milliseconds)")
    return value


REFUND_STATUSES = ("REFUNDED", "PARTIALLY_REFUNDED")


class OrderPaidAdapter:
    """upstream.orders: the order system's status changes. A PAID one becomes `order_paid`;
    a (partial) refund becomes `order_refunded`, which lets task_progress take back what the
    order earned. Every other status is not a behavior."""

    topic = UPSTREAM_ORDERS
    source = "order_system"

    def to_envelopes(self, raw: bytes) -> list[BehaviorEnvelope]:
        body = _json_object(raw)
        try:
            order = OrderMessage.model_validate(body)
        except ValidationError as exc:
            raise PoisonMessage(f"invalid order message: {_errors(exc)}") from exc
        status = order.order_status.upper()
        if status == "PAID":
            return [self._paid(order)]
        if status in REFUND_STATUSES:
            return [self._refunded(order)]
        return []  # created, cancelled, ...: not a behavior we reward

    def _paid(self, order: OrderMessage) -> BehaviorEnvelope:
        attributes: dict[str, Any] = {
            "amount_cents": _cents(order.pay_amount),
            "currency": order.currency,
            "item_count": len(order.items),
        }
        if order.shop_id:
            attributes["shop_id"] = order.shop_id
        return BehaviorEnvelope(
            event_id=order.order_no,
            source=self.source,
            user_id=order.buyer_id,
            action="order_paid",
            occurred_at=_aware(order.paid_time, "PAID", "paidTime"),
            attributes=attributes,
        )

    def _refunded(self, order: OrderMessage) -> BehaviorEnvelope:
        refunded_at = _aware(order.refund_time, order.order_status.upper(), "refundTime")
        refund = order.pay_amount if order.refund_amount is None else order.refund_amount
        if refund > order.pay_amount:
            raise PoisonMessage(
                f"refundAmount {refund} is more than the order's payAmount {order.pay_amount}"
            )
        refund_no = order.refund_no or "full"
        try:
            return BehaviorEnvelope(
                event_id=f"{order.order_no}:refund:{refund_no}",  # one behavior per refund
                source=self.source,
                user_id=order.buyer_id,
                action="order_refunded",
                occurred_at=refunded_at,
                attributes={
                    "order_no": order.order_no,
                    "refund_no": refund_no,
                    "refund_amount_cents": _cents(refund),
                },
            )
        except ValidationError as exc:  # e.g. orderNo and refundNo too long together
            raise PoisonMessage(f"invalid refund message: {_errors(exc)}") from exc


ADAPTERS: dict[str, Adapter] = {a.topic: a for a in (EnvelopeAdapter(), OrderPaidAdapter())}
