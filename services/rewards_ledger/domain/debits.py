"""Idempotency and debits: a key used again is a replay or a refusal; how a batch of debits is
judged."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from services.rewards_ledger.domain.keys import DEFAULT_ASSET, Account, debit_journal_key
from services.rewards_ledger.domain.lots import SpendableLot, after_taking, allocate
from services.rewards_ledger.domain.refusals import (
    DebitVoided,
    IdempotencyKeyReused,
    InsufficientPoints,
)
from shared.errors import DomainError

# --- idempotency -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyUse:
    """What a journal key was (or is being) used for. Reason and reference are not part of it:
    a repeat that differs only in those replays the original."""

    kind: str  # the journal entry kind: debit, adjustment, ...
    user_id: str
    points: int  # the size of the movement, always positive


def key_reuse(key: str, previous: KeyUse, attempt: KeyUse) -> IdempotencyKeyReused | None:
    """A key used again: None when `attempt` is a replay of `previous` (same kind, user and
    points), else the refusal (409 idempotency_key_reused)."""
    if previous == attempt:
        return None
    return IdempotencyKeyReused(key, previous.kind)


# --- debits ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DebitCommand:
    user_id: str
    points: int
    idempotency_key: str  # the caller's key; the journal stores it as "debit:<key>"
    reason: str = ""
    reference: str | None = None
    asset: str = DEFAULT_ASSET

    @property
    def journal_key(self) -> str:
        return debit_journal_key(self.idempotency_key)

    @property
    def account(self) -> Account:
        return (self.user_id, self.asset)


@dataclass(frozen=True)
class NewDebit:
    """Debit the account: balance_after is what the account has available once done (the
    balances plan_debits judges are the available ones: open holds' points left out)."""

    balance_after: int
    taken: list[tuple[str, int]]  # (lot_id, points), in spending order


@dataclass(frozen=True)
class ReplayStored:
    """The key's debit is in the journal from before: answer it (not created)."""


@dataclass(frozen=True)
class ReplayInBatch:
    """An earlier command of the same batch made this debit: answer it (not created)."""

    index: int


DebitVerdict = NewDebit | ReplayStored | ReplayInBatch | DomainError


def plan_debits(
    commands: Sequence[DebitCommand],
    used: Mapping[str, KeyUse],
    voided: Collection[str],
    balances: Mapping[str, int],
    lots: Mapping[str, Sequence[SpendableLot]],
) -> list[DebitVerdict]:
    """Judge a batch of debits of one asset in order, each as if it came alone after the ones
    before it.

    `used`: the journal keys already in the journal, with what they were used for; `voided`:
    the journal keys a refund voided before their debit arrived; `balances` and `lots`: the
    spendable balance and lots of each account (an account that does not exist has neither).
    A key used before (in the journal or earlier in the batch) replays that debit when the
    parameters match and is refused as idempotency_key_reused otherwise; a voided key is
    refused (debit_voided); a debit larger than the balance is refused (insufficient_points);
    anything else is a new debit, earliest-expiring lots first. A refused command changes
    nothing for the ones after it. The arguments are not changed.
    """
    balance_now = dict(balances)
    lots_now: dict[str, Sequence[SpendableLot]] = {}
    debited: dict[str, int] = {}  # journal key -> index of the command that debits it
    verdicts: list[DebitVerdict] = []
    for i, c in enumerate(commands):
        key = c.journal_key
        previous = used.get(key)
        if previous is None and key in debited:
            first = commands[debited[key]]
            previous = KeyUse("debit", first.user_id, first.points)
        if previous is not None:
            refusal = key_reuse(key, previous, KeyUse("debit", c.user_id, c.points))
            if refusal is not None:
                verdicts.append(refusal)
            elif key in used:
                verdicts.append(ReplayStored())
            else:
                verdicts.append(ReplayInBatch(debited[key]))
            continue
        if key in voided:
            verdicts.append(DebitVoided(c.idempotency_key))
            continue
        balance = balance_now.get(c.user_id, 0)
        if balance < c.points:
            verdicts.append(InsufficientPoints(balance, c.points))
            continue
        user_lots = lots_now[c.user_id] if c.user_id in lots_now else lots.get(c.user_id, ())
        taken = allocate(user_lots, c.points)
        lots_now[c.user_id] = after_taking(user_lots, taken)
        balance_now[c.user_id] = balance - c.points
        debited[key] = i
        verdicts.append(NewDebit(balance - c.points, taken))
    return verdicts
