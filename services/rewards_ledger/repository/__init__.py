"""Every SQL statement of the ledger, split by the same areas as the use cases (`accounts` is
the floor: locks, totals, the journal, allocations, lot expiry). Accounts are always locked
first, in (user_id, asset) order, then their lots. The use cases write `repo.lock_accounts(...)`:
every statement is re-exported here."""

from __future__ import annotations

from services.rewards_ledger.repository.accounts import (
    active_lots,
    allocations_of,
    close_expired_lots,
    due_lots,
    entry_by_key,
    insert_allocations,
    insert_entries,
    lock_accounts,
    lock_existing_accounts,
    set_totals,
    take_from_lots,
)
from services.rewards_ledger.repository.assets import (
    all_assets,
    asset_by_code,
    assets_by_codes,
    insert_asset,
)
from services.rewards_ledger.repository.crediting import (
    insert_lots,
    insert_new_lots,
    lot_of,
    open_clawbacks,
    record_clawback_targets,
    set_clawback_applied,
)
from services.rewards_ledger.repository.extensions import (
    extend_lots,
    extendable_lots,
    extensions_of,
)
from services.rewards_ledger.repository.holds import (
    accounts_with_due_holds,
    close_hold,
    due_holds,
    held_lots,
    hold_of,
    hold_settled_with,
    holds_of,
    insert_hold,
    lots_of_holds,
    settle_lots,
)
from services.rewards_ledger.repository.reads import (
    accounts_of_user,
    entries_page,
    pending_lots_of,
    totals_of,
    upcoming_expiries,
)
from services.rewards_ledger.repository.refunds import (
    entries_by_keys,
    give_back_to_lots,
    insert_void,
    lock_lots,
    mark_lots_expired,
    void_of,
)
from services.rewards_ledger.repository.reports import (
    RECONCILIATION_CHECKS,
    expiring_lots_page,
    holders_page,
    liability,
    run_reconciliation,
)
from services.rewards_ledger.repository.spending import used_keys
from services.rewards_ledger.repository.sweeps import (
    accounts_with_due_lots,
    accounts_with_releasable_lots,
    activate_lots,
    releasable_lots,
)

__all__ = [
    "RECONCILIATION_CHECKS",
    "accounts_of_user",
    "accounts_with_due_holds",
    "accounts_with_due_lots",
    "accounts_with_releasable_lots",
    "activate_lots",
    "active_lots",
    "all_assets",
    "allocations_of",
    "asset_by_code",
    "assets_by_codes",
    "close_expired_lots",
    "close_hold",
    "due_holds",
    "due_lots",
    "entries_by_keys",
    "entries_page",
    "entry_by_key",
    "expiring_lots_page",
    "extend_lots",
    "extendable_lots",
    "extensions_of",
    "give_back_to_lots",
    "held_lots",
    "hold_of",
    "hold_settled_with",
    "holders_page",
    "holds_of",
    "insert_allocations",
    "insert_asset",
    "insert_entries",
    "insert_hold",
    "insert_lots",
    "insert_new_lots",
    "insert_void",
    "liability",
    "lock_accounts",
    "lock_existing_accounts",
    "lock_lots",
    "lot_of",
    "lots_of_holds",
    "mark_lots_expired",
    "open_clawbacks",
    "pending_lots_of",
    "record_clawback_targets",
    "releasable_lots",
    "run_reconciliation",
    "set_clawback_applied",
    "set_totals",
    "settle_lots",
    "take_from_lots",
    "totals_of",
    "upcoming_expiries",
    "used_keys",
    "void_of",
]
