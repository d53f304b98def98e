"""insights: KPIs, A/B experiments, recommendations and alerts from every topic."""

from shared.events import (
    BEHAVIOR_EVENTS,
    ENGAGEMENT_EVENTS,
    EXCHANGE_EVENTS,
    EXPERIMENT_EXPOSURES,
    LEDGER_EVENTS,
    NOTIFY_EVENTS,
    PROGRESS_EVENTS,
)
from shared.registry import ConsumerInfo, ServiceInfo

INFO = ServiceInfo(
    "insights",
    port_offset=7,
    consumers=(
        ConsumerInfo(
            "insights.events",
            (
                BEHAVIOR_EVENTS,
                PROGRESS_EVENTS,
                LEDGER_EVENTS,
                EXCHANGE_EVENTS,
                ENGAGEMENT_EVENTS,
                NOTIFY_EVENTS,
                EXPERIMENT_EXPOSURES,
            ),
            background=True,
        ),
    ),
)
