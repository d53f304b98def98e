"""Ledger use cases. They run inside the caller's unit of work and only flush.

Every movement is of one asset on one account (user_id, asset). Accounts are locked first,
in key order, then their lots. The use cases are split by area: `accounts` is the floor the
others stand on (journal and ledger.events, lot expiry, debt repayment, key replay);
`assets`, `crediting`, `spending`, `holds`, `refunds`, `extensions`, `sweeps`, `reads`,
`reports`.
Callers write `service.debit(...)`: the public names are re-exported here.
"""

from __future__ import annotations

# Re-exported: callers build service.DebitCommand and catch service.InsufficientPoints and
# service.DomainError.
from services.rewards_ledger.domain import DebitCommand as DebitCommand
from services.rewards_ledger.domain import HoldCommand as HoldCommand
from services.rewards_ledger.domain import InsufficientPoints as InsufficientPoints
from services.rewards_ledger.service.assets import create_asset, get_asset, list_assets
from services.rewards_ledger.service.crediting import (
    POINTS_EXPIRE,
    NewCredit,
    adjust,
    apply_rewards,
    credit,
    grant_to_credit,
)
from services.rewards_ledger.service.extensions import extend
from services.rewards_ledger.service.holds import (
    capture_hold,
    hold_view,
    holds_of_user,
    place_hold,
    void_hold,
)
from services.rewards_ledger.service.reads import account_view, balances, history
from services.rewards_ledger.service.refunds import refund
from services.rewards_ledger.service.reports import (
    expiring_page,
    holders_page,
    liability_report,
    reconcile,
)
from services.rewards_ledger.service.spending import DebitOutcome, debit, debit_many
from services.rewards_ledger.service.sweeps import (
    sweep_expired,
    sweep_expired_holds,
    sweep_released,
)
from shared.errors import DomainError as DomainError

__all__ = [
    "POINTS_EXPIRE",
    "DebitCommand",
    "DebitOutcome",
    "DomainError",
    "HoldCommand",
    "InsufficientPoints",
    "NewCredit",
    "account_view",
    "adjust",
    "apply_rewards",
    "balances",
    "capture_hold",
    "create_asset",
    "credit",
    "debit",
    "debit_many",
    "expiring_page",
    "extend",
    "get_asset",
    "grant_to_credit",
    "history",
    "hold_view",
    "holders_page",
    "holds_of_user",
    "liability_report",
    "list_assets",
    "place_hold",
    "reconcile",
    "refund",
    "sweep_expired",
    "sweep_expired_holds",
    "sweep_released",
    "void_hold",
]
