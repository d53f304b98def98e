"""Seeded fault schedules: the same seed always gives the same faults at the same offsets."""

from __future__ import annotations

import random
from dataclasses import dataclass

CONSUMERS = (
    "behavior_sensor",
    "task_progress",
    "rewards_ledger",
    "engagement",
    "insights",
    "notifier",
)
SERVICES = (*CONSUMERS, "exchange")
KINDS = {  # kind -> weight
    "kill": 5,  # SIGKILL one service process, restart it after `duration`
    "pg_terminate": 2,  # terminate every PostgreSQL connection of `target` ("all" or a service)
    "broker_pause": 2,  # SIGSTOP the broker for `duration`, then SIGCONT
    "scale": 2,  # run a second replica of `target` for `duration` (rebalance in, then out)
    "replay": 1,  # reset `target`'s consumer group to the earliest offset: a full replay
}


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the cycle's workload starts
    kind: str
    target: str
    duration: float
    hard: bool = True  # scale: remove the replica with SIGKILL (True) or SIGTERM

    def describe(self) -> str:
        extra = f" {self.duration:.1f}s" if self.kind in ("broker_pause", "scale", "kill") else ""
        how = "" if self.kind != "scale" else (" (removed by kill -9)" if self.hard else "")
        return f"{self.kind} {self.target}{extra}{how} @{self.at:.1f}s"


@dataclass(frozen=True)
class Plan:
    seed: int
    events: int  # behaviors the cycle sends
    duplicate_ratio: float  # share of sends that repeat an earlier event
    redeemers: int
    stock: int
    faults: tuple[Fault, ...]


def plan(seed: int, window: float = 12.0) -> Plan:
    rng = random.Random(seed)
    faults = []
    for _ in range(rng.randint(3, 6)):
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        at = round(rng.uniform(0.2, window - 1.0), 2)
        if kind == "kill":
            fault = Fault(at, kind, rng.choice(SERVICES), round(rng.uniform(0, 2.5), 2))
        elif kind == "pg_terminate":
            fault = Fault(at, kind, rng.choice((*SERVICES, "all")), 0)
        elif kind == "broker_pause":
            fault = Fault(at, kind, "broker", round(rng.uniform(2, 6), 2))
        elif kind == "scale":
            fault = Fault(
                at, kind, rng.choice(CONSUMERS), round(rng.uniform(3, 8), 2), rng.random() < 0.5
            )
        else:
            fault = Fault(at, kind, rng.choice(CONSUMERS), 0)
        faults.append(fault)
    faults.sort(key=lambda f: f.at)
    return Plan(
        seed=seed,
        events=rng.randint(200, 500),
        duplicate_ratio=round(rng.uniform(0.05, 0.25), 3),
        redeemers=rng.randint(4, 10),
        stock=rng.randint(10, 40),
        faults=tuple(faults),
    )
