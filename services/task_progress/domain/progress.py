"""Advancing progress: which behaviors count for which rules, the completions they cause
and the grants each completion pays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from services.task_progress.domain.periods import period_key
from services.task_progress.domain.rules import Reward, Rule
from shared.events import DEFAULT_ASSET, stable_id


@dataclass
class Progress:
    count: int = 0
    completions: int = 0
    points: int = 0
    last_event_at: datetime | None = None


@dataclass(frozen=True)
class Payout:
    """One grant of a completion: an amount of one asset."""

    grant_id: str
    asset: str
    points: int


@dataclass(frozen=True)
class Completion:
    """A completion of a rule by a user in a period. Its grant ids are derived when asked for
    (the dry run never asks: minting ids was most of its time)."""

    user_id: str
    rule_id: str
    period_key: str
    number: int
    points: int  # of the main reward (`asset`)
    asset: str = DEFAULT_ASSET
    available_at: datetime | None = None  # pending until then
    extra_rewards: tuple[Reward, ...] = ()

    @cached_property
    def grant_id(self) -> str:
        return stable_id("grant", self.user_id, self.rule_id, self.period_key, self.number)

    def rewards(self) -> list[tuple[str, int]]:
        """(asset, amount) of every grant, the main reward first."""
        return [(self.asset, self.points)] + [(e.asset, e.amount) for e in self.extra_rewards]

    def payouts(self) -> list[Payout]:
        """Every grant this completion pays: the main reward first, then each extra reward."""
        main = self.grant_id
        return [Payout(main, self.asset, self.points)] + [
            Payout(stable_id("grant-extra", main, e.asset), e.asset, e.amount)
            for e in self.extra_rewards
        ]


def advance(
    rule: Rule,
    progress: Progress,
    user_id: str,
    key: str,
    occurred_at: datetime,
    attributes: dict[str, Any],
) -> Completion | None:
    """Count one matching behavior; return the completion it causes, if any."""
    progress.count += 1
    if progress.last_event_at is None or occurred_at > progress.last_event_at:
        progress.last_event_at = occurred_at
    cap = rule.cap
    if cap is not None and progress.completions >= cap:
        return None
    if rule.kind == "count" and progress.count % rule.target_count != 0:
        return None
    points = rule.points_for(attributes)
    if points <= 0:
        return None
    progress.completions += 1
    progress.points += points
    return Completion(
        user_id=user_id,
        rule_id=rule.id,
        period_key=key,
        number=progress.completions,
        points=points,
        asset=rule.reward_type,
        available_at=occurred_at + timedelta(days=rule.pending_days) if rule.pending_days else None,
        extra_rewards=rule.extra_rewards,
    )


Match = tuple[Any, Rule, str]  # (behavior, rule, period key)


def match_rules(rules: dict[str, list[Rule]], events: Sequence[Any], tz: ZoneInfo) -> list[Match]:
    """Every (behavior, rule, period key) where a behavior counts for a rule (`rules` by
    action; behaviors have action, occurred_at, attributes). The live consumer and the dry
    run both start here."""
    return [
        (event, rule, period_key(rule.period, event.occurred_at, tz))
        for event in events
        for rule in rules.get(event.action, ())
        if rule.matches(event.action, event.occurred_at, event.attributes)
    ]


def complete(
    matches: Sequence[Match], state: dict[tuple[str, str, str], Progress]
) -> list[tuple[Any, Rule, str, Completion]]:
    """Advance the progress of each count or ratio match in order (`state` by (user, task,
    period), updated in place) and return the completions: the one decision both the live
    consumer and the dry run make."""
    done = []
    for event, rule, key in matches:
        progress = state.get((event.user_id, rule.id, key))
        if progress is None:
            progress = state[(event.user_id, rule.id, key)] = Progress()
        completion = advance(
            rule, progress, event.user_id, key, event.occurred_at, event.attributes
        )
        if completion is not None:
            done.append((event, rule, key, completion))
    return done


def status_of(rule: Rule, progress: Progress) -> str:
    cap = rule.cap
    if cap is not None and progress.completions >= cap:
        return "completed"
    return "in_progress" if progress.count else "not_started"
