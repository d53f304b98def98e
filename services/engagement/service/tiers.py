"""Member tiers: the ladder, upgrades as growth comes in, the end-of-term evaluation (kept,
lowered or raised), tier.changed events, and a user's tier as shown."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import domain
from services.engagement import repository as repo
from services.engagement.domain import Ladder, Tier, window_start
from services.engagement.metrics import TIER_CHANGES
from services.engagement.models import messaging
from services.engagement.settings import Settings
from shared.errors import DomainError
from shared.events import ENGAGEMENT_EVENTS, EngagementEvent, stable_id
from shared.messaging import OutgoingEvent, add_to_outbox


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
