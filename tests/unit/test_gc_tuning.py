"""tune_gc: what a service does to the garbage collector once it has started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shared.service import tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_up_objects_are_frozen_and_young_collections_are_rarer(restore_gc) -> None:
    loaded_at_start = {"routes": [object() for _ in range(100)]}
    middle, old = gc.get_threshold()[1:]

    tune_gc(50_000)

    assert gc.get_threshold() == (50_000, middle, old)
    assert gc.get_freeze_count() > 0
    assert gc.is_tracked(loaded_at_start)
    # Frozen: no generation holds it, so collections no longer walk it.
    assert all(o is not loaded_at_start for o in gc.get_objects())


def test_zero_leaves_the_interpreter_defaults(restore_gc) -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()

    tune_gc(0)

    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen
