"""GroupCommit: concurrent requests become batches without waiting, and every caller gets
its own answer (or its own error)."""

from __future__ import annotations

import asyncio

import pytest

from shared.batching import GroupCommit


async def settle() -> None:
    """Let every task that can run, run."""
    for _ in range(10):
        await asyncio.sleep(0)


class Recorder:
    """A batch handler that records each batch and can be held open to let requests pile up."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def handle(self, batch: list[int]) -> list[int | BaseException]:
        self.batches.append(batch)
        await self.gate.wait()
        return [ValueError(f"no {n}") if n < 0 else n * 10 for n in batch]


async def test_a_lone_request_goes_through_at_once_and_alone() -> None:
    recorder = Recorder()
    batcher = GroupCommit(recorder.handle, max_size=100, in_flight=1)
    assert await asyncio.wait_for(batcher.submit(7), timeout=1) == 70
    assert recorder.batches == [[7]]


async def test_requests_arriving_during_a_batch_form_the_next_batch_up_to_max_size() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = GroupCommit(recorder.handle, max_size=3, in_flight=1)
    first = asyncio.create_task(batcher.submit(1))
    await settle()
    later = [asyncio.create_task(batcher.submit(n)) for n in range(2, 7)]
    await settle()
    assert recorder.batches == [[1]]  # one batch in flight; the rest wait for it
    recorder.gate.set()
    assert await first == 10
    assert [await t for t in later] == [20, 30, 40, 50, 60]
    assert recorder.batches == [[1], [2, 3, 4], [5, 6]]


async def test_in_flight_batches_run_side_by_side() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = GroupCommit(recorder.handle, max_size=10, in_flight=2)
    tasks = [asyncio.create_task(batcher.submit(n)) for n in (1, 2, 3)]
    await settle()
    assert recorder.batches == [[1], [2]]  # both slots taken at once; 3 waits for one
    recorder.gate.set()
    assert [await t for t in tasks] == [10, 20, 30]
    assert recorder.batches == [[1], [2], [3]]


async def test_an_error_for_one_request_reaches_only_its_caller() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = GroupCommit(recorder.handle, max_size=10, in_flight=1)
    blocker = asyncio.create_task(batcher.submit(0))
    await settle()
    good, bad = asyncio.create_task(batcher.submit(5)), asyncio.create_task(batcher.submit(-5))
    await settle()
    recorder.gate.set()
    await blocker
    assert await good == 50
    with pytest.raises(ValueError, match="no -5"):
        await bad
    assert recorder.batches == [[0], [5, -5]]


async def test_a_failing_batch_fails_all_its_callers_and_the_next_batch_still_runs() -> None:
    calls: list[list[int]] = []
    gate = asyncio.Event()

    async def flaky(batch: list[int]) -> list[int | BaseException]:
        calls.append(batch)
        await gate.wait()
        if len(calls) == 2:
            raise ConnectionError("database went away")
        return list(batch)

    batcher = GroupCommit(flaky, max_size=10, in_flight=1)
    blocker = asyncio.create_task(batcher.submit(0))
    await settle()
    doomed = [asyncio.create_task(batcher.submit(n)) for n in (1, 2)]
    await settle()
    gate.set()
    assert await blocker == 0
    results = await asyncio.gather(*doomed, return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    assert await batcher.submit(3) == 3
    assert calls == [[0], [1, 2], [3]]


async def test_a_caller_that_goes_away_does_not_stop_its_batch() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = GroupCommit(recorder.handle, max_size=10, in_flight=1)
    blocker = asyncio.create_task(batcher.submit(0))
    await settle()
    leaving = asyncio.create_task(batcher.submit(1))
    staying = asyncio.create_task(batcher.submit(2))
    await settle()
    leaving.cancel()
    await settle()
    recorder.gate.set()
    assert await blocker == 0
    assert await staying == 20
    assert leaving.cancelled()
    await batcher.drain()
    assert recorder.batches == [[0], [1, 2]]  # the leaver's request was handled all the same


class SlowRecorder(Recorder):
    """Each batch takes a while, as a database round trip does."""

    async def handle(self, batch: list[int]) -> list[int | BaseException]:
        await asyncio.sleep(0.01)
        return await super().handle(batch)


async def callers(batcher: GroupCommit[int, int], ids: list[int], rounds: int) -> None:
    """Closed-loop callers: each sends its next request as soon as it has its answer, after
    a little work of its own (staggered, as real clients come back one after the other)."""

    async def one(n: int) -> None:
        for r in range(rounds):
            await asyncio.sleep(0.001 * (n % 4))
            assert await batcher.submit(n * 100 + r) == (n * 100 + r) * 10

    await asyncio.gather(*(one(n) for n in ids))


async def test_with_linger_returning_callers_make_one_batch_instead_of_a_lone_one() -> None:
    recorder = SlowRecorder()
    batcher = GroupCommit(recorder.handle, max_size=100, in_flight=1, linger=0.2)
    await asyncio.wait_for(callers(batcher, list(range(8)), rounds=5), timeout=5)
    # The first arrival goes alone at once; from then on all eight ride together (the first
    # caller finishes its rounds one batch early, so the last batch is short of it).
    assert [len(b) for b in recorder.batches] == [1, 8, 8, 8, 8, 7]


async def test_without_linger_the_same_callers_split_into_smaller_batches() -> None:
    """The behaviour linger exists to fix (and the reason the test above can fail)."""
    recorder = SlowRecorder()
    batcher = GroupCommit(recorder.handle, max_size=100, in_flight=1)
    await asyncio.wait_for(callers(batcher, list(range(8)), rounds=5), timeout=5)
    assert max(len(b) for b in recorder.batches[1:]) < 8


async def test_linger_gives_up_on_callers_that_do_not_come_back() -> None:
    recorder = Recorder()
    batcher = GroupCommit(recorder.handle, max_size=100, in_flight=1, linger=0.05)
    recorder.gate.clear()
    first = asyncio.create_task(batcher.submit(0))
    await settle()
    group = [asyncio.create_task(batcher.submit(n)) for n in (1, 2, 3)]
    await settle()
    recorder.gate.set()
    await asyncio.gather(first, *group)
    # Three callers were answered; only one of them comes back. It waits for the others
    # until the linger runs out, then goes alone.
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await asyncio.wait_for(batcher.submit(4), timeout=1) == 40
    assert loop.time() - t0 >= 0.04
    assert recorder.batches == [[0], [1, 2, 3], [4]]
    # A lone batch sets no expectation: the next request goes at once.
    t0 = loop.time()
    assert await batcher.submit(5) == 50
    assert loop.time() - t0 < 0.04


async def test_linger_merges_the_queue_with_the_callers_of_the_batch_that_just_finished() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = GroupCommit(recorder.handle, max_size=100, in_flight=1, linger=1.0)
    first = asyncio.create_task(batcher.submit(1))
    await settle()
    queued = asyncio.create_task(batcher.submit(2))  # arrives while [1] runs
    await settle()
    recorder.gate.set()
    assert await first == 10
    # [1] is done with [2] queued: [2] waits for [1]'s caller instead of going alone, so the
    # two halves merge rather than alternating for ever.
    await settle()
    assert recorder.batches == [[1]]
    assert await asyncio.wait_for(batcher.submit(3), timeout=1) == 30
    assert await queued == 20
    assert recorder.batches == [[1], [2, 3]]
