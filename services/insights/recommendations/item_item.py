"""The item-item recommender (arm `item_item`): 60% item-item collaborative filtering on
redemptions (cosine of co-redemption counts between the candidate and what the user
redeemed, scaled so the best candidate scores 1) plus 40% content similarity (cosine of
TF-IDF vectors over the item's name, category and tags, best match with what the user
redeemed). A user with none (cold start) gets the items most redeemed in the last days."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from services.insights.recommendations.candidates import (
    EXPIRY_BOOST,
    REASON_ALSO_REDEEMED,
    REASON_FITS_BALANCE,
    REASON_POPULAR,
    REASON_SAME_CATEGORY,
    Scored,
    candidates,
    expiring_reason,
    fits_expiring,
    pick,
)
from services.insights.recommendations.model import Item, Model, Recommendation, UserView

CF_WEIGHT = 0.6
CONTENT_WEIGHT = 0.4


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
    items = model.items
    history = sorted({r.item_id for r in user.redeemed if r.item_id in items})
    categories = {items[i].category for i in history}
    scored = _scored(model, user, candidates(model, user, now, tz, band), history)

    def reason(item: Item, fits: bool) -> str:
        if fits:
            return expiring_reason(item, user, now, tz)
        if item.category in categories:
            return REASON_SAME_CATEGORY
        if history:
            source, best = "", 0.0
            for seen in history:
                sim = model.similar.get(seen, {}).get(item.item_id, 0.0)
                if sim > best:
                    source, best = seen, sim
            if source:
                return REASON_ALSO_REDEEMED.format(name=items[source].name)
        elif model.popularity.get(item.item_id, 0) > 0:
            return REASON_POPULAR
        return REASON_FITS_BALANCE

    return pick(scored, limit, per_category, reason)


def _scored(
    model: Model, user: UserView, candidates: list[Item], history: Sequence[str]
) -> list[Scored]:
    """Each candidate's (-score, distance from the balance, id, item, fits the expiring
    points), best first."""
    balance = user.balance
    popularity = model.popularity
    top_popularity = max((popularity.get(i.item_id, 0) for i in candidates), default=0)
    # Rows of the items the user redeemed: an item is never its own neighbour in them.
    similar_rows = [model.similar.get(seen, {}) for seen in history]
    content_rows = [model.content.get(seen, {}) for seen in history]
    cf = {
        item.item_id: sum(row.get(item.item_id, 0.0) for row in similar_rows) for item in candidates
    }
    top_cf = max(cf.values(), default=0.0)
    expiring_points = sum(points for _, points in user.expiring)
    scored: list[Scored] = []
    for item in candidates:
        iid = item.item_id
        popular = popularity.get(iid, 0) / top_popularity if top_popularity else 0.0
        if history:
            content = max((row.get(iid, 0.0) for row in content_rows), default=0.0)
            score = (
                CF_WEIGHT * (cf[iid] / top_cf if top_cf else 0.0)
                + CONTENT_WEIGHT * content
                + 0.01 * popular  # breaks ties between items nobody like the user redeemed
            )
        else:
            score = popular
        fits = fits_expiring(item, balance, expiring_points)
        if fits:
            score += EXPIRY_BOOST
        scored.append((-score, abs(item.points_price - balance), iid, item, fits))
    scored.sort(key=lambda entry: entry[:3])
    return scored
