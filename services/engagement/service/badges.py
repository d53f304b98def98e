"""Badges: defining them, what users' criteria are measured against, awarding them (with
their reward grants) as a batch changes those measures, and a user's badges as shown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import domain
from services.engagement import repository as repo
from services.engagement.domain import BEST_STREAK, REDEMPTIONS, UserStats, window_start
from services.engagement.metrics import BADGES_AWARDED
from shared.errors import DomainError
from shared.events import (
    ENGAGEMENT_EVENTS,
    REWARDS_GRANTS,
    EngagementEvent,
    GrantCommand,
    stable_id,
)
from shared.messaging import OutgoingEvent


async def create_badge(session: AsyncSession, values: dict[str, Any]) -> repo.Badge:
    badge = await repo.insert_badge(session, values)
    if badge is None:
        raise DomainError("badge_exists", f"a badge {values['code']} already exists")
    return badge


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
        BADGES_AWARDED.labels(row.badge_code).inc()
        events += _award_events(by_code[row.badge_code], row)
    return events


def _award_events(badge: Any, award: Any) -> list[OutgoingEvent]:
    """badge.awarded for a new award, and the grant of the badge's reward if it has one."""
    awarded = EngagementEvent(
        type="badge.awarded",
        event_id=stable_id("badge.awarded", badge.code, award.user_id),
        user_id=award.user_id,
        data={
            "badge": badge.code,
            "name": badge.name,
            "icon_url": badge.icon_url,
            "criteria": badge.criteria,
            "reward": badge.reward,
        },
        occurred_at=award.awarded_at,
    )
    events = [OutgoingEvent(ENGAGEMENT_EVENTS, award.user_id, awarded.model_dump_json())]
    if badge.reward:
        command = GrantCommand(
            grant_id=domain.badge_grant_id(badge.code, award.user_id),
            user_id=award.user_id,
            asset=badge.reward["reward_type"],
            points=badge.reward["amount"],
            task_id=f"badge:{badge.code}",
            period_key="lifetime",
            completion=1,
            causation_event_id=awarded.event_id,
            occurred_at=award.awarded_at,
            reason=f"badge {badge.name}",
        )
        events.append(OutgoingEvent(REWARDS_GRANTS, award.user_id, command.model_dump_json()))
    return events


async def user_badges(
    session: AsyncSession, user_id: str, tz: ZoneInfo, now: datetime
) -> dict[str, Any]:
    badges = await repo.list_badges(session)
    have = (await repo.awarded(session, [user_id])).get(user_id, {})
    live = [b for b in badges if b.active and b.code not in have]
    stats = (await load_stats(session, [user_id], [b.criteria for b in live], tz, now))[user_id]
    earned = [{**asdict(b), "awarded_at": have[b.code]} for b in badges if b.code in have]
    locked = []
    for b in live:
        current, target = domain.badge_progress(b.criteria, stats)
        locked.append(
            {**asdict(b), "progress": {"current": min(current, target), "target": target}}
        )
    earned.sort(key=lambda b: b["awarded_at"])
    return {"user_id": user_id, "earned": earned, "locked": locked}
