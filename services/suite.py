"""The suite's registry, collected from what each service declares (`services/<name>/INFO`):
which services run, on which port offsets, with which consumer groups reading which topics.

Read by the dev stack, the console, the CLI, the AsyncAPI document, chaos and bench. Importing
it loads no service code (each declaration lives in its package's `__init__`).
"""

from __future__ import annotations

from services import (
    behavior_sensor,
    engagement,
    exchange,
    insights,
    notifier,
    rewards_ledger,
    task_progress,
)
from shared.registry import ConsumerInfo, ServiceInfo

SUITE: tuple[ServiceInfo, ...] = tuple(
    sorted(
        (
            behavior_sensor.INFO,
            task_progress.INFO,
            rewards_ledger.INFO,
            exchange.INFO,
            engagement.INFO,
            notifier.INFO,
            insights.INFO,
        ),
        key=lambda info: info.port_offset,
    )
)
# The operations console (console/) runs beside the services on the base port itself; it has no
# outbox or consumers (so it is not in SERVICES, whose databases the drain reads).
CONSOLE = "console"
CONSOLE_PORT_OFFSET = 0

SERVICES: dict[str, int] = {info.name: info.port_offset for info in SUITE}
CONSUMERS: tuple[ConsumerInfo, ...] = tuple(c for info in SUITE for c in info.consumers)
CONSUMER_GROUPS: dict[str, tuple[str, ...]] = {c.group: c.topics for c in CONSUMERS}
