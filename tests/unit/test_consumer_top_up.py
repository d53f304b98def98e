"""The consumer's top-up: after a long batch, records that arrived meanwhile join the next one."""

from __future__ import annotations

import time
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from shared.kafka import ConsumerLoop
from shared.settings import JifenSettings


class _ScriptedConsumer:
    """Stands in for the client's buffer: each getmany answers with the next scripted list."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[int, int]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[str]]:
        self.calls.append((timeout_ms, max_records))
        return {"tp": self.answers.pop(0)} if self.answers else {}


def _loop(**overrides: Any) -> ConsumerLoop:
    settings = JifenSettings(service_name="t", consumer_batch_size=10, **overrides)
    handler = cast(Any, type("H", (), {"name": "h", "topics": ("x",), "use_inbox": False})())
    return ConsumerLoop(
        handler,
        settings=settings,
        db=cast(Any, None),
        producer=cast(Any, None),
        inbox=cast(Any, None),
    )


async def _top_up(loop: ConsumerLoop, consumer: _ScriptedConsumer, first: list[str]) -> list[str]:
    records = cast(list[ConsumerRecord], first)
    return cast(list[str], await loop._top_up(cast(AIOKafkaConsumer, consumer), records))


async def test_after_a_long_batch_the_records_that_arrived_meanwhile_are_taken_along() -> None:
    loop = _loop(consumer_top_up_ms=20)
    loop._last_take = time.monotonic() - 1.0  # the previous batch took a second
    consumer = _ScriptedConsumer(["c", "d"])
    assert await _top_up(loop, consumer, ["a", "b"]) == ["a", "b", "c", "d"]
    assert consumer.calls == [(20, 8)]  # waits briefly, and only for what still fits


async def test_back_to_back_takes_do_not_wait() -> None:
    loop = _loop(consumer_top_up_ms=20)
    consumer = _ScriptedConsumer(["c"])
    loop._last_take = time.monotonic()  # the previous batch was taken a moment ago
    assert await _top_up(loop, consumer, ["b"]) == ["b"]
    assert consumer.calls == []


async def test_a_full_batch_or_a_zero_setting_never_waits() -> None:
    full = _loop(consumer_top_up_ms=20)
    full._last_take = time.monotonic() - 1.0
    consumer = _ScriptedConsumer(["x"])
    ten = [str(i) for i in range(10)]
    assert await _top_up(full, consumer, ten) == ten
    off = _loop(consumer_top_up_ms=0)
    off._last_take = time.monotonic() - 1.0
    assert await _top_up(off, consumer, ["a"]) == ["a"]
    assert consumer.calls == []
