from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from shared.instants import Instant

KEY = Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
ItemType = Literal["physical", "coupon", "vip", "virtual"]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class PerUserLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)

    period: Literal["day", "month", "lifetime"]
    quantity: int = Field(ge=1, le=100_000)


class _ItemFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="after")
    def _window(self) -> _ItemFields:
        starts, ends = getattr(self, "starts_at", None), getattr(self, "ends_at", None)
        if starts is not None and ends is not None and ends <= starts:
            raise ValueError("ends_at must be after starts_at")
        return self


class ItemCreate(_ItemFields):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=5000)
    image_url: str | None = Field(None, max_length=2000, pattern=r"^https?://\S+$")
    category: str = Field(min_length=1, max_length=64)
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    type: ItemType
    points_price: int = Field(ge=1, le=1_000_000_000)
    stock: int = Field(ge=0, le=1_000_000_000)
    per_user_limit: PerUserLimit | None = None
    vip_days: int | None = Field(None, ge=1, le=3650)
    coupon_value_cents: int | None = Field(None, ge=1, le=100_000_000)
    min_tier: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9_\-]{0,31}$",
        description="lowest member tier (engagement's ladder) that may redeem the item",
    )
    active: bool = True
    starts_at: Instant | None = None
    ends_at: Instant | None = None

    @model_validator(mode="after")
    def _type_fields(self) -> ItemCreate:
        if self.type == "vip" and self.vip_days is None:
            raise ValueError("a vip item needs vip_days")
        if self.type != "vip" and self.vip_days is not None:
            raise ValueError("vip_days applies only to vip items")
        if self.type != "coupon" and self.coupon_value_cents is not None:
            raise ValueError("coupon_value_cents applies only to coupon items")
        return self


class ItemPatch(_ItemFields):
    """Any subset of an item's fields; `stock` sets the units on the shelf."""

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=5000)
    image_url: str | None = Field(None, max_length=2000, pattern=r"^https?://\S+$")
    category: str | None = Field(None, min_length=1, max_length=64)
    tags: list[Tag] | None = Field(None, max_length=20)
    points_price: int | None = Field(None, ge=1, le=1_000_000_000)
    stock: int | None = Field(None, ge=0, le=1_000_000_000)
    per_user_limit: PerUserLimit | None = None
    vip_days: int | None = Field(None, ge=1, le=3650)
    coupon_value_cents: int | None = Field(None, ge=1, le=100_000_000)
    min_tier: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9_\-]{0,31}$",
        description="lowest member tier (engagement's ladder) that may redeem the item",
    )
    active: bool | None = None
    starts_at: Instant | None = None
    ends_at: Instant | None = None

    @model_validator(mode="after")
    def _not_null(self) -> ItemPatch:
        nullable = {
            "image_url",
            "per_user_limit",
            "starts_at",
            "ends_at",
            "coupon_value_cents",
            "min_tier",
        }
        for name in self.model_fields_set - nullable:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        return self


class ItemOut(BaseModel):
    """Read from a `repository.Item` (`ItemOut.model_validate(item)`)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str
    image_url: str | None
    category: str
    tags: list[str]
    type: str
    points_price: int
    stock: int
    stock_total: int
    per_user_limit: PerUserLimit | None
    vip_days: int | None
    coupon_value_cents: int | None
    min_tier: str | None = None
    active: bool
    available: bool
    starts_at: datetime | None
    ends_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ItemsPage(BaseModel):
    items: list[ItemOut]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class RedemptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    user_id: str = Field(min_length=1, max_length=64)
    item_id: str = Field(min_length=1, max_length=36)
    quantity: int = Field(1, ge=1, le=100)
    idempotency_key: str = KEY
    shipping_address: str | None = Field(None, min_length=1, max_length=500)


class Failure(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    message: str | None


class Fulfilment(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    status: str | None
    shipping_address: str | None
    carrier: str | None
    tracking_number: str | None


class RedemptionOut(BaseModel):
    """Read from a `repository.Redemption` (`RedemptionOut.model_validate(row)`)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    user_id: str
    idempotency_key: str
    item_id: str
    item_name: str
    item_type: str
    quantity: int
    points: int
    status: Literal["pending", "completed", "failed", "cancelling", "cancelled"]
    failure: Failure | None
    compensated: bool
    balance_after: int | None
    ledger_entry_id: int | None
    refund_entry_id: int | None
    reward: dict[str, Any] | None
    fulfilment: Fulfilment | None
    cancel_reason: str | None
    cancelled_by: str | None
    created_at: datetime
    updated_at: datetime


class RedemptionsPage(BaseModel):
    items: list[RedemptionOut]
    limit: int
    offset: int
    next_offset: int | None


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=500)


class ShipRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    carrier: str = Field(min_length=1, max_length=64)
    tracking_number: str = Field(min_length=1, max_length=128)


class DeliverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuickOption(BaseModel):
    item: ItemOut
    balance_after: int
    source: Literal["recommender", "catalog"] = Field(
        description="chosen by the recommender, or from the catalog to fill the options"
    )
    warning: str | None = Field(
        description="set when the points expiring within 7 days cover the price"
    )


class EarnTask(BaseModel):
    """A task rule that would earn the points still needed, with how long it takes alone."""

    task_id: str
    name: str
    action: str
    reward_points: int
    completions: int = Field(description="completions needed to earn points_needed")
    actions: int = Field(description="qualifying actions those completions take")
    days: int = Field(description="days past today the rule's per-period cap makes them take")


class QuickOptionsOut(BaseModel):
    user_id: str
    balance: int
    expiring_within_7_days: int
    first_expiry_at: datetime | None
    recommender: str | None = Field(
        description="the recommender that chose the items (the user's experiment arm), "
        "null when it did not answer"
    )
    options: list[QuickOption]
    points_needed: int = Field(
        description="with no option: points to earn before there is one (0 otherwise)"
    )
    tasks: list[EarnTask] = Field(description="with no option: the fastest ways to earn them")


class ReconciliationOut(BaseModel):
    ok: bool
    redemptions: dict[str, int]
    checks: list[str]
    violations: list[dict[str, Any]]
    checked_at: datetime
