"""Pure ledger rules: no I/O, no session. The use cases in service/ fetch the data, ask these
functions what to do, and write the answer. One module per area; callers import from `domain`.

- `keys`: every journal entry's idempotency key and the lot ids derived from them;
- `refusals`: the stable error codes the use cases raise;
- `lots`: spending order, allocation of a debit across lots, expiry dates, which lots are due,
  the balance after each journal entry of a batch;
- `debits`: a key used again is a replay or a refusal; how a batch of debits is judged;
- `refunds`: what a refund does (replay, void, refund) and where its points go; clawbacks
  with debt;
- `extensions`: paid extensions.
"""

from services.rewards_ledger.domain.debits import (
    DebitCommand,
    DebitVerdict,
    KeyUse,
    NewDebit,
    ReplayInBatch,
    ReplayStored,
    key_reuse,
    plan_debits,
)
from services.rewards_ledger.domain.extensions import (
    ExtendableLot,
    ExtensionPlan,
    extension_fee,
    plan_extension,
)
from services.rewards_ledger.domain.keys import (
    DEFAULT_ASSET,
    Account,
    clawback_journal_key,
    debit_journal_key,
    expiry_journal_key,
    extension_journal_key,
    grant_journal_key,
    lot_id_for,
    refund_expiry_journal_key,
    refund_journal_key,
    release_journal_key,
    repay_journal_key,
)
from services.rewards_ledger.domain.lots import (
    DueLot,
    SpendableLot,
    Totals,
    after_taking,
    allocate,
    expiry_for,
    expiry_moves,
    is_due,
    running_balances,
    spending_order,
    total_taken,
)
from services.rewards_ledger.domain.refunds import (
    ClawbackPlan,
    GrantedLot,
    RefundStep,
    Restoration,
    plan_clawback,
    refund_moves,
    refund_step,
    restore,
)
from services.rewards_ledger.domain.refusals import (
    AssetNotSpendable,
    DebitVoided,
    IdempotencyKeyReused,
    InsufficientPoints,
    NothingToExtend,
)

__all__ = [
    "DEFAULT_ASSET",
    "Account",
    "AssetNotSpendable",
    "ClawbackPlan",
    "DebitCommand",
    "DebitVerdict",
    "DebitVoided",
    "DueLot",
    "ExtendableLot",
    "ExtensionPlan",
    "GrantedLot",
    "IdempotencyKeyReused",
    "InsufficientPoints",
    "KeyUse",
    "NewDebit",
    "NothingToExtend",
    "RefundStep",
    "ReplayInBatch",
    "ReplayStored",
    "Restoration",
    "SpendableLot",
    "Totals",
    "after_taking",
    "allocate",
    "clawback_journal_key",
    "debit_journal_key",
    "expiry_for",
    "expiry_journal_key",
    "expiry_moves",
    "extension_fee",
    "extension_journal_key",
    "grant_journal_key",
    "is_due",
    "key_reuse",
    "lot_id_for",
    "plan_clawback",
    "plan_debits",
    "plan_extension",
    "refund_expiry_journal_key",
    "refund_journal_key",
    "refund_moves",
    "refund_step",
    "release_journal_key",
    "repay_journal_key",
    "restore",
    "running_balances",
    "spending_order",
    "total_taken",
]
