"""Dead letters: a message that can never be applied goes to `<topic>.dlq` with the reason and
its original bytes, and the consumer keeps going."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError

from shared import tracing
from shared.events import dlq_topic
from shared.metrics import DEAD_LETTERS, MESSAGES_CONSUMED
from shared.retry import Backoff

log = logging.getLogger(__name__)


def dead_letter(record: ConsumerRecord, consumer: str, reason: str) -> dict[str, object]:
    """The letter for `record`: where it came from, why it failed, and its bytes as they were
    (as text when they are UTF-8, always as base64), with its trace when it had one."""
    raw: bytes = record.value or b""
    try:
        original_text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        original_text = None
    letter: dict[str, object] = {
        "error": reason[:2000],
        "consumer": consumer,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.decode("utf-8", "replace") if record.key else None,
        "original": original_text,
        "original_base64": base64.b64encode(raw).decode("ascii"),
        "failed_at": datetime.now(UTC).isoformat(),
    }
    traceparent = tracing.of_headers(record.headers) if record.headers else None
    if traceparent is not None:
        letter["traceparent"] = traceparent  # `jifen dlq replay` sends it on again
    return letter


class DeadLetters:
    """Writes a consumer's dead letters; a broker that is away is waited for, never skipped."""

    def __init__(
        self, producer: AIOKafkaProducer, service: str, consumer: str, backoff_cap_s: float
    ) -> None:
        self.producer = producer
        self.service = service
        self.consumer = consumer
        self.backoff_cap_s = backoff_cap_s

    async def send(self, record: ConsumerRecord, reason: str) -> None:
        content = dead_letter(record, self.consumer, reason)
        letter = json.dumps(content).encode()
        traceparent = content.get("traceparent")
        headers = [(tracing.HEADER, str(traceparent).encode())] if traceparent else None
        backoff = Backoff(cap=self.backoff_cap_s)
        while True:
            try:
                await self.producer.send_and_wait(
                    dlq_topic(record.topic), letter, key=record.key, headers=headers
                )
                break
            except KafkaError as exc:
                log.warning("dead-letter publish failed, retrying: %s", exc)
                await backoff.wait()
        DEAD_LETTERS.labels(self.service, record.topic).inc()
        MESSAGES_CONSUMED.labels(self.service, self.consumer, "dead_lettered").inc()
        log.warning(
            "dead-lettered message",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "reason": reason,
                **({"trace_id": tracing.trace_id_of(str(traceparent))} if traceparent else {}),
            },
        )
