"""StallWatch, join_group and group rebuilds: when a consumer should leave and rejoin its
group, and when the group itself has to be rebuilt."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from shared.messaging.consumer import JoinFailures, StallWatch, join_group

P0, P1 = TopicPartition("grants", 0), TopicPartition("grants", 1)


def look(watch: StallWatch, now: float, waiting: dict[TopicPartition, int]) -> bool | None:
    """One pass of the consumer's idle loop: None when no look was due."""
    return watch.observe(now, waiting) if watch.due(now) else None


def test_records_waiting_behind_an_offset_that_stood_still_mean_a_stalled_group() -> None:
    watch = StallWatch(after_s=60)
    assert look(watch, 0, {P0: 10}) is False  # the first look, as soon as partitions are gone
    assert look(watch, 30, {P0: 10}) is None  # not due yet
    assert look(watch, 60, {P0: 10, P1: 3}) is True


def test_an_owner_that_keeps_committing_is_left_alone() -> None:
    watch = StallWatch(after_s=60)
    assert look(watch, 0, {P0: 10}) is False
    assert look(watch, 60, {P0: 250}) is False  # someone else is reading P0
    assert look(watch, 120, {}) is False  # and has caught up


def test_a_caught_up_group_is_not_stalled_however_long_it_is_quiet() -> None:
    watch = StallWatch(after_s=60)
    for now in range(0, 600, 60):
        assert look(watch, now, {}) is False


def test_getting_partitions_in_between_starts_the_watch_over() -> None:
    watch = StallWatch(after_s=60)
    assert look(watch, 0, {P0: 10}) is False
    watch.reset()  # the member was given partitions
    assert look(watch, 60, {P0: 10}) is False  # a first look again, not a second
    assert look(watch, 120, {P0: 10}) is True


class FakeMember:
    """A consumer whose start (the join) takes `join_s`, or never ends when None."""

    def __init__(self, join_s: float | None) -> None:
        self.join_s = join_s
        self.stopped = False

    async def start(self) -> None:
        if self.join_s is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(self.join_s)

    async def stop(self) -> None:
        self.stopped = True


async def test_a_join_that_never_completes_is_abandoned_and_the_member_leaves() -> None:
    member = FakeMember(join_s=None)
    assert await join_group(member, "consumer test", within_s=0.05) is False
    assert member.stopped  # stopping leaves the group, so the next join is a new member


async def test_a_join_that_completes_in_time_keeps_the_member() -> None:
    member = FakeMember(join_s=0.01)
    assert await join_group(member, "consumer test", within_s=5) is True
    assert not member.stopped


async def test_a_join_cancelled_by_shutdown_still_leaves_the_group() -> None:
    member = FakeMember(join_s=None)
    joining = asyncio.create_task(join_group(member, "consumer test", within_s=60))
    await asyncio.sleep(0.01)
    joining.cancel()
    try:
        await joining
    except asyncio.CancelledError:
        pass
    assert member.stopped


class Rebuilds:
    """Counts rebuilds of one group; each raises when the broker is away."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        if self.fail:
            raise KafkaConnectionError("broker away")
        return True


async def test_a_second_failed_join_in_a_row_rebuilds_the_group() -> None:
    rebuilds = Rebuilds()
    failures = JoinFailures("jifen.grants", rebuilds)
    assert await failures.failed() is False
    assert rebuilds.calls == 0  # the first failure only joins again, as a new member
    assert await failures.failed() is True
    assert rebuilds.calls == 1
    assert await failures.failed() is False
    assert rebuilds.calls == 1  # the count starts over after a rebuild
    failures.joined()  # a join that works
    assert await failures.failed() is False
    assert rebuilds.calls == 1  # ... and after a join that worked
    assert await failures.failed() is True
    assert rebuilds.calls == 2


async def test_a_rebuild_that_fails_is_tried_again_after_the_next_failed_join() -> None:
    rebuilds = Rebuilds(fail=True)
    failures = JoinFailures("jifen.grants", rebuilds)
    assert await failures.failed() is False
    assert await failures.failed() is False  # the rebuild raises; the consumer carries on
    assert await failures.failed() is False
    assert rebuilds.calls == 2


class HangingMember:
    """A member with no partitions whose offset reads never come back (a coordinator stuck
    in a rebalance)."""

    def assignment(self) -> set[TopicPartition]:
        return set()

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        await asyncio.sleep(3600)
        return {}


async def test_offsets_that_cannot_be_read_in_time_for_a_while_mean_rejoin() -> None:
    watch = StallWatch(after_s=0.1)
    member = HangingMember()
    verdicts = [await asyncio.wait_for(watch.stalled(member, ["grants"], "t"), 5)]
    while not verdicts[-1]:  # each look gives up after after_s, never hangs
        await asyncio.sleep(0.1)
        verdicts.append(await asyncio.wait_for(watch.stalled(member, ["grants"], "t"), 5))
    assert verdicts[0] is False and 2 <= len(verdicts) <= 4


class UnreadableMember(HangingMember):
    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        raise KafkaConnectionError()


async def test_offsets_unreadable_for_a_while_mean_rejoin_but_a_blip_does_not() -> None:
    watch = StallWatch(after_s=0.05)
    member = UnreadableMember()
    assert await watch.stalled(member, ["grants"], "t") is False  # the broker may be away
    await asyncio.sleep(0.2)
    assert await watch.stalled(member, ["grants"], "t") is True  # past 3 x after_s
