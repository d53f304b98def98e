"""The consumer's top-up: after a long batch, records that arrived meanwhile join the next one."""

from __future__ import annotations

import time
from typing import cast

from aiokafka import ConsumerRecord

from shared.messaging.consumer import TopUp


class _ScriptedConsumer:
    """Stands in for the client's buffer: each getmany answers with the next scripted list."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[int, int]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[str]]:
        self.calls.append((timeout_ms, max_records))
        return {"tp": self.answers.pop(0)} if self.answers else {}


def _top_up_of(wait_ms: int, last_take_ago_s: float) -> TopUp:
    """A top-up for batches of 10 whose previous batch was taken `last_take_ago_s` ago."""
    top_up = TopUp(wait_ms=wait_ms, batch_size=10)
    top_up.last_take = time.monotonic() - last_take_ago_s
    return top_up


async def _top_up(top_up: TopUp, consumer: _ScriptedConsumer, first: list[str]) -> list[str]:
    records = cast(list[ConsumerRecord], first)
    return cast(list[str], await top_up.take(consumer, records))


async def test_after_a_long_batch_the_records_that_arrived_meanwhile_are_taken_along() -> None:
    top_up = _top_up_of(20, last_take_ago_s=1.0)  # the previous batch took a second
    consumer = _ScriptedConsumer(["c", "d"])
    assert await _top_up(top_up, consumer, ["a", "b"]) == ["a", "b", "c", "d"]
    assert consumer.calls == [(20, 8)]  # waits briefly, and only for what still fits


async def test_back_to_back_takes_do_not_wait() -> None:
    top_up = _top_up_of(20, last_take_ago_s=0.0)  # the previous batch was taken a moment ago
    consumer = _ScriptedConsumer(["c"])
    assert await _top_up(top_up, consumer, ["b"]) == ["b"]
    assert consumer.calls == []


async def test_a_full_batch_or_a_zero_setting_never_waits() -> None:
    full = _top_up_of(20, last_take_ago_s=1.0)
    consumer = _ScriptedConsumer(["x"])
    ten = [str(i) for i in range(10)]
    assert await _top_up(full, consumer, ten) == ten
    off = _top_up_of(0, last_take_ago_s=1.0)
    assert await _top_up(off, consumer, ["a"]) == ["a"]
    assert consumer.calls == []


async def test_after_a_small_batch_the_next_take_lingers_and_after_a_full_or_idle_one_not(
    monkeypatch,
) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("shared.messaging.consumer.top_up.asyncio.sleep", fake_sleep)
    top_up = TopUp(wait_ms=20, batch_size=10, linger_ms=50)
    consumer = _ScriptedConsumer()
    await _top_up(top_up, consumer, ["a", "b"])  # a small batch, just taken
    await top_up.pace()
    assert len(slept) == 1 and 0.03 < slept[0] <= 0.05  # what is left of the 50 ms

    await _top_up(top_up, consumer, [str(i) for i in range(10)])  # a full batch: load
    await top_up.pace()
    top_up.last_size = 0  # an idle poll: the next record goes at once
    await top_up.pace()
    assert len(slept) == 1
