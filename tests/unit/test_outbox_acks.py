"""The publisher deletes an outbox row only once every message in it is acknowledged."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from shared.messaging.outbox import QueuedRow
from shared.messaging.publisher import OutboxPublisher, SentBatch
from shared.settings import JifenSettings


def _publisher(rows: list[QueuedRow]) -> OutboxPublisher:
    publisher = OutboxPublisher(JifenSettings(), cast(Any, None), cast(Any, None))
    for row in rows:
        publisher._unacked[row.id] = publisher._unacked.get(row.id, 0) + 1
    return publisher


def _batch(rows: list[QueuedRow]) -> SentBatch[QueuedRow]:
    return SentBatch(rows, asyncio.get_running_loop().create_future())


async def test_a_row_goes_once_all_its_messages_are_acked_and_never_with_one_lost() -> None:
    a = [QueuedRow(1, "t", f"k{i}", "{}") for i in range(3)]  # row 1: three messages
    b = [QueuedRow(2, "t", f"k{i}", "{}") for i in range(2)]  # row 2: two messages
    c = [QueuedRow(3, "t", f"k{i}", "{}") for i in range(2)]  # row 3: two messages
    publisher = _publisher(a + b + c)

    # Row 1 went out in two record batches; rows 2 and 3 share one batch with row 1's last
    # message... which the broker did not take.
    first, lost, third = _batch(a[:2]), _batch(a[2:] + b[:1]), _batch(b[1:] + c)
    done, topics = publisher._acknowledge([first], [None])
    assert done == [] and len(topics) == 2  # row 1 waits for its third message
    done, _ = publisher._acknowledge([lost, third], [ConnectionError("lost"), None])
    # Rows 1 and 2 each lost a message: left whole to the relay (sent again, absorbed
    # downstream), never deleted. Row 3 is complete.
    assert done == [3]
    assert publisher._unacked == {}
