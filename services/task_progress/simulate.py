"""The dry run: a draft rule replayed on the behaviors task_progress has stored, deciding
through the very functions the live consumer uses (`match_rules`, `complete`, and the
check-in day book), so the two cannot disagree. Nothing is written.

Progress starts empty at `from`: a period already under way at `from` is counted from there.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress import repository as repo
from services.task_progress.domain import (
    DayBook,
    Progress,
    Rule,
    checkin_day,
    complete,
    match_rules,
    rule_from_row,
)
from services.task_progress.schemas import SimulateRequest

TOP_USERS = 10


@dataclass
class Tally:
    behaviors: int = 0
    completions: int = 0
    rewards: Counter[str] = field(default_factory=Counter)

    def paid(self, asset: str, amount: int) -> None:
        self.rewards[asset] += amount


def draft_rule(body: SimulateRequest) -> Rule:
    fields = body.rule.model_dump(mode="python")
    return rule_from_row(SimpleNamespace(id="draft", version=0, **fields))


async def simulate(session: AsyncSession, body: SimulateRequest, tz: ZoneInfo) -> dict[str, Any]:
    rule = draft_rule(body)
    rules = {rule.action: [rule]}
    state: dict[tuple[str, str, str], Progress] = {}
    books: dict[str, DayBook] = {}
    total = Tally()
    users: dict[str, Tally] = {}
    days: dict[date, Tally] = {}
    scanned = 0
    # A rule without conditions that pays a fixed amount never reads attributes: then they
    # are not fetched (decoding them was half the time of a million-row run).
    attributes = bool(rule.conditions) or rule.kind == "amount_ratio"
    async for chunk in repo.stream_history(
        session, rule.action, body.from_, body.to, with_attributes=attributes
    ):
        scanned += len(chunk)
        count_by_day(chunk, tz, days)
        matches = match_rules(rules, chunk, tz)
        for event, _, _ in matches:
            if event.user_id not in users:
                users[event.user_id] = Tally()
        if rule.kind == "checkin":
            assert rule.ladder is not None
            for event, _, _ in matches:
                day = checkin_day(event.occurred_at, tz)
                book = books.setdefault(event.user_id, DayBook())
                plan = book.check_in(rule.ladder, day, "normal")
                paid = [c.grant for c in plan.changes if c.grant > 0] if plan else []
                if paid:
                    _count(total, users[event.user_id], days[day], [(rule.reward_type, sum(paid))])
        else:
            for event, _, _, done in complete(matches, state):
                day = event.occurred_at.astimezone(tz).date()
                _count(total, users[event.user_id], days[day], done.rewards())
    return _summary(scanned, total, users, days)


def _summary(
    scanned: int, total: Tally, users: dict[str, Tally], days: dict[date, Tally]
) -> dict[str, Any]:
    """The run's answer: totals, the users paid most and the count of each business day."""
    top = sorted(
        users.items(), key=lambda kv: (-sum(kv[1].rewards.values()), -kv[1].completions, kv[0])
    )[:TOP_USERS]
    return {
        "behaviors_scanned": scanned,
        "users_matched": len(users),
        "completions": total.completions,
        "rewards": dict(total.rewards),
        "top_users": [
            {"user_id": u, "completions": t.completions, "rewards": dict(t.rewards)}
            for u, t in top
            if t.completions
        ],
        "by_day": [
            {
                "day": d,
                "behaviors": t.behaviors,
                "completions": t.completions,
                "rewards": dict(t.rewards),
            }
            for d, t in sorted(days.items())
        ],
    }


def _count(total: Tally, user: Tally, day: Tally, payouts: list[tuple[str, int]]) -> None:
    for tally in (total, user, day):
        tally.completions += 1
        for asset, amount in payouts:
            tally.paid(asset, amount)


__all__ = ["simulate"]


def count_by_day(rows: Sequence[Any], tz: ZoneInfo, days: dict[date, Tally]) -> None:
    """Add rows (in time order) to their business day's count: one timezone conversion per
    day the rows span, not per row."""
    i = 0
    while i < len(rows):
        day = rows[i].occurred_at.astimezone(tz).date()
        midnight = datetime.combine(day + timedelta(days=1), time(), tz)
        j = bisect_left(rows, midnight, lo=i, key=_occurred_at)
        if day not in days:
            days[day] = Tally()
        days[day].behaviors += j - i
        i = j


def _occurred_at(row: Any) -> datetime:
    return row.occurred_at
