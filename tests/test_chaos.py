"""The short fault-injection run of `make test` (`make chaos` runs 100+ cycles).

Its own embedded PostgreSQL, broker and services (it kills them, so it shares nothing with
the integration suite). Fixed seeds chosen so that between them every fault kind occurs:
kill -9, PostgreSQL connections terminated, broker paused, a replica added and removed, a
consumer group reset to the earliest offset - with failpoints armed throughout.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.runner import Environment, run_cycles, scratch_environment
from chaos.schedule import plan
from tests.conftest import _free_base_port

SEEDS = (5, 12)


@pytest.fixture(scope="module")
def chaos_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    scratch: Path = tmp_path_factory.mktemp("chaos")
    env, cleanup = scratch_environment(scratch, _free_base_port())
    try:
        env.start()
        yield env
    finally:
        cleanup()


def test_seeded_plans_cover_every_fault_kind() -> None:
    kinds = {f.kind for seed in SEEDS for f in plan(seed).faults}
    assert kinds == {"kill", "pg_terminate", "broker_pause", "scale", "replay"}


def test_the_same_seed_gives_the_same_schedule() -> None:
    assert plan(12345) == plan(12345)
    assert plan(12345) != plan(12346)


def test_invariants_hold_through_seeded_faults(chaos_env: Environment) -> None:
    outcomes = run_cycles(chaos_env, [plan(seed) for seed in SEEDS])
    failures = {o.seed: o.problems for o in outcomes if not o.ok}
    assert not failures, f"replay with make chaos CHAOS_SEEDS=...: {failures}"
    assert all(o.events_accepted > 100 for o in outcomes)
    assert all(o.redemptions.get("completed", 0) > 0 for o in outcomes)
