"""notifier: reminders and push that help and never spam."""

from shared.events import ENGAGEMENT_EVENTS, EXCHANGE_EVENTS, PROGRESS_EVENTS
from shared.registry import ConsumerInfo, ServiceInfo

INFO = ServiceInfo(
    "notifier",
    port_offset=6,
    consumers=(
        ConsumerInfo(
            "notifier.events",
            (PROGRESS_EVENTS, EXCHANGE_EVENTS, ENGAGEMENT_EVENTS),
            background=True,
        ),
    ),
)
