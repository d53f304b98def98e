"""What a service plugs into the consumer loop: a handler that parses records and applies
batches, and the units of work it parses them into."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from aiokafka import ConsumerRecord
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

M = TypeVar("M", bound=BaseModel)
V = TypeVar("V")  # what a handler parses a record into (an event model, an envelope, ...)


class PoisonMessage(Exception):
    """A message that can never be applied (unparseable, invalid): it goes to the DLQ."""


def parse_model(record: ConsumerRecord, model: type[M], what: str) -> M:
    """Validate a record's JSON value as `model`; an invalid one is poison."""
    try:
        return model.model_validate_json(record.value or b"")
    except ValidationError as exc:
        raise PoisonMessage(f"invalid {what}: {exc.errors(include_url=False)}") from exc


@dataclass
class Inbound(Generic[V]):
    """One unit of work taken from a Kafka record: its inbox id and its parsed value.

    `message_id` None: applying the item twice changes nothing by itself (a set insert, a
    maximum, a merge that only moves forward), so no inbox row is claimed for it even in a
    handler that uses the inbox for its other items. Say why where the handler says so."""

    message_id: str | None
    value: V
    record: ConsumerRecord | None = field(default=None, repr=False)


class BatchHandler(Protocol[V]):
    """What a service plugs into the consumer loop (subclass it to get the default `prepare`),
    typed by what it parses records into: `class GrantHandler(BatchHandler[GrantCommand])`."""

    name: str  # consumer name: inbox namespace and consumer group suffix
    topics: Sequence[str]
    use_inbox: bool  # False when the handler's own unique keys already make it idempotent
    # True for consumers nobody waits on (rollups, notifications, copies of rare events): their
    # fetches wait longer at the broker for data (JIFEN_KAFKA_BACKGROUND_FETCH_MAX_WAIT_MS).
    background: bool = False

    def parse(self, record: ConsumerRecord) -> list[Inbound[V]]:
        """Decode and validate one record (raise PoisonMessage when it can never apply)."""
        ...

    async def prepare(self, items: list[Inbound[V]]) -> None:
        """Remote calls the batch needs, made before its transaction opens (no row lock is
        held while waiting on the network). Nothing by default."""
        return None

    async def apply(self, session: AsyncSession, items: list[Inbound[V]]) -> None:
        """Apply new (never applied before) items in order, inside the caller's transaction."""
        ...
