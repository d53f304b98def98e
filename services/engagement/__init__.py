"""engagement: leaderboards, streaks, badges and tiers on what users did and earned."""

from shared.events import (
    BEHAVIOR_DIVERTED,
    BEHAVIOR_EVENTS,
    EXCHANGE_EVENTS,
    LEDGER_EVENTS,
    PROGRESS_EVENTS,
)
from shared.registry import ConsumerInfo, ServiceInfo

INFO = ServiceInfo(
    "engagement",
    port_offset=5,
    consumers=(
        ConsumerInfo(
            "engagement.events",
            (LEDGER_EVENTS, BEHAVIOR_EVENTS, PROGRESS_EVENTS, EXCHANGE_EVENTS, BEHAVIOR_DIVERTED),
        ),
    ),
)
