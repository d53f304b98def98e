"""The suite's registry is what the services declare, and what their code runs: every
declared consumer is a handler of its service with the same name, topics and pace, and every
handler is declared (so the dev stack's drain, chaos, bench, the console and the AsyncAPI
document see every group)."""

from __future__ import annotations

import importlib
import subprocess
import sys

from services.behavior_sensor.adapters import ADAPTERS
from services.rewards_ledger.settings import Settings as LedgerSettings
from services.suite import CONSUMER_GROUPS, SERVICES, SUITE
from services.task_progress.settings import Settings as TaskSettings
from shared.messaging import BatchHandler
from shared.registry import GROUP_PREFIX


def handlers_of(service: str) -> dict[str, type]:
    module = importlib.import_module(f"services.{service}.consumer")
    return {
        cls.name: cls
        for cls in vars(module).values()
        if isinstance(cls, type) and BatchHandler in cls.__mro__[1:]
    }


def test_every_declared_consumer_is_a_handler_and_every_handler_is_declared() -> None:
    for info in SUITE:
        handlers = handlers_of(info.name)
        assert set(handlers) == {c.name for c in info.consumers}, info.name
        for consumer in info.consumers:
            handler = handlers[consumer.name]
            assert handler.background == consumer.background, consumer.name
            fixed = handler.__dict__.get("topics")  # class-level where not configurable
            if fixed is not None:
                assert tuple(fixed) == consumer.topics, consumer.name
            assert consumer.group == f"{GROUP_PREFIX}.{handler.name}"  # the loop's group id


def test_configurable_topics_default_to_the_declared_ones() -> None:
    sensor = next(i for i in SUITE if i.name == "behavior_sensor").consumer("upstream")
    assert sensor.topics == tuple(ADAPTERS)
    behaviors = next(i for i in SUITE if i.name == "task_progress").consumer("behaviors")
    assert behaviors.topics == (TaskSettings().behavior_topic,)
    grants = next(i for i in SUITE if i.name == "rewards_ledger").consumer("grants")
    assert grants.topics == (LedgerSettings().grants_topic,)


def test_ports_are_the_contracts_and_groups_unique() -> None:
    assert SERVICES == {
        "behavior_sensor": 1,
        "task_progress": 2,
        "rewards_ledger": 3,
        "exchange": 4,
        "engagement": 5,
        "notifier": 6,
        "insights": 7,
    }
    assert len(CONSUMER_GROUPS) == sum(len(i.consumers) for i in SUITE)


def test_reading_the_registry_loads_no_service_code() -> None:
    probe = (
        "import sys, services.suite; "
        "print(sorted(m for m in sys.modules if m.startswith('services.') and m.count('.') > 1))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
