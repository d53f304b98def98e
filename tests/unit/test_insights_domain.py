"""insights' pure rules: rollup counters, order-independent merges, statistics, recommender."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.insights import stats
from services.insights.domain import (
    Cohort,
    Holding,
    apply_balances,
    cohort_deltas,
    kpi_day,
    ledger_counters,
    merge_cohort,
)
from services.insights.recommendations import (
    REASON_POPULAR,
    Item,
    Model,
    Redeemed,
    UserView,
    recall_at_k,
    recommend,
    tokenize,
)
from shared.events import LedgerEvent, LotDraw

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)  # Monday noon in Shanghai


# -- statistics against published table values -------------------------------------------------


@pytest.mark.parametrize(
    ("t", "df", "p"),
    [(2.228, 10, 0.05), (12.706, 1, 0.05), (2.042, 30, 0.05), (3.169, 10, 0.01), (1.96, 1e9, 0.05)],
)
def test_student_t_matches_the_table(t: float, df: float, p: float):
    assert stats.student_t_two_sided_p(t, df) == pytest.approx(p, rel=2e-3)


@pytest.mark.parametrize(
    ("x", "df", "p"),
    [
        (3.841, 1, 0.05),
        (5.991, 2, 0.05),
        (16.266, 3, 0.001),
        (18.307, 10, 0.05),
        (10.828, 1, 0.001),
    ],
)
def test_chi_square_matches_the_table(x: float, df: int, p: float):
    assert stats.chi_square_sf(x, df) == pytest.approx(p, rel=2e-3)


@given(st.floats(0.01, 60), st.integers(1, 40))
def test_chi_square_sf_agrees_with_closed_forms(x: float, df: int):
    if df == 2:  # exp(-x/2)
        assert stats.chi_square_sf(x, df) == pytest.approx(math.exp(-x / 2), rel=1e-9, abs=1e-300)
    if df == 1:
        expected = math.erfc(math.sqrt(x / 2))
        assert stats.chi_square_sf(x, df) == pytest.approx(expected, rel=1e-7, abs=1e-300)
    assert 0.0 <= stats.chi_square_sf(x, df) <= 1.0


def test_two_proportion_z_of_a_known_case():
    test = stats.two_proportion_z(100, 1000, 130, 1000)
    assert test is not None
    assert test.statistic == pytest.approx(0.03 / math.sqrt(0.115 * 0.885 * 0.002))
    assert test.p_value == pytest.approx(math.erfc(test.statistic / math.sqrt(2)))
    assert stats.two_proportion_z(0, 0, 1, 10) is None


def test_welch_t_of_a_known_case():
    # two samples: means 20 and 22, variances 4 and 9, n = 10 and 12
    test = stats.welch_t(20.0, 4.0, 10, 22.0, 9.0, 12)
    assert test is not None
    se2 = 4 / 10 + 9 / 12
    assert test.statistic == pytest.approx(2 / math.sqrt(se2))
    assert test.df == pytest.approx(se2**2 / ((4 / 10) ** 2 / 9 + (9 / 12) ** 2 / 11))
    assert test.p_value == pytest.approx(stats.student_t_two_sided_p(test.statistic, test.df))
    assert 0.05 < test.p_value < 0.1


def test_srm_flags_a_starved_arm_and_passes_a_fair_split():
    fair = stats.srm_chi_square([5012, 4988], [0.5, 0.5])
    starved = stats.srm_chi_square([1000, 800], [1, 1])
    assert fair is not None and fair.p_value > 0.5
    assert starved is not None and starved.p_value < 0.001


def test_wilson_interval_stays_inside_zero_and_one():
    assert stats.wilson_interval(0, 10)[0] == 0.0  # type: ignore[index]
    low, high = stats.wilson_interval(10, 10)  # type: ignore[misc]
    assert high == pytest.approx(1.0) and 0.6 < low < 0.75


# -- rollups ---------------------------------------------------------------------------------


def event(type_: str, points: int, balance: int, entry_id: int, at: datetime = NOW, **kw):
    return LedgerEvent(
        type=type_,
        entry_id=entry_id,
        user_id=kw.pop("user_id", "ann"),
        points=points,
        balance_after=balance,
        idempotency_key=f"k{entry_id}",
        occurred_at=at,
        **kw,
    )


def test_ledger_counters_and_the_exact_earn_to_redeem_cycle():
    lots = [
        LotDraw(lot_id="a", points=30, earned_at=NOW - timedelta(days=3)),
        LotDraw(lot_id="b", points=70, earned_at=NOW - timedelta(days=13)),
    ]
    counts = ledger_counters(
        [
            event("credited", 100, 100, 1),
            event("pending", 0, 100, 2, pending=40),
            event("debited", -100, 0, 3, lots=lots),
            event("refunded", 20, 20, 4),
            event("expired", -5, 15, 5),
        ],
        TZ,
    )
    day = date(2026, 11, 30)
    assert counts[(day, "points", "issued")] == 140
    assert counts[(day, "points", "redeemed")] == 100
    assert counts[(day, "points", "refunded")] == 20
    assert counts[(day, "points", "expired")] == 5
    seconds = (
        counts[(day, "points", "cycle_point_seconds")] / counts[(day, "points", "cycle_points")]
    )
    assert seconds / 86_400 == pytest.approx((30 * 3 + 70 * 13) / 100)


def test_holders_cross_the_threshold_and_late_entries_change_nothing():
    accounts: dict[tuple[str, str], Holding] = {}
    counts = apply_balances(
        accounts,
        [
            event("credited", 150, 150, 10),
            event("credited", 10, 10, 5),  # older than what was applied: ignored
            event("debited", -100, 50, 11),
            event("credited", 60, 110, 12),
        ],
        100,
        TZ,
    )
    day = date(2026, 11, 30)
    assert counts[(day, "points", "holder_opens")] == 2
    assert counts[(day, "points", "holder_closes")] == 1
    assert accounts[("ann", "points")] == Holding(110, 12, True)


@given(
    st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.booleans()), min_size=1, max_size=8),
    st.randoms(),
)
def test_a_cohort_row_lands_on_the_same_state_and_counters_in_any_order(sightings, rnd):
    """Rows merged from sightings in any order (and any batching) count the same."""

    def run(order):
        state = Cohort(None, (False, False))
        total: Counter = Counter()
        for offset, a, b in order:
            new = merge_cohort(state, date(2026, 1, 1) + timedelta(days=offset), (a, b))
            total.update(cohort_deltas(state, new, ("rows", "a", "b")))
            state = new
        return state, +total

    shuffled = list(sightings)
    rnd.shuffle(shuffled)
    assert run(sightings) == run(shuffled)
    state, total = run(sightings)
    assert total[(state.day, "", "rows")] == 1
    assert sum(v for k, v in total.items() if k[2] == "rows") == 1


def test_kpi_day_rates():
    counts = {
        ("", "dau"): 7,
        ("", "tasks_started"): 4,
        ("", "tasks_completed"): 3,
        ("", "push_sent"): 10,
        ("", "push_opened"): 2,
        ("", "redeemers"): 1,
        ("points", "issued"): 1000,
        ("points", "redeemed"): 300,
        ("points", "refunded"): 100,
        ("points", "expired"): 50,
        ("points", "holder_opens"): 3,
    }
    day = kpi_day(date(2026, 11, 30), counts, holders_at_start=1)
    assert day["task_completion_rate"] == 0.75
    assert day["push_open_rate"] == 0.2
    assert day["points_redeemed"] == 200 and day["redemption_rate"] == 0.2
    assert day["holders"] == 4 and day["redeemer_rate"] == 0.25
    assert day["expiry_rate"] == 0.05
    assert day["earn_to_redeem_days"] is None


# -- recommender -----------------------------------------------------------------------------


def test_chinese_names_are_cut_into_characters_and_pairs_without_stop_words():
    assert tokenize("星巴克 Coffee 券 the") == [
        "星",
        "巴",
        "克",
        "星巴",
        "巴克",
        "coffee",
        "券",
        "the",
    ]
    # An all-Chinese name has terms at all (a whitespace tokenizer would see one word).
    assert "咖啡" in tokenize("瑞幸咖啡券")


def item(item_id: str, category: str, price: int, **kw) -> Item:
    return Item(
        item_id=item_id,
        name=kw.pop("name", item_id),
        category=category,
        tags=tuple(kw.pop("tags", ())),
        points_price=price,
        stock=kw.pop("stock", 10),
        per_user_limit=kw.pop("per_user_limit", None),
        min_tier=kw.pop("min_tier", None),
        available=kw.pop("available", True),
    )


CATALOG = [
    item("latte", "coffee", 100, name="星巴克拿铁咖啡券"),
    item("mocha", "coffee", 110, name="瑞幸摩卡咖啡券"),
    item("flat", "coffee", 90, name="星巴克馥芮白咖啡券"),
    item("mug", "home", 120, name="星巴克马克杯"),
    item("movie", "fun", 100, name="电影票"),
    item("vip", "fun", 100, name="金卡专享", min_tier="gold"),
    item("gone", "fun", 100, name="售罄", stock=0),
    item("dear", "fun", 200, name="贵"),
    item("once", "fun", 100, name="限兑一次", per_user_limit={"period": "lifetime", "quantity": 1}),
]


def model(user_items, popularity=None) -> Model:
    return Model.from_history(CATALOG, user_items, popularity or {}, NOW)


def test_recommendations_filter_score_cap_and_explain():
    m = model({"fan1": ["latte", "mug"], "fan2": ["latte", "mug"], "fan3": ["movie"]})
    user = UserView(
        "me", balance=120, redeemed=[Redeemed("latte", 1, NOW), Redeemed("once", 1, NOW)]
    )
    got = recommend(m, user, limit=5, now=NOW, tz=TZ)
    ids = [r.item_id for r in got]
    assert ids[0] == "mug"  # redeemed with the latte by everyone who redeemed the latte
    assert got[0].reason == "兑换过「星巴克拿铁咖啡券」的用户也兑换了它"
    assert not {"vip", "gone", "dear", "once"} & set(ids)  # tier, stock, price, limit
    assert Counter(r.category for r in got)["coffee"] <= 2
    coffee = [r for r in got if r.category == "coffee"]
    assert coffee and all(r.reason == "您之前兑换过同类商品" for r in coffee)
    assert all(60 <= r.points_price <= 180 for r in got)


def test_a_user_with_no_history_gets_the_popular_items():
    m = model({}, popularity={"movie": 9, "mocha": 4})
    got = recommend(m, UserView("new", balance=100), limit=3, now=NOW, tz=TZ)
    assert [r.item_id for r in got[:2]] == ["movie", "mocha"]
    assert got[0].reason == REASON_POPULAR


def test_points_about_to_expire_pick_the_item_they_pay_for():
    m = model({}, popularity={"movie": 9})
    friday = NOW + timedelta(days=4)
    user = UserView("me", balance=130, expiring=[(friday, 120)])
    got = recommend(m, user, limit=5, now=NOW, tz=TZ)
    assert got[0].reason.startswith("120 积分将于周五过期, 正好兑换 ")
    assert got[0].reason.endswith(got[0].name)


def test_tier_items_need_the_tier_on_the_ladder():
    m = model({})
    gold = UserView("g", balance=100, tier="gold", ladder=("silver", "gold"))
    silver = UserView("s", balance=100, tier="silver", ladder=("silver", "gold"))
    assert "vip" in {
        r.item_id for r in recommend(m, gold, limit=20, now=NOW, tz=TZ, per_category=9)
    }
    assert "vip" not in {
        r.item_id for r in recommend(m, silver, limit=20, now=NOW, tz=TZ, per_category=9)
    }


def test_recall_at_k():
    assert recall_at_k({"a": ["x", "y"], "b": ["z"]}, {"a": {"y"}, "b": {"q"}}, 2) == 0.5
