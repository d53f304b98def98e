"""The user-based recommender (arm `user_based`), the seed's collaborative filter: the
user's peers are the users whose points balance is within 0.7-1.3x theirs, each weighted by
how closely the balances match (`points_match` = 1 - |theirs - yours| / yours, so 1 for the
same balance and 0.7 at the band's edges) and, for a user with redemptions, by how much their
tastes overlap (cosine of the sets of items both redeemed; a peer with nothing in common
counts for nothing). An item scores the summed weight of the peers who redeemed it; what the
user redeemed already is not scored again. A user with no redemptions gets what their
balance peers redeemed most."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

from services.insights.recommendations.candidates import (
    EXPIRY_BOOST,
    REASON_FITS_BALANCE,
    REASON_PEERS,
    REASON_POPULAR,
    Scored,
    candidates,
    expiring_reason,
    fits_expiring,
    pick,
)
from services.insights.recommendations.model import Item, Model, Peers, Recommendation, UserView

PEERS_LOW, PEERS_HIGH = 0.7, 1.3
MAX_BALANCE_PEERS = 2000  # a user with no redemptions: the peers nearest their balance


def points_match(balance: int, peer_balance: int) -> float:
    """How closely a peer's balance matches the user's: 1 equal, 0.7 at 0.7x or 1.3x."""
    return 1.0 - abs(peer_balance - balance) / balance


def peer_weights(peers: Peers, user_id: str, balance: int, history: set[str]) -> dict[str, float]:
    """Each peer's weight: their points match, times the taste overlap when the user has a
    history (then only peers who redeemed one of the same items count)."""
    if balance <= 0:
        return {}
    low, high = PEERS_LOW * balance, PEERS_HIGH * balance
    weights: dict[str, float] = {}
    if history:
        shared: dict[str, int] = defaultdict(int)
        for item in history:
            for peer in peers.redeemers.get(item, ()):
                shared[peer] += 1
        for peer, overlap in shared.items():
            theirs = peers.balances[peer]
            if peer == user_id or not low <= theirs <= high:
                continue
            taste = overlap / math.sqrt(len(history) * len(peers.owned[peer]))
            weights[peer] = points_match(balance, theirs) * taste
        return weights
    band = peers.in_band(low, high)
    nearest = sorted(band, key=lambda entry: (abs(entry[0] - balance), entry[1]))
    for theirs, peer in nearest[:MAX_BALANCE_PEERS]:
        if peer != user_id:
            weights[peer] = points_match(balance, theirs)
    return weights


def recommend(
    model: Model,
    user: UserView,
    *,
    limit: int,
    now: datetime,
    tz: ZoneInfo,
    per_category: int = 2,
    band: tuple[int, int] | None = None,
) -> list[Recommendation]:
    """The user's top `limit` items with a reason each, best first."""
    history = {r.item_id for r in user.redeemed if r.item_id in model.items}
    offered = candidates(model, user, now, tz, band)
    if not offered:
        return []
    weights = peer_weights(model.peers, user.user_id, user.balance, history)
    votes: dict[str, float] = defaultdict(float)
    for peer, weight in weights.items():
        for item in model.peers.owned[peer]:
            if item not in history:
                votes[item] += weight
    scored = _scored(model, user, offered, votes)

    def reason(item: Item, fits: bool) -> str:
        if fits:
            return expiring_reason(item, user, now, tz)
        if votes.get(item.item_id, 0.0) > 0:
            return REASON_PEERS
        if model.popularity.get(item.item_id, 0) > 0:
            return REASON_POPULAR
        return REASON_FITS_BALANCE

    return pick(scored, limit, per_category, reason)


def _scored(
    model: Model, user: UserView, offered: list[Item], votes: dict[str, float]
) -> list[Scored]:
    """The peers' votes scaled so the best candidate scores 1, popularity breaking ties."""
    top = max((votes.get(i.item_id, 0.0) for i in offered), default=0.0)
    popularity = model.popularity
    top_popularity = max((popularity.get(i.item_id, 0) for i in offered), default=0)
    expiring_points = sum(points for _, points in user.expiring)
    scored: list[Scored] = []
    for item in offered:
        iid = item.item_id
        score = votes.get(iid, 0.0) / top if top else 0.0
        score += 0.01 * (popularity.get(iid, 0) / top_popularity if top_popularity else 0.0)
        fits = fits_expiring(item, user.balance, expiring_points)
        if fits:
            score += EXPIRY_BOOST
        scored.append((-score, abs(item.points_price - user.balance), iid, item, fits))
    scored.sort(key=lambda entry: entry[:3])
    return scored
