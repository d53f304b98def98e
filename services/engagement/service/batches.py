"""Applying one consumed batch: profiles, daily counters, flags, leaderboard scores, then the
tier upgrades and badges the batch earned (their events go to the outbox in the same
transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import domain
from services.engagement import repository as repo
from services.engagement.domain import BEST_STREAK, REDEMPTIONS, aware
from services.engagement.metrics import LATE_SCORES
from services.engagement.models import messaging
from services.engagement.service.badges import award_badges
from services.engagement.service.profiles import apply_profiles
from services.engagement.service.tiers import upgrade_tiers
from services.engagement.settings import Settings
from shared.db import after_commit
from shared.events import BehaviorEvent, ExchangeEvent, LedgerEvent, ProgressEvent
from shared.messaging import add_to_outbox

if TYPE_CHECKING:  # workers.py imports the service: only the type is needed here
    from services.engagement.workers import IndexWriter

# (board, period, user, delta, at): what one event adds to a board's score.
Delta = tuple[str, str, str, int, datetime]
# (user, action or asset, day, count or amount): what one event adds to a daily counter.
Daily = tuple[str, str, date, int]


@dataclass
class Batch:
    """One consumed batch, sorted by kind (each applied at most once: the inbox saw to it)."""

    ledger: list[LedgerEvent] = field(default_factory=list)
    behaviors: list[BehaviorEvent] = field(default_factory=list)
    progress: list[ProgressEvent] = field(default_factory=list)
    exchange: list[ExchangeEvent] = field(default_factory=list)
    diverted: list[BehaviorEvent] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # diverted behavior id -> reason


async def apply_batch(
    session: AsyncSession,
    batch: Batch,
    settings: Settings,
    writer: IndexWriter,
    now: datetime | None = None,
) -> None:
    now = now or datetime.now(UTC)
    tz = settings.tz
    boards = await repo.list_boards(session, active_only=True)
    earned, growth_users, earned_deltas = _earnings(batch.ledger, boards, tz)
    actions, action_deltas = _actions(batch.behaviors, boards, tz)
    streaks = [
        (e.user_id, BEST_STREAK, e.streak)
        for e in batch.progress
        if e.type == "checkin.recorded" and e.streak
    ]
    redemptions = [
        (e.user_id, REDEMPTIONS, 1) for e in batch.exchange if e.type == "redemption.completed"
    ]

    await apply_profiles(session, batch.behaviors)
    await repo.count_actions(session, actions)
    await repo.add_earned(session, earned)
    await repo.raise_counters(session, streaks)
    await repo.add_counters(session, redemptions)
    await _flag(session, batch, settings, writer)
    await _score(session, earned_deltas + action_deltas, boards, tz, writer, now)
    outgoing = await upgrade_tiers(session, sorted(growth_users), settings, now)
    touched = {e.user_id for e in batch.ledger if domain.earned_delta(e)}
    touched |= {e.user_id for e in batch.behaviors}
    touched |= {u for u, _, _ in streaks} | {u for u, _, _ in redemptions}
    outgoing += await award_badges(session, sorted(touched), tz, now)
    if outgoing:
        await add_to_outbox(session, messaging.outbox, outgoing)


def _earnings(
    events: list[LedgerEvent], boards: Sequence[Any], tz: ZoneInfo
) -> tuple[list[Daily], set[str], list[Delta]]:
    """What the ledger movements earned: per user, asset and day; who earned growth; and
    what that adds to the boards measuring the asset."""
    earned: list[Daily] = []
    growth_users: set[str] = set()
    deltas: list[Delta] = []
    for e in events:
        amount = domain.earned_delta(e)
        if not amount:
            continue
        at = aware(e.occurred_at)
        earned.append((e.user_id, e.asset, domain.local_day(at, tz), amount))
        if e.asset == "growth":
            growth_users.add(e.user_id)
        for b in boards:
            if domain.METRIC_ASSET.get(b.metric) == e.asset:
                deltas.append((b.code, domain.period_key(b.window, at, tz), e.user_id, amount, at))
    return earned, growth_users, deltas


def _actions(
    behaviors: list[BehaviorEvent], boards: Sequence[Any], tz: ZoneInfo
) -> tuple[list[Daily], list[Delta]]:
    """The actions done, per user, action and day, and what they add to the boards counting
    that action."""
    actions: list[Daily] = []
    deltas: list[Delta] = []
    for behavior in behaviors:
        at = aware(behavior.occurred_at)
        actions.append((behavior.user_id, behavior.action, domain.local_day(at, tz), 1))
        for b in boards:
            if b.metric == "action_count" and b.action == behavior.action:
                period = domain.period_key(b.window, at, tz)
                deltas.append((b.code, period, behavior.user_id, 1, at))
    return actions, deltas


async def _score(
    session: AsyncSession,
    deltas: list[Delta],
    boards: Sequence[Any],
    tz: ZoneInfo,
    writer: IndexWriter,
    now: datetime,
) -> None:
    if not deltas:
        return
    windows = {b.code: b.window for b in boards}
    periods = []
    for board, period, *_ in deltas:
        bounds = domain.period_bounds(windows[board], period, tz)
        periods.append((board, period, *(bounds or (None, None))))
    still_open = await repo.open_periods(session, periods)
    fresh = [d for d in deltas if (d[0], d[1]) in still_open]
    if len(fresh) < len(deltas):
        LATE_SCORES.inc(len(deltas) - len(fresh))
    changed = await repo.add_scores(session, fresh)
    excluded = await repo.flagged(session, [r.user_id for r in changed], now)
    ranked = [
        (r.board_code, r.period_key, r.user_id, int(r.score))
        for r in changed
        if r.user_id not in excluded
    ]
    gone = [(r.board_code, r.period_key, r.user_id) for r in changed if r.user_id in excluded]

    def write_index() -> None:
        writer.put(ranked)
        writer.remove(gone)

    after_commit(session, write_index)


async def _flag(
    session: AsyncSession, batch: Batch, settings: Settings, writer: IndexWriter
) -> None:
    """Users anti-farming diverted behaviors of leave the leaderboards for `flag_days` from
    the diversion (their scores keep counting in the database; they come back on their next
    score change or a rebuild once the flag has lapsed)."""
    if not batch.diverted or settings.flag_days <= 0:
        return
    flags: dict[str, dict[str, Any]] = {}
    for e in batch.diverted:
        until = aware(e.received_at) + timedelta(days=settings.flag_days)
        flag = flags.setdefault(
            e.user_id,
            {"user_id": e.user_id, "flagged_until": until, "diversions": 0, "last_reason": ""},
        )
        flag["flagged_until"] = max(flag["flagged_until"], until)
        flag["diversions"] += 1
        flag["last_reason"] = batch.reasons.get(e.behavior_id, "")[:500]
    await repo.flag_users(session, list(flags.values()))
    members = await repo.open_periods_of_users(session, list(flags))
    after_commit(session, lambda: writer.remove(members))
