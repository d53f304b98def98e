"""The rows the ledger's repository reads back whole: frozen dataclasses, read by attribute
(the response schemas read them too, with from_attributes)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

RowT = TypeVar("RowT", bound="DataclassInstance")


def row_as(cls: type[RowT], row: Any) -> RowT:
    """`row` (a SQLAlchemy row with at least the dataclass's columns) as a `cls`."""
    values = row._mapping
    return cls(**{f.name: values[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class AssetRow:
    code: str
    name: str
    spendable: bool
    expires: bool
    default_validity_days: int | None
    created_at: datetime
    default_validity: dict[str, Any] | None  # {mode, n} (shared.validity.Validity)


@dataclass(frozen=True)
class AccountRow:
    user_id: str
    asset: str
    balance: int
    pending: int
    debt: int
    held: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class JournalEntry:
    id: int
    user_id: str
    asset: str
    kind: str
    amount: int
    balance_after: int
    pending_delta: int
    debt_delta: int
    held_delta: int
    idempotency_key: str
    lot_id: str | None
    reference: str | None
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class DebitVoid:
    idempotency_key: str
    asset: str
    user_id: str
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class DueLot:
    """An active lot with points left whose expiry has passed (locked)."""

    id: str
    user_id: str
    asset: str
    remaining: int
    expires_at: datetime
    created_at: datetime


@dataclass(frozen=True)
class ReleasableLot:
    """A pending lot whose available_at has come (locked)."""

    id: str
    user_id: str
    asset: str
    remaining: int
    available_at: datetime


@dataclass(frozen=True)
class PendingLot:
    id: str
    remaining: int
    available_at: datetime | None
    origin_ref: str


@dataclass(frozen=True)
class ExpiryDay:
    """Points of an account expiring on one day, and the first instant they do."""

    day: datetime
    points: int
    first: datetime


@dataclass(frozen=True)
class Clawback:
    lot_id: str
    grant_id: str
    user_id: str
    asset: str
    target: int
    applied: int
    reference: str
    reason: str
    updated_at: datetime


@dataclass(frozen=True)
class LotExtension:
    """A lot an extension pushed back, with what is left in it."""

    lot_id: str
    journal_entry_id: int
    old_expires_at: datetime
    new_expires_at: datetime
    created_at: datetime
    remaining: int


@dataclass(frozen=True)
class AssetTotals:
    """What every account of one asset holds together, and how many hold any of it."""

    outstanding: int
    pending: int
    debt: int
    held: int
    holders: int


@dataclass(frozen=True)
class KindFlow:
    """What the journal entries of one kind moved, summed."""

    amount: int
    pending: int
    debt: int


@dataclass(frozen=True)
class HoldRow:
    id: str
    user_id: str
    asset: str
    points: int
    idempotency_key: str
    reference: str | None
    status: str  # open | captured | voided
    expires_at: datetime
    captured: int
    settle_key: str | None
    closed_by: str | None  # capture | void | deadline
    entry_id: int
    settle_entry_id: int | None
    created_at: datetime
    closed_at: datetime | None
