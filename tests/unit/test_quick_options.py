"""The quick options' pure rules (services/exchange/quick_options.py): the band, the order,
the expiry warning and the fastest tasks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.exchange import quick_options as q

NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)


def item(item_id: str, price: int, stock: int = 5) -> dict[str, Any]:
    return {"id": item_id, "name": item_id, "points_price": price, "stock": stock}


def ids(offers: list[q.Offer]) -> list[str]:
    return [o.item["id"] for o in offers]


def test_700_points_get_the_490_item_not_200_nor_900() -> None:
    catalog = [item("200", 200), item("490", 490), item("900", 900)]
    offers = q.choose([], catalog, 700, {})
    assert ids(offers) == ["490"]  # 0.7 x 700, inside 0.3-1.0 x; 200 < 210, 900 > 700
    assert offers[0].balance_after == 210 and offers[0].source == "catalog"
    assert q.price_band(700) == (210, 700)


def test_below_100_points_nothing_is_offered() -> None:
    catalog = [item("a", 50), item("b", 70), item("c", 99)]
    assert q.price_band(99) is None
    assert q.choose(catalog, catalog, 99, {}) == []
    assert ids(q.choose([], catalog, 100, {})) == ["b", "a", "c"]  # 100 is enough: 30..100


def test_nearest_0_7x_first_then_the_most_redeemed_of_the_week() -> None:
    catalog = [
        item("edge", 1000),
        item("near", 690),
        item("aim-quiet", 700),
        item("aim-busy", 700),
        item("empty", 700, stock=0),
        item("low", 300),
    ]
    offers = q.choose([], catalog, 1000, {"aim-busy": 12, "aim-quiet": 3})
    assert ids(offers) == ["aim-busy", "aim-quiet", "near"]


def test_the_recommenders_items_come_first_the_catalog_fills_up() -> None:
    recommended = [item("liked", 950), item("too-dear", 1200), item("near", 690)]
    catalog = [item("near", 690), item("aim", 700), item("other", 500)]
    offers = q.choose(recommended, catalog, 1000, {})
    assert ids(offers) == ["near", "liked", "aim"]
    assert [o.source for o in offers] == ["recommender", "recommender", "catalog"]
    # Without the recommender the catalog alone decides.
    assert ids(q.choose([], catalog, 1000, {})) == ["aim", "near", "other"]


@given(
    st.integers(min_value=0, max_value=10**7),
    st.lists(st.integers(min_value=1, max_value=10**7), max_size=12),
)
def test_every_offer_is_in_the_band_and_at_most_three(balance: int, prices: list[int]) -> None:
    catalog = [item(f"i{n}", p) for n, p in enumerate(prices)]
    offers = q.choose([], catalog, balance, {})
    assert len(offers) <= 3
    for offer in offers:
        assert balance >= 100
        assert 0.3 * balance <= offer.item["points_price"] <= balance
        assert offer.balance_after >= 0


def test_the_expiry_warning_only_when_the_expiring_points_cover_the_price() -> None:
    assert q.expiry_warning(0, 100, 7) is None
    assert q.expiry_warning(99, 100, 7) is None
    warning = q.expiry_warning(120, 100, 7)
    assert warning is not None and "120" in warning and "100" in warning and "7 days" in warning


def test_points_needed_to_reach_an_option() -> None:
    assert q.points_needed(99, [50, 300]) == 1  # 100 is the floor
    assert q.points_needed(0, [250]) == 250  # the cheapest item
    assert q.points_needed(150, [250]) == 100
    assert q.points_needed(150, [120]) == 0  # affordable already
    assert q.points_needed(40, []) == 0  # nothing on sale: points do not help


def rule(rule_id: str, reward: int, **fields: Any) -> dict[str, Any]:
    return {"id": rule_id, "name": rule_id, "action": "act", "reward_points": reward, **fields}


def test_the_two_tasks_that_earn_the_gap_soonest() -> None:
    rules = [
        rule("daily-small", 10, period="day", max_per_period=1),  # 6 days: 60 in 6 completions
        rule("unlimited", 20),  # 3 completions today
        rule("big-once", 100, period="once"),  # 1 completion
        rule("five-steps", 100, target_count=5),  # 1 completion, 5 actions
        rule("checkin", 30, kind="checkin"),  # one a day: 2 completions, 1 more day
        rule("spend", 1, kind="amount_ratio"),  # pays by amount: not ranked
        rule("off", 1000, active=False),
        rule("later", 1000, starts_at=(NOW + timedelta(days=1)).isoformat()),
        rule("ended", 1000, ends_at=(NOW - timedelta(days=1)).isoformat()),
        rule("coins", 1000, reward_type="coins"),
        rule("small-once", 10, period="once"),  # can never earn 60 alone
    ]
    fastest = q.fastest_tasks(rules, 60, NOW, limit=10)
    assert [t["task_id"] for t in fastest] == [
        "big-once",
        "unlimited",
        "five-steps",
        "checkin",
        "daily-small",
    ]
    assert fastest[0] == {
        "task_id": "big-once",
        "name": "big-once",
        "action": "act",
        "reward_points": 100,
        "completions": 1,
        "actions": 1,
        "days": 0,
    }
    assert fastest[3]["days"] == 1 and fastest[4]["days"] == 5
    assert [t["task_id"] for t in q.fastest_tasks(rules, 60, NOW)] == ["big-once", "unlimited"]
    assert q.fastest_tasks(rules, 0, NOW) == []
