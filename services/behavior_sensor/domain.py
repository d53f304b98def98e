"""Pure sensing rules: identities and the anti-farming window."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.events import stable_id


def behavior_id(source: str, event_id: str) -> str:
    """The normalized event's id: one per (source, event_id), whichever path it came by."""
    return stable_id("behavior", source, event_id)


def window_start(occurred_at: datetime, window_seconds: int) -> datetime:
    ts = int(occurred_at.timestamp())
    return datetime.fromtimestamp(ts - ts % window_seconds, UTC)


class FarmingLimits:
    def __init__(
        self, default: int | None, per_action: dict[str, int], window_seconds: int
    ) -> None:
        self.default = default
        self.per_action = per_action
        self.window_seconds = window_seconds

    def limit_for(self, action: str) -> int | None:
        return self.per_action.get(action, self.default)

    def admit(
        self,
        counts: dict[tuple[str, str, datetime], int],
        user_id: str,
        action: str,
        occurred_at: datetime,
    ) -> bool:
        """Count one behavior in its window; False when it goes over the limit."""
        key = (user_id, action, window_start(occurred_at, self.window_seconds))
        counts[key] = counts.get(key, 0) + 1
        limit = self.limit_for(action)
        return limit is None or counts[key] <= limit
