"""task_progress: rules, per-user progress per period, one grant per completion."""

from shared.events import BEHAVIOR_EVENTS, ENGAGEMENT_EVENTS
from shared.registry import ConsumerInfo, ServiceInfo

INFO = ServiceInfo(
    "task_progress",
    port_offset=2,
    consumers=(
        ConsumerInfo("task_progress.behaviors", (BEHAVIOR_EVENTS,)),
        ConsumerInfo("task_progress.tiers", (ENGAGEMENT_EVENTS,), background=True),
    ),
)
