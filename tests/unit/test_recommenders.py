"""The user-based recommender (the seed's collaborative filter) beside item-item: balance
peers within 0.7-1.3x weighted by points_match, nothing for a balance of 0, the caller's band;
and the offline evaluation both are compared with (bench/recall.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bench.recall import evaluate
from services.insights.recommendations import (
    DEFAULT,
    REASON_PEERS,
    RECOMMENDERS,
    Item,
    Model,
    Redeemed,
    UserView,
    item_item,
    user_based,
)
from services.insights.recommendations.user_based import peer_weights, points_match

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)


def item(item_id: str, category: str, price: int) -> Item:
    return Item(item_id, item_id, category, (), price, 10, None, None, True)


CATALOG = [
    item("tea", "drink", 1000),
    item("coffee", "drink", 1000),
    item("juice", "drink", 1100),
    item("book", "read", 900),
    item("comic", "read", 1000),
    item("film", "fun", 1200),
    item("gold", "fun", 100_000),
]

HISTORY = {
    "near-same-taste": ["tea", "book"],  # balance 1000: full points match, shares tea
    "edge-same-taste": ["tea", "comic"],  # balance 1290: at the band's edge, shares tea
    "far-same-taste": ["tea", "film"],  # balance 2000: outside 0.7-1.3x, not a peer
    "near-other-taste": ["juice"],  # balance 1000: a peer by balance, no shared item
}
BALANCES = {
    "near-same-taste": 1000,
    "edge-same-taste": 1290,
    "far-same-taste": 2000,
    "near-other-taste": 1000,
    "me": 1000,
}


def model() -> Model:
    popularity = {"film": 50, "juice": 5}
    return Model.from_history(CATALOG, HISTORY, popularity, NOW, balances=BALANCES)


def me(balance: int = 1000, redeemed: tuple[str, ...] = ("tea",)) -> UserView:
    return UserView("me", balance=balance, redeemed=[Redeemed(i, 1, NOW) for i in redeemed])


def test_points_match_is_one_for_the_same_balance_and_0_7_at_the_edges() -> None:
    assert points_match(1000, 1000) == 1.0
    assert points_match(1000, 700) == pytest.approx(0.7)
    assert points_match(1000, 1300) == pytest.approx(0.7)


def test_peers_are_within_0_7_to_1_3x_and_share_a_taste() -> None:
    weights = peer_weights(model().peers, "me", 1000, {"tea"})
    assert set(weights) == {"near-same-taste", "edge-same-taste"}
    # equal taste overlap (1 / sqrt(1 x 2)); the closer balance weighs more
    assert weights["near-same-taste"] == pytest.approx(1.0 / 2**0.5)
    assert weights["edge-same-taste"] == pytest.approx(0.71 / 2**0.5)
    # with no history every balance peer counts, by points match alone
    cold = peer_weights(model().peers, "me", 1000, set())
    assert cold == pytest.approx(
        {"near-same-taste": 1.0, "edge-same-taste": 0.71, "near-other-taste": 1.0}
    )


def test_user_based_ranks_what_the_closest_peers_redeemed() -> None:
    got = user_based.recommend(model(), me(), limit=5, now=NOW, tz=TZ, per_category=9)
    ranked = [r.item_id for r in got]
    assert ranked[:2] == ["book", "comic"]  # the full match's pick beats the edge peer's
    assert got[0].reason == REASON_PEERS
    assert "film" not in ranked[:2]  # popular, and redeemed by a taste twin, but not a peer
    assert "tea" not in ranked[:2]  # already redeemed: not scored again
    assert "gold" not in ranked  # out of the price band


def test_a_new_user_gets_what_their_balance_peers_redeemed() -> None:
    got = user_based.recommend(model(), me(redeemed=()), limit=3, now=NOW, tz=TZ, per_category=9)
    assert got[0].item_id == "tea"  # redeemed by both balance peers who count most


@pytest.mark.parametrize("arm", sorted(RECOMMENDERS))
def test_a_balance_of_zero_gets_nothing_to_redeem(arm: str) -> None:
    recommend = RECOMMENDERS[arm]
    assert recommend(model(), me(balance=0), limit=5, now=NOW, tz=TZ) == []
    assert recommend(model(), me(balance=0, redeemed=()), limit=5, now=NOW, tz=TZ) == []


@pytest.mark.parametrize("arm", sorted(RECOMMENDERS))
def test_the_callers_band_replaces_the_default_one(arm: str) -> None:
    recommend = RECOMMENDERS[arm]
    got = recommend(model(), me(), limit=9, now=NOW, tz=TZ, per_category=9, band=(950, 1050))
    assert {r.item_id for r in got} <= {"tea", "coffee", "comic"}
    assert got


def test_item_item_stays_the_default() -> None:
    assert DEFAULT == "item_item" and RECOMMENDERS[DEFAULT] is item_item.recommend


def test_the_offline_evaluation_scores_both_recommenders() -> None:
    result = evaluate(items=60, users=600, sample=200)
    assert set(result["recall"]) == {"item_item", "user_based", "popularity"}
    assert all(0.0 <= r <= 1.0 for r in result["recall"].values())
    assert result["recall"]["item_item"] > result["recall"]["popularity"]
