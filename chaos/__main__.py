"""`make chaos`: seeded fault-injection cycles; prints the seed of any failing cycle.

CHAOS_CYCLES (default 100) cycles with seeds CHAOS_SEED, CHAOS_SEED+1, ... (CHAOS_SEED
defaults to a random one, printed first). CHAOS_SEEDS=17,42 replays exactly those cycles'
schedules. The schedule (which faults, where, when, the workload's shape) is a function of
the seed; the exact interleaving with the services' own timing is not, so a replay re-runs
the same storm rather than the same microsecond.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from chaos.runner import Environment, Outcome, run_cycles, scratch_environment
from chaos.schedule import plan


def seeds_from_env() -> list[int]:
    explicit = os.environ.get("CHAOS_SEEDS", "").strip()
    if explicit:
        return [int(s) for s in explicit.split(",") if s.strip()]
    base = int(os.environ.get("CHAOS_SEED") or random.randrange(1, 1_000_000))
    return [base + i for i in range(int(os.environ.get("CHAOS_CYCLES", "100")))]


def main() -> int:
    seeds = seeds_from_env()
    print(f"chaos: {len(seeds)} cycles, seeds {seeds[0]}..{seeds[-1]}", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="jifen-chaos-"))
    env, cleanup = scratch_environment(scratch, int(os.environ.get("CHAOS_BASE_PORT", "19000")))
    kinds: Counter[str] = Counter()
    started = time.monotonic()

    def report(outcome: Outcome, env: Environment) -> None:
        status = "ok" if outcome.ok else "FAILED"
        print(
            f"seed {outcome.seed}: {status} in {outcome.seconds:.0f}s; "
            f"{outcome.events_accepted} events ({outcome.sends} sends), "
            f"redemptions {outcome.redemptions}; {outcome.orders}; "
            f"restarts so far {env.supervisor.restarts}\n"
            f"  faults: {'; '.join(outcome.faults)}",
            flush=True,
        )
        for problem in outcome.problems:
            print(f"  !! {problem}", flush=True)
        for fault in outcome.faults:
            kinds[fault.split()[0]] += 1

    outcomes: list[Outcome] = []
    try:
        print(f"starting the suite (logs in {scratch / 'logs'}) ...", flush=True)
        env.start()
        outcomes = run_cycles(env, [plan(s) for s in seeds], report)
    finally:
        cleanup()
    failed = [o.seed for o in outcomes if not o.ok]
    print(
        f"\n{len(outcomes)} cycles in {time.monotonic() - started:.0f}s; faults injected: "
        f"{dict(kinds)}; process restarts (kills and failpoints): {env.supervisor.restarts}"
    )
    if failed:
        seeds_text = ",".join(map(str, failed))
        print(f"FAILED seeds: {seeds_text}\nreplay with: make chaos CHAOS_SEEDS={seeds_text}")
        return 1
    print("every cycle kept every invariant")
    return 0


if __name__ == "__main__":
    sys.exit(main())
