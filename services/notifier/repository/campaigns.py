"""Campaigns and their audiences (explicit users, a tier's members from the
`user_tiers` read model, or the ledger's holders)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.models import campaigns


@dataclass(frozen=True)
class Campaign:
    """A campaign as operators read it, with its notifications counted by status."""

    id: str
    name: str
    audience: dict[str, Any]
    category: str
    template: str | None
    title: str | None
    body: str | None
    send_at: datetime
    status: str  # scheduled -> expanding -> done
    recipients: int
    created_at: datetime
    expanded_at: datetime | None
    counts: dict[str, int] = field(default_factory=dict)


_SHOWN = [f.name for f in fields(Campaign) if f.name != "counts"]


async def insert_campaign(session: AsyncSession, values: dict[str, Any]) -> bool:
    result = await session.execute(
        text(
            "INSERT INTO campaigns (id, name, audience, category, template, title, body, "
            "variables, send_at) VALUES (:id, :name, CAST(:audience AS jsonb), :category, "
            ":template, :title, :body, CAST(:variables AS jsonb), :send_at) "
            "ON CONFLICT (id) DO NOTHING RETURNING id"
        ),
        values,
    )
    return result.scalar_one_or_none() is not None


async def campaign(session: AsyncSession, campaign_id: str, lock: bool = False) -> Any:
    query = campaigns.select().where(campaigns.c.id == campaign_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).one_or_none()


async def campaigns_with_counts(session: AsyncSession, rows: Sequence[Any]) -> list[Campaign]:
    """The campaigns of `rows`, each with its notifications counted by status (one query)."""
    counts: defaultdict[str, dict[str, int]] = defaultdict(dict)
    if rows:
        found = await session.execute(
            text(
                "SELECT campaign_id, status, count(*) FROM notifications "
                "WHERE campaign_id = ANY(:ids) GROUP BY campaign_id, status"
            ),
            {"ids": [r.id for r in rows]},
        )
        for campaign_id, status, n in found:
            counts[campaign_id][status] = int(n)
    return [Campaign(**{f: getattr(r, f) for f in _SHOWN}, counts=counts[r.id]) for r in rows]


async def campaigns_page(session: AsyncSession, limit: int) -> list[Campaign]:
    rows = await session.execute(
        campaigns.select().order_by(campaigns.c.created_at.desc()).limit(limit)
    )
    return await campaigns_with_counts(session, list(rows))


async def due_campaign(session: AsyncSession, now: datetime) -> Any:
    """The next campaign to expand, locked (another replica takes the next one)."""
    rows = await session.execute(
        text(
            "SELECT * FROM campaigns WHERE status IN ('scheduled', 'expanding') "
            "AND send_at <= :now ORDER BY send_at LIMIT 1 FOR UPDATE SKIP LOCKED"
        ),
        {"now": now},
    )
    return rows.one_or_none()


async def advance_campaign(
    session: AsyncSession, campaign_id: str, cursor: str | None, added: int, done: bool
) -> None:
    await session.execute(
        text(
            "UPDATE campaigns SET cursor = :cursor, recipients = recipients + :added, "
            "status = :status, expanded_at = CASE WHEN :done THEN now() END WHERE id = :id"
        ),
        {
            "id": campaign_id,
            "cursor": cursor,
            "added": added,
            "status": "done" if done else "expanding",
            "done": done,
        },
    )


async def tier_members(session: AsyncSession, tier: str, after: str, limit: int) -> list[str]:
    rows = await session.execute(
        text(
            "SELECT user_id FROM user_tiers WHERE tier = :tier AND user_id > :after "
            "ORDER BY user_id LIMIT :limit"
        ),
        {"tier": tier, "after": after, "limit": limit},
    )
    return [r[0] for r in rows]


async def set_tiers(session: AsyncSession, rows: Sequence[tuple[str, str | None, int]]) -> None:
    """(user, tier or None, sequence): the latest tier per user (a replayed older change
    does not win over a newer one)."""
    if not rows:
        return
    await session.execute(
        text(
            "INSERT INTO user_tiers (user_id, tier, sequence) "
            "SELECT * FROM unnest(CAST(:u AS text[]), CAST(:t AS text[]), CAST(:s AS bigint[])) "
            "ON CONFLICT (user_id) DO UPDATE SET tier = EXCLUDED.tier, "
            "sequence = EXCLUDED.sequence WHERE user_tiers.sequence < EXCLUDED.sequence"
        ),
        {"u": [r[0] for r in rows], "t": [r[1] for r in rows], "s": [r[2] for r in rows]},
    )
