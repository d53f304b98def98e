"""How a service declares its place in the suite, without importing its code: its name, its
port, and the consumer groups it runs (each a name and the topics it reads).

Each service package declares one `ServiceInfo` in its `__init__.py` (cheap to import: no
app, no settings), its Kafka handlers take their name and topics from it, and
`services/suite.py` collects them into the registry the dev stack, the console, the CLI, the
AsyncAPI document, chaos and bench read.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP_PREFIX = "jifen"  # JifenSettings.consumer_group_prefix


@dataclass(frozen=True)
class ConsumerInfo:
    name: str  # "<service>.<what>": the inbox namespace and the consumer group's suffix
    topics: tuple[str, ...]  # the topics it reads by default
    background: bool = False  # nobody waits on it (see BatchHandler.background)

    @property
    def group(self) -> str:
        return f"{GROUP_PREFIX}.{self.name}"


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    port_offset: int  # from the suite's base port: the contract's 8001..8007 (console 8000)
    consumers: tuple[ConsumerInfo, ...] = ()

    def consumer(self, name: str) -> ConsumerInfo:
        """The declared consumer called `<service>.<name>`."""
        for consumer in self.consumers:
            if consumer.name == f"{self.name}.{name}":
                return consumer
        raise KeyError(f"{self.name} declares no consumer {name}")
