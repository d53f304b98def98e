from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.events import ASSET_PATTERN, DEFAULT_ASSET
from shared.instants import Instant
from shared.validity import Validity

KEY = Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
ASSET = Field(DEFAULT_ASSET, pattern=ASSET_PATTERN, description="asset code (default points)")


class AssetIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    code: str = Field(pattern=ASSET_PATTERN)
    name: str = Field(min_length=1, max_length=100)
    spendable: bool
    expires: bool
    default_validity_days: int | None = Field(
        None, ge=1, le=36500, description="the same as default_validity {mode: days, n}"
    )
    default_validity: Validity | None = Field(
        None,
        description="how long its lots stay valid when a grant says nothing: days, or until "
        "the end of the Nth month (months_end) or year (year_end) after earning, in the "
        "business timezone; else points' default",
    )

    @model_validator(mode="after")
    def _one_validity(self) -> AssetIn:
        days, validity = self.default_validity_days, self.default_validity
        if days is not None and validity is not None and validity != Validity.of_days(days):
            raise ValueError("give default_validity or default_validity_days, not both")
        # one record: the days field mirrors a validity in days (null for the other modes)
        if validity is None and days is not None:
            self.default_validity = Validity.of_days(days)
        elif validity is not None:
            self.default_validity_days = validity.days
        return self


class AssetOut(AssetIn):
    # Read from the repository's AssetRow.
    model_config = ConfigDict(extra="ignore", from_attributes=True)

    created_at: datetime


class AssetList(BaseModel):
    items: list[AssetOut]


class DebitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: int = Field(gt=0, le=1_000_000_000)
    idempotency_key: str = KEY
    reason: str = Field("", max_length=500)
    reference: str | None = Field(None, max_length=255)
    asset: str = ASSET


class BatchDebit(DebitRequest):
    user_id: str = Field(min_length=1, max_length=64)


class DebitBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    debits: list[BatchDebit] = Field(min_length=1, max_length=1000)


class CreditRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: int = Field(gt=0, le=1_000_000_000)
    idempotency_key: str = KEY
    reason: str = Field(min_length=1, max_length=500)
    reference: str | None = Field(None, max_length=255)
    expires_at: Instant | None = None
    validity_days: int | None = Field(None, ge=1, le=36500)
    validity: Validity | None = Field(
        None, description="days, or until the end of the Nth month / year from now"
    )
    asset: str = ASSET

    @model_validator(mode="after")
    def _one_expiry(self) -> CreditRequest:
        given = [self.expires_at, self.validity_days, self.validity]
        if sum(v is not None for v in given) > 1:
            raise ValueError("give one of expires_at, validity_days and validity")
        return self


class RefundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    debit_idempotency_key: str = KEY
    reason: str = Field("", max_length=500)
    reference: str | None = Field(None, max_length=255)
    asset: str = ASSET


class ExtensionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(ge=1, le=3650, description="how many days to push the expiry back")
    idempotency_key: str = KEY
    asset: str = ASSET


class Allocation(BaseModel):
    lot_id: str
    points: int
    expires_at: datetime | None


class DebitOut(BaseModel):
    entry_id: int
    user_id: str
    asset: str
    points: int
    balance_after: int
    idempotency_key: str
    reference: str | None
    created_at: datetime
    allocations: list[Allocation]


class DebitBatchResult(BaseModel):
    """One debit of a batch: `status` is what the single debit call would have answered
    (201 debited, 200 replayed, 4xx refused); `debit` on success, `error`/`message` otherwise."""

    status: int
    debit: DebitOut | None = None
    error: str | None = None
    message: str | None = None
    details: dict = {}


class DebitBatchOut(BaseModel):
    results: list[DebitBatchResult]


class HoldRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=64)
    asset: str = ASSET
    points: int = Field(gt=0, le=1_000_000_000)
    idempotency_key: str = KEY
    expires_in_s: int = Field(
        ge=1,
        le=90 * 86400,
        description="seconds until the hold is voided unless captured (at most "
        "JIFEN_HOLD_MAX_EXPIRES_IN_S)",
    )
    reference: str | None = Field(None, max_length=255, description="e.g. the order number")


class CaptureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: int | None = Field(
        None, gt=0, le=1_000_000_000, description="what to take; the whole hold when absent"
    )
    idempotency_key: str = KEY


class VoidRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    idempotency_key: str = KEY


class HeldLot(Allocation):
    """Points a hold reserved of one lot."""


class HoldOut(BaseModel):
    id: str
    user_id: str
    asset: str
    points: int = Field(description="reserved when placed")
    status: Literal["open", "captured", "voided"]
    captured: int = Field(description="debited by the capture (0 unless captured)")
    released: int = Field(description="given back by the capture or void (0 while open)")
    expired_points: int = Field(
        description="of the released points, those whose lot had expired meanwhile: they "
        "expired at once"
    )
    idempotency_key: str
    reference: str | None
    expires_at: datetime = Field(description="the deadline: voided then unless captured")
    created_at: datetime
    closed_at: datetime | None
    closed_by: Literal["capture", "void", "deadline"] | None
    entry_id: int = Field(description="the journal entry that placed it")
    settle_entry_id: int | None = Field(
        description="the journal entry that closed it: the capture's debit, or the void"
    )
    lots: list[HeldLot]


class HoldList(BaseModel):
    items: list[HoldOut]


class RefundAllocation(Allocation):
    expired: bool


class RefundOut(BaseModel):
    status: Literal["refunded", "voided"]
    user_id: str
    asset: str
    debit_idempotency_key: str
    entry_id: int | None
    points: int
    expired_points: int
    balance_after: int
    created_at: datetime
    allocations: list[RefundAllocation]


class ExtendedLot(BaseModel):
    lot_id: str
    old_expires_at: datetime
    new_expires_at: datetime


class EntryOut(BaseModel):
    id: int
    asset: str
    kind: str
    amount: int
    balance_after: int = Field(description="the balance after the entry, held points included")
    pending_delta: int = 0
    debt_delta: int = 0
    held_delta: int = Field(0, description="points reserved (+) or let go (-) by a hold")
    idempotency_key: str
    reference: str | None
    reason: str
    lot_id: str | None
    created_at: datetime
    allocations: list[Allocation] = []
    extended_lots: list[ExtendedLot] = []


class EntriesPage(BaseModel):
    items: list[EntryOut]
    next_before_id: int | None


class ExpiringDay(BaseModel):
    date: str
    expires_at: datetime
    points: int


class PendingLot(BaseModel):
    lot_id: str
    points: int
    available_at: datetime | None


class AccountOut(BaseModel):
    user_id: str
    asset: str
    balance: int = Field(
        description="available: spendable when the asset is (points open holds reserve are not)"
    )
    held: int = Field(
        0, description="reserved by open holds (积分抵现): captured or released later"
    )
    pending: int = Field(description="credited, available at each pending lot's available_at")
    debt: int = Field(description="clawed back after it was spent; later credits repay it first")
    expiring_within_7_days: int
    expiring_within_30_days: int
    expiring_soon: list[ExpiringDay]
    pending_lots: list[PendingLot]
    updated_at: datetime | None


class AssetBalance(BaseModel):
    asset: str
    name: str
    spendable: bool
    balance: int = Field(description="available (points open holds reserve are not)")
    held: int = 0
    pending: int
    debt: int


class BalancesOut(BaseModel):
    user_id: str
    items: list[AssetBalance]


class ExtensionOut(BaseModel):
    entry_id: int
    user_id: str
    asset: str
    days: int
    fee: int
    points_extended: int
    balance_after: int
    created_at: datetime
    lots: list[ExtendedLot]
    fee_allocations: list[Allocation]


class MonthExpiry(BaseModel):
    month: str
    points: int


class Flows(BaseModel):
    since: datetime
    issued: int = Field(description="credited, pending credits included")
    released: int
    spent: int = Field(description="debits and extension fees, less refunds")
    expired: int
    clawed_back: int = Field(description="cancelled pending, taken back, and recorded as debt")
    debt_repaid: int


class LiabilityOut(BaseModel):
    asset: str
    as_of: datetime
    outstanding: int = Field(description="balances of all accounts, held points included")
    held: int = Field(0, description="of which open holds reserve")
    pending: int
    debt: int
    holders: int = Field(description="accounts with a balance")
    expiring_by_month: list[MonthExpiry]
    last_30_days: Flows


class Violation(BaseModel):
    check: str
    rows: list[dict]


class ReconciliationOut(BaseModel):
    ok: bool
    accounts_checked: int
    checks: list[str]
    violations: list[Violation]
    checked_at: datetime


# --- reports the notifier and insights read ----------------------------------------------------


class ExpiringLot(BaseModel):
    user_id: str
    expires_at: datetime
    points: int = Field(description="points still in the user's active lots expiring then")


class ExpiringCursor(BaseModel):
    user_id: str
    expires_at: datetime


class ExpiringPage(BaseModel):
    items: list[ExpiringLot]
    next: ExpiringCursor | None = Field(
        None, description="pass as after_user / after_expires_at for the next page"
    )


class Holder(BaseModel):
    user_id: str
    balance: int


class HoldersPage(BaseModel):
    items: list[Holder]
    next: str | None = Field(None, description="pass as `after` for the next page")
