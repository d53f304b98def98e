"""Group health: noticing a consumer group that has stopped without anyone being told.

Both checks exist because of what the embedded broker did in chaos runs; on Apache Kafka
they should never fire (see `shared/messaging/embedded_broker.py` for the last resort).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from shared.messaging.clients import start_with_retry

log = logging.getLogger(__name__)


class StallWatch:
    """Notices a consumer group that has stopped without anyone being told.

    Seen with the embedded broker after a member was killed during a broker pause: the
    surviving member ends up in the group with no partitions, its heartbeats keep succeeding,
    and nothing ever triggers another rebalance, so the group's partitions go unread for good.
    A member with no partitions is normal (more members than partitions), so the sign is a
    conjunction, checked on two looks `after_s` apart: this member had no partitions the whole
    time, and some partition had records waiting past a committed offset that did not move.
    With an owner alive, its commits move the offset. The member then leaves and joins
    again, which makes the broker rebalance.
    """

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self.reset()

    def reset(self) -> None:
        self.empty_since: float | None = None
        self._failing_since: float | None = None
        self._looked_at = 0.0
        self._seen: dict[TopicPartition, int] | None = None

    def due(self, now: float) -> bool:
        """Time for a look at the group's offsets (the first comes as soon as the member is
        found with no partitions; the next `after_s` later)."""
        if self.empty_since is None:
            self.empty_since = now
            return True
        return now - self._looked_at >= self.after_s

    def observe(self, now: float, waiting: dict[TopicPartition, int]) -> bool:
        """Record a look; True when the group is stalled."""
        previous, self._seen, self._looked_at = self._seen, waiting, now
        if previous is None:
            return False
        return any(previous.get(tp) == offset for tp, offset in waiting.items())

    async def stalled(self, consumer: Any, topics: Sequence[str], what: str) -> bool:
        """True when `consumer` has had no partitions for a while and the group's committed
        offsets have not moved while records wait (called from the idle loop)."""
        now = time.monotonic()
        if consumer.assignment():
            self.reset()
            return False
        if not self.due(now):
            return False
        try:
            # Bounded: reading committed offsets waits for the group coordinator, and in chaos
            # run seed 7057 (a member rejoining after a broker pause) that looked like 4.5
            # minutes with this member holding no partitions and the group's records unread.
            waiting = await asyncio.wait_for(waiting_offsets(consumer, topics), self.after_s)
        except (TimeoutError, KafkaError) as exc:
            # The broker may just be away: not a verdict on the group, unless it lasts.
            self._failing_since = self._failing_since or now
            unreadable = time.monotonic() - self._failing_since
            if unreadable < 3 * self.after_s:
                log.debug("stall check skipped: %r", exc)
                return False
            log.warning(
                "%s: no partitions, and the group's offsets unreadable for %.0fs (%r); "
                "leaving and joining the group again",
                what,
                unreadable,
                exc,
            )
            return True
        except Exception:  # a watchdog must never be what stops the consumer
            log.warning("stall check failed", exc_info=True)
            return False
        self._failing_since = None
        if not self.observe(now, waiting):
            return False
        log.warning(
            "%s: no partitions for %.0fs while the group's committed offsets stood "
            "still with records waiting on %s; leaving and joining the group again",
            what,
            now - (self.empty_since or now),
            sorted(f"{tp.topic}[{tp.partition}]" for tp in waiting),
        )
        return True


async def waiting_offsets(consumer: Any, topics: Sequence[str]) -> dict[TopicPartition, int]:
    """The group's committed offset of every partition with records past it."""
    partitions = [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if not partitions:
        return {}
    ends = await consumer.end_offsets(partitions)
    starts = await consumer.beginning_offsets(partitions)
    waiting = {}
    for tp in partitions:
        committed = await consumer.committed(tp)
        position = committed if committed is not None else starts.get(tp, 0)
        if ends.get(tp, 0) > position:
            waiting[tp] = position
    return waiting


async def join_group(consumer: Any, what: str, within_s: float) -> bool:
    """Start a group consumer; False (the consumer stopped, so it has left the group) when
    it has no assignment within `within_s`.

    aiokafka's `start()` returns only once the group has given this member its partitions
    (none is an answer too). Seen with the embedded broker in a 100-cycle chaos run (seed
    550042): after a member died while others joined, a restarted member's join never
    completed, so it sat unready for good and StallWatch, which looks only after the join,
    never ran. Joining again as a new member gets the group going; a join that is merely
    slow (the group waits for a member busy with a long batch) only starts over.

    However the join ends early (timeout, shutdown cancelling it, the broker unreachable),
    the consumer is stopped: a member abandoned mid-join that never leaves keeps the group
    waiting for it, up to the rebalance timeout, and every other member's join with it.
    """
    try:
        await asyncio.wait_for(start_with_retry(consumer, what), within_s)
        return True
    except TimeoutError:
        log.warning("%s: no assignment %.0fs after joining; joining again", what, within_s)
        await consumer.stop()
        return False
    except BaseException:
        await consumer.stop()
        raise


# A join that brings no assignment is first retried as a new member; when the next one fails
# as well, the group itself is broken and is rebuilt.
REBUILD_AFTER_FAILED_JOINS = 2


class JoinFailures:
    """Counts joins in a row that brought no assignment, and rebuilds the group (see
    `embedded_broker.rebuild_group`) once `REBUILD_AFTER_FAILED_JOINS` have failed. A rebuild
    that cannot run now (broker or database away) is tried again after the next failed join;
    it never stops the consumer, whose way out of a stuck group it is."""

    def __init__(
        self, group_id: str, rebuild: Callable[[], Awaitable[bool]], timeout_s: float = 60
    ) -> None:
        self.group_id = group_id
        self.rebuild = rebuild
        self.timeout_s = timeout_s
        self.in_a_row = 0

    def joined(self) -> None:
        self.in_a_row = 0

    async def failed(self) -> bool:
        """Record a failed join; True when this one rebuilt the group."""
        self.in_a_row += 1
        if self.in_a_row < REBUILD_AFTER_FAILED_JOINS:
            return False
        try:
            async with asyncio.timeout(self.timeout_s):
                rebuilt = await self.rebuild()
        except Exception:
            log.warning("group %s: rebuild failed; joining again", self.group_id, exc_info=True)
            return False
        self.in_a_row = 0
        return rebuilt
