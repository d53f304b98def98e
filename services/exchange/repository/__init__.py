"""Every SQL statement of the exchange, by area: `items.py` (catalog, stock, per-user
limits), `redemptions.py`, `rewards.py` (coupons, memberships), `reconciliation.py`,
`tiers.py` (the member tier read model), `quick_options.py`. Stock moves only through conditional updates."""

from __future__ import annotations

from services.exchange.repository.items import (
    Item,
    PerUserLimitInfo,
    count_against_limit,
    get_item,
    get_items,
    insert_item,
    list_items,
    release_limit,
    release_stock,
    reserve_stock,
    update_item,
    used_quantities,
)
from services.exchange.repository.quick_options import (
    band_candidates,
    cheapest_candidates,
    exchange_counts,
)
from services.exchange.repository.reconciliation import (
    RECONCILIATION_CHECKS,
    run_reconciliation,
)
from services.exchange.repository.redemptions import (
    FINISHES,
    NEW_REDEMPTIONS,
    REWARDS,
    FailureInfo,
    FulfilmentInfo,
    Redemption,
    claim_unfinished,
    finish_redemptions,
    fulfilment_queue,
    get_redemption,
    insert_redemptions,
    redemptions_by_ids,
    redemptions_by_keys,
    set_rewards,
    update_redemption,
    user_redemptions,
)
from services.exchange.repository.rewards import (
    COUPONS,
    insert_coupons,
    lock_membership,
    revoke_coupons,
    set_membership,
)
from services.exchange.repository.tiers import (
    save_ladder,
    save_member_tiers,
    tier_levels,
)

__all__ = [
    "COUPONS",
    "FINISHES",
    "NEW_REDEMPTIONS",
    "RECONCILIATION_CHECKS",
    "REWARDS",
    "FailureInfo",
    "FulfilmentInfo",
    "Item",
    "PerUserLimitInfo",
    "Redemption",
    "band_candidates",
    "cheapest_candidates",
    "claim_unfinished",
    "count_against_limit",
    "exchange_counts",
    "finish_redemptions",
    "fulfilment_queue",
    "get_item",
    "get_items",
    "get_redemption",
    "insert_coupons",
    "insert_item",
    "insert_redemptions",
    "list_items",
    "lock_membership",
    "redemptions_by_ids",
    "redemptions_by_keys",
    "release_limit",
    "release_stock",
    "reserve_stock",
    "revoke_coupons",
    "run_reconciliation",
    "save_ladder",
    "save_member_tiers",
    "set_membership",
    "set_rewards",
    "tier_levels",
    "update_item",
    "update_redemption",
    "used_quantities",
    "user_redemptions",
]
