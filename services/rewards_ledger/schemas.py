from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

KEY = Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")


class DebitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: int = Field(gt=0, le=1_000_000_000)
    idempotency_key: str = KEY
    reason: str = Field("", max_length=500)
    reference: str | None = Field(None, max_length=255)


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
    expires_at: AwareDatetime | None = None
    validity_days: int | None = Field(None, ge=1, le=36500)

    @model_validator(mode="after")
    def _one_expiry(self) -> CreditRequest:
        if self.expires_at is not None and self.validity_days is not None:
            raise ValueError("give expires_at or validity_days, not both")
        return self


class RefundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    debit_idempotency_key: str = KEY
    reason: str = Field("", max_length=500)
    reference: str | None = Field(None, max_length=255)


class Allocation(BaseModel):
    lot_id: str
    points: int
    expires_at: datetime | None


class DebitOut(BaseModel):
    entry_id: int
    user_id: str
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


class RefundAllocation(Allocation):
    expired: bool


class RefundOut(BaseModel):
    status: Literal["refunded", "voided"]
    user_id: str
    debit_idempotency_key: str
    entry_id: int | None
    points: int
    expired_points: int
    balance_after: int
    created_at: datetime
    allocations: list[RefundAllocation]


class EntryOut(BaseModel):
    id: int
    kind: str
    amount: int
    balance_after: int
    idempotency_key: str
    reference: str | None
    reason: str
    lot_id: str | None
    created_at: datetime
    allocations: list[Allocation] = []


class EntriesPage(BaseModel):
    items: list[EntryOut]
    next_before_id: int | None


class ExpiringDay(BaseModel):
    date: str
    expires_at: datetime
    points: int


class AccountOut(BaseModel):
    user_id: str
    balance: int
    expiring_within_7_days: int
    expiring_within_30_days: int
    expiring_soon: list[ExpiringDay]
    updated_at: datetime | None


class Violation(BaseModel):
    check: str
    rows: list[dict]


class ReconciliationOut(BaseModel):
    ok: bool
    accounts_checked: int
    checks: list[str]
    violations: list[Violation]
    checked_at: datetime
