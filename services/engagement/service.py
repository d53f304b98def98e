"""Engagement use cases: applying consumed events (scores, counters, flags, tier upgrades,
badges), closing periods, lowering tiers at the end of their term, and the reads.

Use cases take the caller's session and only flush. What must wait for the commit (writing
the leaderboard index) is registered with `after_commit`; what other services must hear
goes to the outbox in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import domain
from services.engagement import repository as repo
from services.engagement.domain import Ladder, Prize, Standing, Tier, UserStats
from services.engagement.index import IndexWriter
from services.engagement.metrics import (
    BADGES_AWARDED,
    LATE_SCORES,
    PERIODS_CLOSED,
    PRIZES,
    TIER_CHANGES,
)
from services.engagement.models import messaging
from services.engagement.settings import Settings
from shared.db import Database, after_commit
from shared.errors import DomainError, NotFound
from shared.events import (
    ENGAGEMENT_EVENTS,
    REWARDS_GRANTS,
    BehaviorEvent,
    EngagementEvent,
    ExchangeEvent,
    GrantCommand,
    LedgerEvent,
    ProgressEvent,
    stable_id,
)
from shared.messaging import OutgoingEvent, add_to_outbox

log = logging.getLogger(__name__)

REDEMPTIONS = "redemptions"
BEST_STREAK = "best_streak"


def aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass
class Batch:
    """One consumed batch, sorted by kind (each applied at most once: the inbox saw to it)."""

    ledger: list[LedgerEvent] = field(default_factory=list)
    behaviors: list[BehaviorEvent] = field(default_factory=list)
    progress: list[ProgressEvent] = field(default_factory=list)
    exchange: list[ExchangeEvent] = field(default_factory=list)
    diverted: list[BehaviorEvent] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # diverted behavior id -> reason


# -- applying events ------------------------------------------------------------------------


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
    deltas: list[tuple[str, str, str, int, datetime]] = []
    earned: list[tuple[str, str, date, int]] = []
    actions: list[tuple[str, str, date, int]] = []
    growth_users: set[str] = set()

    for e in batch.ledger:
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
    for behavior in batch.behaviors:
        at = aware(behavior.occurred_at)
        actions.append((behavior.user_id, behavior.action, domain.local_day(at, tz), 1))
        for b in boards:
            if b.metric == "action_count" and b.action == behavior.action:
                period = domain.period_key(b.window, at, tz)
                deltas.append((b.code, period, behavior.user_id, 1, at))
    streaks = [
        (e.user_id, BEST_STREAK, e.streak)
        for e in batch.progress
        if e.type == "checkin.recorded" and e.streak
    ]
    redemptions = [
        (e.user_id, REDEMPTIONS, 1) for e in batch.exchange if e.type == "redemption.completed"
    ]

    await repo.count_actions(session, actions)
    await repo.add_earned(session, earned)
    await repo.raise_counters(session, streaks)
    await repo.add_counters(session, redemptions)
    await _flag(session, batch, settings, writer)
    await _score(session, deltas, boards, tz, writer, now)
    outgoing = await upgrade_tiers(session, sorted(growth_users), settings, now)
    touched = {e.user_id for e in batch.ledger if domain.earned_delta(e)}
    touched |= {e.user_id for e in batch.behaviors}
    touched |= {u for u, _, _ in streaks} | {u for u, _, _ in redemptions}
    outgoing += await award_badges(session, sorted(touched), tz, now)
    if outgoing:
        await add_to_outbox(session, messaging.outbox, outgoing)


async def _score(
    session: AsyncSession,
    deltas: list[tuple[str, str, str, int, datetime]],
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


# -- boards ---------------------------------------------------------------------------------


def board_view(row: Any) -> dict[str, Any]:
    return {
        "code": row.code,
        "name": row.name,
        "metric": row.metric,
        "action": row.action,
        "window": row.window,
        "prizes": row.prizes,
        "active": row.active,
        "created_at": row.created_at,
    }


async def create_board(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    row = await repo.insert_board(session, values)
    if row is None:
        raise DomainError("board_exists", f"a leaderboard {values['code']} already exists")
    return board_view(row)


async def get_board(session: AsyncSession, code: str) -> Any:
    row = await repo.get_board(session, code)
    if row is None:
        raise NotFound("leaderboard", code)
    return row


def resolve_period(board: Any, period: str, now: datetime, tz: ZoneInfo) -> str:
    """`current` or a period key of the board's window (422 for anything else)."""
    if period == "current":
        return domain.period_key(board.window, now, tz)
    try:
        domain.period_bounds(board.window, period, tz)
    except ValueError as exc:
        raise DomainError("invalid_period", str(exc), status=422) from exc
    return period


async def score_pages(
    db: Database, board: str, period: str, page: int
) -> AsyncIterator[list[tuple[str, int]]]:
    """A period's scores from PostgreSQL, a page at a time (each page its own read)."""
    after = ""
    while True:
        async with db.read_only() as session:
            rows = await repo.scores_page(session, board, period, after, page, datetime.now(UTC))
        if not rows:
            return
        yield [(r.user_id, int(r.score)) for r in rows]
        after = rows[-1].user_id
        if len(rows) < page:
            return


# -- closing periods ------------------------------------------------------------------------


async def close_one(
    session: AsyncSession, settings: Settings, now: datetime
) -> tuple[str, str] | None:
    """Close the next period whose end and grace have passed: freeze its standings, queue its
    prize grants and leaderboard.closed, all in this one transaction (a crash before the
    commit leaves nothing; after it, the period is closed and is never closed again, and the
    grant ids are derived from (board, period, user), so even a duplicate grant is one at the
    ledger). Returns the (board, period) closed, or None."""
    period = await repo.claim_period_to_close(
        session, now - timedelta(seconds=settings.board_grace_s)
    )
    if period is None:
        return None
    board = await repo.get_board(session, period.board_code)
    if board is None:  # scores of a board that no longer exists: nothing to award
        await repo.mark_closed(session, period.board_code, period.period_key, now)
        return period.board_code, period.period_key
    prizes = [Prize(**p) for p in board.prizes]
    keep = max([settings.board_standings_kept, *(p.rank_to for p in prizes)])
    rows = await repo.standings(session, board.code, period.period_key, keep, now)
    placed = domain.final_standings(
        [Standing(r.user_id, int(r.score), r.reached_at) for r in rows], prizes
    )
    results, grants, winners = [], [], []
    for p in placed:
        grant_id = (
            domain.prize_grant_id(board.code, period.period_key, p.user_id) if p.prize else None
        )
        prize = {"reward_type": p.prize.reward_type, "amount": p.prize.amount} if p.prize else None
        results.append(
            {
                "board_code": board.code,
                "period_key": period.period_key,
                "position": p.position,
                "rank": p.rank,
                "user_id": p.user_id,
                "score": p.score,
                "prize": prize,
                "grant_id": grant_id,
            }
        )
        if p.prize is None or grant_id is None:
            continue
        winners.append(
            {
                "position": p.position,
                "rank": p.rank,
                "user_id": p.user_id,
                "score": p.score,
                "prize": prize,
                "grant_id": grant_id,
            }
        )
        command = GrantCommand(
            grant_id=grant_id,
            user_id=p.user_id,
            asset=p.prize.reward_type,
            points=p.prize.amount,
            task_id=f"leaderboard:{board.code}",
            period_key=period.period_key,
            completion=p.position,
            causation_event_id=f"leaderboard.closed:{board.code}:{period.period_key}",
            occurred_at=now,
            reason=f"{board.name} {period.period_key}: rank {p.rank}",
        )
        grants.append(OutgoingEvent(REWARDS_GRANTS, p.user_id, command.model_dump_json()))
        PRIZES.labels(p.prize.reward_type).inc()
    closed = EngagementEvent(
        type="leaderboard.closed",
        event_id=stable_id("leaderboard.closed", board.code, period.period_key),
        data={
            "board": board.code,
            "name": board.name,
            "window": board.window,
            "period": period.period_key,
            "starts_at": period.starts_at.isoformat() if period.starts_at else None,
            "ends_at": period.ends_at.isoformat() if period.ends_at else None,
            "standings": len(results),
            "winners": winners,
        },
        occurred_at=now,
    )
    await repo.insert_results(session, results)
    await add_to_outbox(
        session,
        messaging.outbox,
        [*grants, OutgoingEvent(ENGAGEMENT_EVENTS, board.code, closed.model_dump_json())],
    )
    await repo.mark_closed(session, board.code, period.period_key, now)
    PERIODS_CLOSED.inc()
    return board.code, period.period_key


async def snapshot_one(session: AsyncSession, settings: Settings, now: datetime) -> int:
    """Take yesterday's rank snapshot of one board that has none yet (once its day and the
    grace are over); returns how many users it holds, or -1 when none was due."""
    tz = settings.tz
    ready = now - timedelta(seconds=settings.board_grace_s)
    day = domain.local_day(ready, tz) - timedelta(days=1)
    day_end = datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(days=1)
    for board in await repo.list_boards(session, active_only=True):
        if aware(board.created_at) >= day_end:
            continue
        if not await repo.claim_snapshot_day(session, board.code, day):
            continue
        period = domain.period_key(board.window, day_end - timedelta(seconds=1), tz)
        return await repo.take_snapshot(session, board.code, period, day, now)
    return -1


# -- tiers ----------------------------------------------------------------------------------


async def load_ladder(session: AsyncSession) -> tuple[Ladder, int]:
    rows = await repo.ladder_rows(session)
    tiers = tuple(
        Tier(r.code, r.name, int(r.min_growth), float(r.multiplier), tuple(r.benefits))
        for r in rows
    )
    return Ladder(tiers), max((int(r.version) for r in rows), default=0)


def tier_view(tier: Tier | None, level: int) -> dict[str, Any] | None:
    if tier is None:
        return None
    return {
        "code": tier.code,
        "name": tier.name,
        "level": level,
        "min_growth": tier.min_growth,
        "multiplier": tier.multiplier,
        "benefits": list(tier.benefits),
    }


def base_tier(ladder: Ladder) -> str | None:
    """The tier a user without a record holds: the lowest, when it needs no growth."""
    if ladder.tiers and ladder.tiers[0].min_growth <= 0:
        return ladder.tiers[0].code
    return None


def window_start(now: datetime, tz: ZoneInfo, days: int) -> date:
    """First business day of the rolling window of `days` days ending today."""
    return domain.local_day(now, tz) - timedelta(days=days - 1)


async def replace_ladder(session: AsyncSession, tiers: list[dict[str, Any]]) -> dict[str, Any]:
    ladder = [
        Tier(t["code"], t["name"], t["min_growth"], t["multiplier"], tuple(t["benefits"]))
        for t in tiers
    ]
    if (problem := domain.validate_ladder(ladder)) is not None:
        raise DomainError("invalid_ladder", problem, status=422)
    version = await repo.replace_ladder(session, tiers)
    return {"version": version, "tiers": [tier_view(t, i + 1) for i, t in enumerate(ladder)]}


def _tier_event(
    user_id: str,
    ladder: Ladder,
    version: int,
    tier: Tier | None,
    previous: str | None,
    growth: int,
    sequence: int,
    evaluate_at: datetime,
    now: datetime,
) -> OutgoingEvent:
    level, previous_level = ladder.level(tier.code if tier else None), ladder.level(previous)
    direction = "up" if level > previous_level else "down"
    TIER_CHANGES.labels(direction).inc()
    event = EngagementEvent(
        type="tier.changed",
        event_id=stable_id("tier.changed", user_id, sequence),
        user_id=user_id,
        data={
            "tier": tier.code if tier else None,
            "tier_name": tier.name if tier else None,
            "level": level,
            "multiplier": tier.multiplier if tier else 1.0,
            "previous_tier": previous,
            "previous_level": previous_level,
            "direction": direction,
            "growth": growth,
            "evaluate_at": evaluate_at.isoformat(),
            "sequence": sequence,
            "ladder": ladder.codes,
            "ladder_tiers": [{"code": t.code, "min_growth": t.min_growth} for t in ladder.tiers],
            "ladder_version": version,
        },
        occurred_at=now,
    )
    return OutgoingEvent(ENGAGEMENT_EVENTS, user_id, event.model_dump_json())


async def upgrade_tiers(
    session: AsyncSession, user_ids: list[str], settings: Settings, now: datetime
) -> list[OutgoingEvent]:
    """Raise at once the users whose growth in the window reached a higher tier."""
    if not user_ids:
        return []
    ladder, version = await load_ladder(session)
    if not ladder.tiers:
        return []
    days = settings.qualification_days
    since = window_start(now, settings.tz, days)
    growth = await repo.earned_totals(session, user_ids, since)
    current = await repo.lock_user_tiers(session, user_ids)
    events = []
    for user in user_ids:
        row = current.get(user)
        code = row.tier_code if row is not None else base_tier(ladder)
        window_growth = growth.get((user, "growth"), 0)
        up = domain.upgrade(ladder, code, window_growth)
        if up is None:
            continue
        sequence = (row.sequence if row is not None else 0) + 1
        evaluate_at = domain.term_end(now, days)
        await repo.save_user_tier(
            session,
            {
                "user_id": user,
                "tier_code": up.code,
                "since": now,
                "evaluate_at": evaluate_at,
                "sequence": sequence,
            },
        )
        events.append(
            _tier_event(user, ladder, version, up, code, window_growth, sequence, evaluate_at, now)
        )
    return events


async def evaluate_due_tiers(session: AsyncSession, settings: Settings, now: datetime) -> int:
    """Tiers whose term and grace are over: kept for another term when the window's growth
    still qualifies, lowered (or raised) to what it qualifies for otherwise."""
    grace = timedelta(days=settings.downgrade_grace_days)
    rows = await repo.claim_due_tiers(session, now - grace, settings.sweep_batch)
    if not rows:
        return 0
    ladder, version = await load_ladder(session)
    days = settings.qualification_days
    growth = await repo.earned_totals(
        session, [r.user_id for r in rows], window_start(now, settings.tz, days)
    )
    events = []
    for row in rows:
        window_growth = growth.get((row.user_id, "growth"), 0)
        change = domain.evaluate(ladder, row.tier_code, window_growth)
        if change.direction == "same":
            evaluate_at = max(domain.term_end(row.evaluate_at, days), now + grace)
            await repo.save_user_tier(session, {"user_id": row.user_id, "evaluate_at": evaluate_at})
            continue
        new_code = change.tier.code if change.tier else None
        sequence = row.sequence + 1
        evaluate_at = domain.term_end(now, days)
        await repo.save_user_tier(
            session,
            {
                "user_id": row.user_id,
                "tier_code": new_code,
                "since": now,
                "evaluate_at": evaluate_at,
                "sequence": sequence,
            },
        )
        events.append(
            _tier_event(
                row.user_id,
                ladder,
                version,
                change.tier,
                row.tier_code,
                window_growth,
                sequence,
                evaluate_at,
                now,
            )
        )
    if events:
        await add_to_outbox(session, messaging.outbox, events)
    return len(rows)


async def user_tier(
    session: AsyncSession, user_id: str, settings: Settings, now: datetime
) -> dict[str, Any]:
    ladder, _ = await load_ladder(session)
    if not ladder.tiers:
        raise DomainError("no_tiers", "no tier ladder is configured", status=404)
    tz, days = settings.tz, settings.qualification_days
    since = window_start(now, tz, days)
    row = await repo.user_tier(session, user_id)
    history = await repo.earned_by_day(session, user_id, "growth", since)
    growth = sum(amount for _, amount in history)
    code = row.tier_code if row is not None else base_tier(ladder)
    tier = ladder.get(code)
    above = ladder.above(tier)
    at_risk = None
    if row is not None and tier is not None and tier.min_growth > 0:
        decided_at = row.evaluate_at + timedelta(days=settings.downgrade_grace_days)
        first_day = window_start(decided_at, tz, days)
        kept = sum(amount for day, amount in history if day >= first_day)
        if kept < tier.min_growth:
            at_risk = {
                "date": domain.local_day(decided_at, tz).isoformat(),
                "growth_needed": tier.min_growth - kept,
            }
    return {
        "user_id": user_id,
        "tier": tier_view(tier, ladder.level(code)),
        "growth_in_window": growth,
        "qualification_days": days,
        "window_starts": since.isoformat(),
        "since": row.since if row is not None else None,
        "term_ends_at": row.evaluate_at if row is not None else None,
        "next_tier": tier_view(above, ladder.level(above.code)) if above else None,
        "growth_to_next": max(0, above.min_growth - growth) if above else None,
        "at_risk": at_risk,
    }


# -- badges ---------------------------------------------------------------------------------


def badge_view(row: Any) -> dict[str, Any]:
    return {
        "code": row.code,
        "name": row.name,
        "description": row.description,
        "icon_url": row.icon_url,
        "criteria": row.criteria,
        "reward": row.reward,
        "active": row.active,
        "created_at": row.created_at,
    }


async def create_badge(session: AsyncSession, values: dict[str, Any]) -> dict[str, Any]:
    row = await repo.insert_badge(session, values)
    if row is None:
        raise DomainError("badge_exists", f"a badge {values['code']} already exists")
    return badge_view(row)


async def load_stats(
    session: AsyncSession,
    user_ids: list[str],
    criteria: Sequence[dict[str, Any]],
    tz: ZoneInfo,
    now: datetime,
) -> dict[str, UserStats]:
    """What these users' badge criteria are measured against (only what the criteria use)."""
    stats = {u: UserStats() for u in user_ids}
    lifetime = {
        c["action"]
        for c in criteria
        if c["type"] == "first_action" or (c["type"] == "action_count" and not c.get("within_days"))
    }
    for (user, action), n in (
        await repo.action_totals(session, user_ids, sorted(lifetime))
    ).items():
        stats[user].actions[action] = n
    windowed = {
        (c["action"], int(c["within_days"]))
        for c in criteria
        if c["type"] == "action_count" and c.get("within_days")
    }
    for action, days in sorted(windowed):
        found = await repo.action_recent(session, user_ids, action, window_start(now, tz, days))
        for user, n in found.items():
            stats[user].recent[(action, days)] = n
    if any(c["type"] == "total_earned" for c in criteria):
        for (user, asset), n in (await repo.earned_totals(session, user_ids)).items():
            stats[user].earned[asset] = n
    if any(c["type"] in ("streak", "redemptions") for c in criteria):
        for (user, name), value in (await repo.counters(session, user_ids)).items():
            if name == BEST_STREAK:
                stats[user].best_streak = value
            elif name == REDEMPTIONS:
                stats[user].redemptions = value
    return stats


async def award_badges(
    session: AsyncSession, user_ids: list[str], tz: ZoneInfo, now: datetime
) -> list[OutgoingEvent]:
    """Award every active badge these users now meet and did not have; each award (and its
    reward grant, with an id derived from badge and user) happens once whatever is replayed."""
    if not user_ids:
        return []
    badges = await repo.list_badges(session, active_only=True)
    if not badges:
        return []
    have = await repo.awarded(session, user_ids)
    stats = await load_stats(session, user_ids, [b.criteria for b in badges], tz, now)
    wanted = []
    for user in user_ids:
        for badge in badges:
            if badge.code in have.get(user, {}):
                continue
            if domain.badge_earned(badge.criteria, stats[user]):
                grant_id = domain.badge_grant_id(badge.code, user) if badge.reward else None
                wanted.append(
                    {
                        "user_id": user,
                        "badge_code": badge.code,
                        "awarded_at": now,
                        "grant_id": grant_id,
                    }
                )
    new = await repo.award_badges(session, wanted)
    by_code = {b.code: b for b in badges}
    events = []
    for row in new:
        badge = by_code[row.badge_code]
        BADGES_AWARDED.labels(badge.code).inc()
        awarded = EngagementEvent(
            type="badge.awarded",
            event_id=stable_id("badge.awarded", badge.code, row.user_id),
            user_id=row.user_id,
            data={
                "badge": badge.code,
                "name": badge.name,
                "icon_url": badge.icon_url,
                "criteria": badge.criteria,
                "reward": badge.reward,
            },
            occurred_at=row.awarded_at,
        )
        events.append(OutgoingEvent(ENGAGEMENT_EVENTS, row.user_id, awarded.model_dump_json()))
        if badge.reward:
            command = GrantCommand(
                grant_id=domain.badge_grant_id(badge.code, row.user_id),
                user_id=row.user_id,
                asset=badge.reward["reward_type"],
                points=badge.reward["amount"],
                task_id=f"badge:{badge.code}",
                period_key="lifetime",
                completion=1,
                causation_event_id=awarded.event_id,
                occurred_at=row.awarded_at,
                reason=f"badge {badge.name}",
            )
            events.append(OutgoingEvent(REWARDS_GRANTS, row.user_id, command.model_dump_json()))
    return events


async def user_badges(
    session: AsyncSession, user_id: str, tz: ZoneInfo, now: datetime
) -> dict[str, Any]:
    badges = await repo.list_badges(session)
    have = (await repo.awarded(session, [user_id])).get(user_id, {})
    live = [b for b in badges if b.active and b.code not in have]
    stats = (await load_stats(session, [user_id], [b.criteria for b in live], tz, now))[user_id]
    earned = [{**badge_view(b), "awarded_at": have[b.code]} for b in badges if b.code in have]
    locked = []
    for b in live:
        current, target = domain.badge_progress(b.criteria, stats)
        locked.append(
            {**badge_view(b), "progress": {"current": min(current, target), "target": target}}
        )
    earned.sort(key=lambda b: b["awarded_at"])
    return {"user_id": user_id, "earned": earned, "locked": locked}
