"""exchange: the points mall — catalog, redemption, cancellation and refunds."""

from shared.events import ENGAGEMENT_EVENTS
from shared.registry import ConsumerInfo, ServiceInfo

INFO = ServiceInfo(
    "exchange",
    port_offset=4,
    consumers=(ConsumerInfo("exchange.tiers", (ENGAGEMENT_EVENTS,), background=True),),
)
