"""The recommender's reads: the model's inputs (catalog, co-redemptions, popularity, each
redeemer's items and balance) and one user's view."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

_MODEL_INPUTS = text(
    "SELECT (SELECT count(*) FROM catalog_items) AS items, "
    "(SELECT max(synced_at) FROM catalog_items) AS catalog_changed, "
    "r.redemptions, r.cancelled FROM (SELECT count(*) AS redemptions, "
    "count(*) FILTER (WHERE cancelled) AS cancelled FROM redemptions) r"
)


async def model_inputs(session: AsyncSession) -> tuple[Any, ...]:
    """A fingerprint of what the recommender is built from (unchanged: no rebuild)."""
    return tuple((await session.execute(_MODEL_INPUTS)).one())


async def catalog(session: AsyncSession) -> list[Row[Any]]:
    return list(await session.execute(text("SELECT * FROM catalog_items ORDER BY item_id")))


# Co-redemptions counted by PostgreSQL: users per item, and per pair of items both redeemed.
_ITEM_USERS = text(
    "SELECT item_id, count(DISTINCT user_id) AS users FROM redemptions WHERE NOT cancelled "
    "GROUP BY item_id"
)

_PAIR_USERS = text(
    """
    WITH owned AS (SELECT DISTINCT user_id, item_id FROM redemptions WHERE NOT cancelled)
    SELECT a.item_id AS i, b.item_id AS j, count(*) AS users
    FROM owned a JOIN owned b ON a.user_id = b.user_id AND a.item_id < b.item_id
    GROUP BY a.item_id, b.item_id
    """
)

_POPULARITY = text(
    "SELECT item_id, sum(quantity) AS units FROM redemptions "
    "WHERE NOT cancelled AND completed_at >= :since GROUP BY item_id"
)


async def co_redemptions(
    session: AsyncSession,
) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    users_of = {r.item_id: int(r.users) for r in await session.execute(_ITEM_USERS)}
    together = {(r.i, r.j): int(r.users) for r in await session.execute(_PAIR_USERS)}
    return users_of, together


# The user-based recommender's peers: who redeemed what, with their points balance (users
# without a balance row hold nothing and are nobody's peer).
_OWNED = text(
    """
    SELECT o.user_id, b.balance, array_agg(o.item_id ORDER BY o.item_id) AS items
    FROM (SELECT DISTINCT user_id, item_id FROM redemptions WHERE NOT cancelled) o
    JOIN balances b ON b.user_id = o.user_id AND b.asset = 'points'
    GROUP BY o.user_id, b.balance
    """
)


async def owned_items(session: AsyncSession) -> tuple[dict[str, list[str]], dict[str, int]]:
    """(user -> the items they redeemed, user -> their points balance)."""
    owned: dict[str, list[str]] = {}
    balances: dict[str, int] = {}
    for r in await session.execute(_OWNED):
        owned[r.user_id] = list(r.items)
        balances[r.user_id] = int(r.balance)
    return owned, balances


async def popularity(session: AsyncSession, since: datetime) -> dict[str, int]:
    return {r.item_id: int(r.units) for r in await session.execute(_POPULARITY, {"since": since})}


# One round trip for everything the recommender needs to know about one user.
_USER_VIEW = text(
    """
    SELECT
      (SELECT balance FROM balances WHERE user_id = :user_id AND asset = 'points') AS balance,
      (SELECT json_build_object('tier', tier, 'ladder', ladder) FROM user_tiers
        WHERE user_id = :user_id) AS tier,
      (SELECT coalesce(json_agg(json_build_array(item_id, quantity, completed_at)
                                ORDER BY completed_at DESC), '[]')
         FROM (SELECT item_id, quantity, completed_at FROM redemptions
               WHERE user_id = :user_id AND NOT cancelled
               ORDER BY completed_at DESC LIMIT 500) r) AS redeemed,
      (SELECT coalesce(json_agg(json_build_array(expires_at, points) ORDER BY expires_at), '[]')
         FROM expiring_points
         WHERE user_id = :user_id AND expires_at > :now AND expires_at <= :horizon) AS expiring
    """
)


async def user_view(
    session: AsyncSession, user_id: str, now: datetime, horizon: datetime
) -> Row[Any]:
    result = await session.execute(_USER_VIEW, {"user_id": user_id, "now": now, "horizon": horizon})
    return result.one()
