"""Journal keys: every entry's idempotency key, derived from what caused it, and the lot ids
they make."""

from __future__ import annotations

from shared.events import stable_id

# --- journal keys ------------------------------------------------------------------------------

DEFAULT_ASSET = "points"
Account = tuple[str, str]  # (user_id, asset): every balance, lot and key belongs to one


def lot_id_for(journal_key: str, asset: str) -> str:
    """The lot a credit creates: one per (journal key, asset). Points keep the id they always
    had, so a clawback finds a grant's lot from the grant id alone."""
    if asset == DEFAULT_ASSET:
        return stable_id("lot", journal_key)
    return stable_id("lot", asset, journal_key)


def grant_journal_key(grant_id: str) -> str:
    return f"grant:{grant_id}"


def release_journal_key(lot_id: str) -> str:
    """The journal key of a pending lot becoming available."""
    return f"release:{lot_id}"


def repay_journal_key(trigger_key: str) -> str:
    """The journal key of the debt repaid from what the movement `trigger_key` (a credit, a
    release, a refund) made available."""
    return f"repay:{trigger_key}"


def clawback_journal_key(lot_id: str, target: int) -> str:
    """The journal key of the clawback that brought a lot's reversed total to `target`."""
    return f"clawback:{lot_id}:{target}"


def extension_journal_key(key: str) -> str:
    return f"extension:{key}"


def debit_journal_key(key: str) -> str:
    """The journal key of the debit made with the caller's idempotency key."""
    return f"debit:{key}"


def refund_journal_key(key: str) -> str:
    """The journal key of the refund of the debit made with the caller's idempotency key."""
    return f"refund:{key}"


def expiry_journal_key(lot_id: str) -> str:
    """The journal key of a lot's expiry."""
    return f"expire:{lot_id}"


def refund_expiry_journal_key(lot_id: str, refund_key: str) -> str:
    """The journal key of refunded points that expire at once because their lot had expired
    (`refund_key`: the refund's journal key)."""
    return f"expire:{lot_id}:{refund_key}"


def hold_id_for(key: str, asset: str) -> str:
    """The hold placed with the caller's idempotency key: one per (key, asset)."""
    return stable_id("hold", asset, key)


def hold_journal_key(key: str) -> str:
    """The journal key of a hold placed with the caller's idempotency key."""
    return f"hold:{key}"


def hold_void_journal_key(hold_id: str) -> str:
    """The journal key of a hold's release in full (at most one per hold)."""
    return f"hold_void:{hold_id}"


def released_expiry_journal_key(lot_id: str, settle_key: str) -> str:
    """The journal key of held points that expire at once as a hold lets them go, because
    their lot expired while they were held (`settle_key`: the capture's or void's key)."""
    return f"expire:{lot_id}:{settle_key}"
