"""Recommendations, as pure functions over a model built from insights' own tables (the model
kept and served per user is `service/recommendations.py`).

Two recommenders, chosen per user by the `recommender` experiment (arms `item_item` and
`user_based`; `item_item` when no such experiment runs):
- `item_item.py`: 60% item-item collaborative filtering on redemptions plus 40% content
  similarity of the items' texts (`text.py`); the most redeemed of the last days for a user
  with no redemptions.
- `user_based.py`: the seed's user-based collaborative filter: peers within 0.7-1.3x the
  user's balance, weighted by `points_match` (and shared tastes).

Both offer only what `candidates.py` allows: on sale, in stock, within the user's per-item
limit and tier, priced 0.5-1.5x the user's balance (or the band the caller names); a balance
of 0 gets nothing to redeem. At most `per_category` of one category are kept. `model.py` is
what they know (`Model`) and who they recommend to (`UserView`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from services.insights.recommendations import item_item, user_based
from services.insights.recommendations.candidates import (
    BAND_HIGH,
    BAND_LOW,
    REASON_ALSO_REDEEMED,
    REASON_EXPIRING,
    REASON_FITS_BALANCE,
    REASON_PEERS,
    REASON_POPULAR,
    REASON_SAME_CATEGORY,
    affordable,
    tier_allows,
    when_text,
    within_limit,
)
from services.insights.recommendations.model import (
    Item,
    Model,
    Peers,
    Recommendation,
    Redeemed,
    UserView,
    co_redemption_counts,
    co_redemption_similarity,
)
from services.insights.recommendations.text import (
    content_similarity,
    cosine,
    tfidf_vectors,
    tokenize,
)

Recommend = Callable[..., list[Recommendation]]

# The experiment arms, by name; DEFAULT serves everyone when no experiment picks for them.
RECOMMENDERS: dict[str, Recommend] = {
    "item_item": item_item.recommend,
    "user_based": user_based.recommend,
}
DEFAULT = "item_item"
recommend = item_item.recommend


def recall_at_k(
    recommended: Mapping[str, Sequence[str]], held_out: Mapping[str, set[str]], k: int
) -> float:
    """Share of users whose held-out redemptions include one of their top-k items."""
    users = [u for u in held_out if held_out[u]]
    if not users:
        return 0.0
    hits = sum(1 for u in users if set(recommended.get(u, ())[:k]) & held_out[u])
    return hits / len(users)


__all__ = [
    "BAND_HIGH",
    "BAND_LOW",
    "DEFAULT",
    "REASON_ALSO_REDEEMED",
    "REASON_EXPIRING",
    "REASON_FITS_BALANCE",
    "REASON_PEERS",
    "REASON_POPULAR",
    "REASON_SAME_CATEGORY",
    "RECOMMENDERS",
    "Item",
    "Model",
    "Peers",
    "Recommend",
    "Recommendation",
    "Redeemed",
    "UserView",
    "affordable",
    "co_redemption_counts",
    "co_redemption_similarity",
    "content_similarity",
    "cosine",
    "recall_at_k",
    "recommend",
    "tfidf_vectors",
    "tier_allows",
    "tokenize",
    "when_text",
    "within_limit",
]
