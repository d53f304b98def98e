"""The ledger's refusals: the stable error codes its use cases raise."""

from __future__ import annotations

from shared.errors import DomainError

# --- refusals ----------------------------------------------------------------------------------


class InsufficientPoints(DomainError):
    def __init__(self, balance: int, requested: int) -> None:
        super().__init__(
            "insufficient_points",
            f"balance {balance} is less than the {requested} points requested",
            balance=balance,
            requested=requested,
        )


class IdempotencyKeyReused(DomainError):
    def __init__(self, key: str, kind: str) -> None:
        super().__init__(
            "idempotency_key_reused",
            f"idempotency key {key!r} was already used for a different {kind}",
        )


class DebitVoided(DomainError):
    def __init__(self, key: str) -> None:
        super().__init__(
            "debit_voided", f"debit {key!r} was cancelled before it arrived; use a new key"
        )


class AssetNotSpendable(DomainError):
    def __init__(self, asset: str) -> None:
        super().__init__(
            "asset_not_spendable", f"{asset} cannot be spent (it only counts)", asset=asset
        )


class NothingToExtend(DomainError):
    def __init__(self, window_days: int) -> None:
        super().__init__(
            "nothing_to_extend",
            f"no points expire within {window_days} days that were not extended before",
            window_days=window_days,
        )


class InvalidTransition(DomainError):
    def __init__(self, hold_id: str, status: str, action: str) -> None:
        super().__init__(
            "invalid_transition",
            f"hold {hold_id} is {status}: it cannot be {action}d",
            hold_id=hold_id,
            hold_status=status,
        )


class HoldExpired(DomainError):
    def __init__(self, hold_id: str, deadline: str) -> None:
        super().__init__(
            "hold_expired",
            f"hold {hold_id} passed its deadline ({deadline}): it can only be voided",
            hold_id=hold_id,
        )


class CaptureExceedsHold(DomainError):
    def __init__(self, held: int, requested: int) -> None:
        super().__init__(
            "capture_exceeds_hold",
            f"the hold reserves {held} points; {requested} cannot be captured",
            held=held,
            requested=requested,
        )
