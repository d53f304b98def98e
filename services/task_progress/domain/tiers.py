"""Member tiers: the points multiplier of the tier a user held when a behavior happened."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class TierBook:
    """Users' tier multipliers over time (from engagement's tier.changed), as far as a batch
    needs them. A user with no change known earns at 1x."""

    changes: dict[str, list[tuple[datetime, int, float]]] = field(default_factory=dict)

    def add(self, user_id: str, effective_at: datetime, sequence: int, multiplier: float) -> None:
        self.changes.setdefault(user_id, []).append((effective_at, sequence, multiplier))
        self.changes[user_id].sort()

    def multiplier(self, user_id: str, at: datetime) -> float:
        """The multiplier of the tier the user held at `at` (the latest change by then)."""
        held = 1.0
        for effective_at, _, multiplier in self.changes.get(user_id, ()):
            if effective_at > at:
                break
            held = multiplier
        return held


def multiplied(points: int, multiplier: float) -> int:
    """Points times a tier multiplier, rounded down, never below one point."""
    return max(1, int(points * multiplier)) if multiplier != 1.0 else points
