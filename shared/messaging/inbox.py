"""Inbox claims: which messages of a batch a consumer has not applied yet."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncSession


async def claim_inbox(
    session: AsyncSession, inbox: Table, consumer: str, message_ids: Sequence[str]
) -> set[str]:
    """Record message ids as applied; return those not applied before (the ones to apply now).

    A concurrent transaction inserting the same id blocks here until it commits or rolls back,
    so two consumers (say, during a rebalance) never both apply one message.
    """
    if not message_ids:
        return set()
    result = await session.execute(
        text(
            f"INSERT INTO {inbox.name} (consumer, message_id) "
            "SELECT :consumer, m FROM unnest(CAST(:ids AS text[])) AS t(m) "
            "ON CONFLICT DO NOTHING RETURNING message_id"
        ),
        {"consumer": consumer, "ids": list(dict.fromkeys(message_ids))},
    )
    return set(result.scalars().all())
