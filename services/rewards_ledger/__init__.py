"""rewards_ledger: accounts, lots, the append-only journal; credits, debits, refunds."""

from shared.events import REWARDS_GRANTS
from shared.registry import ConsumerInfo, ServiceInfo

INFO = ServiceInfo(
    "rewards_ledger",
    port_offset=3,
    consumers=(ConsumerInfo("rewards_ledger.grants", (REWARDS_GRANTS,)),),
)
