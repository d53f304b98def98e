"""behavior_sensor: upstream behavior in (HTTP and Kafka), normalized behavior events out."""

from shared.events import UPSTREAM_EVENTS, UPSTREAM_ORDERS
from shared.registry import ConsumerInfo, ServiceInfo

INFO = ServiceInfo(
    "behavior_sensor",
    port_offset=1,
    consumers=(ConsumerInfo("behavior_sensor.upstream", (UPSTREAM_EVENTS, UPSTREAM_ORDERS)),),
)
