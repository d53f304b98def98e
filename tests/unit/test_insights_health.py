"""insights' NPS (promoters minus detractors, from `nps_submitted` scores) and the business
health's grading (healthy / warning / critical per signal, the worst overall), as pure rules."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.insights.domain import (
    NPS_DETRACTORS,
    NPS_PROMOTERS,
    NPS_RESPONSES,
    TARGET_OF,
    kpi_day,
    nps,
    nps_counters,
    nps_score,
    window_kpis,
)
from services.insights.health import (
    Bounds,
    Reason,
    Status,
    graded,
    lag_reason,
    overall,
    reconciliation_reason,
)

DAY = date(2026, 12, 7)


def responses(*scores: int) -> Counter[tuple[date, str, str]]:
    counts: Counter[tuple[date, str, str]] = Counter()
    for score in scores:
        counts.update(nps_counters(DAY, score))
    return counts


def score_of(counts: Counter[tuple[date, str, str]]) -> float | None:
    def c(metric: str) -> int:
        return counts[(DAY, "", metric)]

    return nps(c(NPS_PROMOTERS), c(NPS_DETRACTORS), c(NPS_RESPONSES))


def test_nps_is_the_share_of_promoters_minus_the_share_of_detractors_in_points():
    # 9-10 promote, 7-8 are passive (counted in the responses only), 0-6 detract
    assert score_of(responses(10, 9, 8, 7, 6, 0)) == 0.0
    assert score_of(responses(10, 10, 9, 9)) == 100.0
    assert score_of(responses(0, 3, 6)) == -100.0
    assert score_of(responses(7, 8, 8)) == 0.0
    assert score_of(responses(10, 9, 9, 7)) == 75.0  # 3 of 4 promote, none detract
    assert score_of(responses(*range(11))) == pytest.approx(100 * (2 - 7) / 11)
    assert nps(0, 0, 0) is None  # no responses: no score, not zero


def test_the_boundaries_of_each_group():
    assert responses(6)[(DAY, "", NPS_DETRACTORS)] == 1
    assert responses(7) == Counter({(DAY, "", NPS_RESPONSES): 1})
    assert responses(8) == Counter({(DAY, "", NPS_RESPONSES): 1})
    assert responses(9)[(DAY, "", NPS_PROMOTERS)] == 1


@given(st.lists(st.integers(0, 10), min_size=1, max_size=200))
def test_nps_stays_within_plus_minus_100(scores: list[int]):
    value = score_of(responses(*scores))
    assert value is not None and -100.0 <= value <= 100.0


@pytest.mark.parametrize(
    ("attributes", "score"),
    [
        ({"score": 10}, 10),
        ({"score": 0}, 0),
        ({"score": "7"}, 7),
        ({"score": " 9 "}, 9),
        ({"score": 8.0}, 8),
        ({"score": 11}, None),
        ({"score": -1}, None),
        ({"score": 3.5}, None),
        ({"score": True}, None),  # a bool is an int to Python, not a score
        ({"score": "ten"}, None),
        ({"score": None}, None),
        ({}, None),
    ],
)
def test_a_score_is_an_integer_from_0_to_10(attributes: dict, score: int | None):
    assert nps_score(attributes) == score


def test_nps_in_the_daily_kpis_and_a_window_with_its_target():
    counts = {("", NPS_RESPONSES): 4, ("", NPS_PROMOTERS): 3, ("", NPS_DETRACTORS): 1}
    day = kpi_day(DAY, counts, holders_at_start=0)
    assert (day["nps_responses"], day["nps_promoters"], day["nps_detractors"]) == (4, 3, 1)
    assert day["nps"] == 50.0
    window = window_kpis(counts, 0, 0, None, None)
    assert window["nps"] == 50.0 and window["nps_responses"] == 4.0
    target = TARGET_OF["nps"]
    assert (target.comparison, target.target) == (">=", 50.0)  # the seed's: at least 50
    assert target.met(50.0) is True and target.met(49.9) is False and target.met(None) is None


# -- business health ------------------------------------------------------------------------


REDEMPTION = Bounds(0.20, 0.10, low_is_bad=True)
EXPIRY = Bounds(0.15, 0.30)


@pytest.mark.parametrize(
    ("bounds", "value", "status", "threshold"),
    [
        (REDEMPTION, 0.25, "healthy", 0.20),
        (REDEMPTION, 0.20, "healthy", 0.20),  # at the threshold is not past it
        (REDEMPTION, 0.15, "warning", 0.20),
        (REDEMPTION, 0.05, "critical", 0.10),
        (EXPIRY, 0.10, "healthy", 0.15),
        (EXPIRY, 0.20, "warning", 0.15),
        (EXPIRY, 0.31, "critical", 0.30),
    ],
)
def test_a_measured_signal_is_graded_against_the_threshold_it_crosses(
    bounds: Bounds, value: float, status: str, threshold: float
):
    reason = graded("rate", value, bounds, "the rate")
    assert (reason.status, reason.value, reason.threshold) == (status, value, threshold)
    assert ("threshold" in reason.message) is (status != "healthy")


def test_no_data_is_healthy_an_idle_programme_is_not_a_broken_one():
    reason = graded("redemption_rate", None, REDEMPTION, "points redeemed / issued")
    assert reason.status == "healthy" and reason.value is None and "no data" in reason.message


def test_the_largest_lag_decides_and_an_unknown_lag_is_a_warning():
    bounds = Bounds(1000, 10_000)
    calm = lag_reason({"a": 3, "b": 20}, bounds, stale=False, error=None)
    assert (calm.status, calm.value) == ("healthy", 20) and "b" in calm.message
    behind = lag_reason({"a": 3, "b": 20_000}, bounds, stale=False, error=None)
    assert (behind.status, behind.value, behind.threshold) == ("critical", 20_000, 10_000)
    assert lag_reason({}, bounds, stale=False, error=None).status == "healthy"
    unread = lag_reason(None, bounds, stale=True, error="KafkaConnectionError: down")
    assert unread.status == "warning" and "down" in unread.message
    old = lag_reason({"a": 1}, bounds, stale=True, error=None)
    assert old.status == "warning" and "stale" in old.message


def test_any_reconciliation_violation_is_critical():
    clean = reconciliation_reason("exchange", {"stock": 0, "limits": 0}, False, None)
    assert (clean.signal, clean.status, clean.value) == ("reconciliation_exchange", "healthy", 0)
    broken = reconciliation_reason("rewards_ledger", {"balances": 2, "lots": 0}, False, None)
    assert (broken.status, broken.value) == ("critical", 2)
    assert "balances (2)" in broken.message and "lots" not in broken.message
    assert reconciliation_reason("exchange", None, True, None).status == "warning"
    assert reconciliation_reason("exchange", {"stock": 0}, True, "timeout").status == "warning"


def test_the_overall_status_is_the_worst_signal_s():
    def r(status: Status) -> Reason:
        return Reason("s", status, None, None, "")

    assert overall([]) == "healthy"
    assert overall([r("healthy"), r("warning")]) == "warning"
    assert overall([r("warning"), r("critical"), r("healthy")]) == "critical"


def test_anonymous_callers_get_the_verdicts_without_the_numbers():
    reason = graded("redemption_rate", 0.05, REDEMPTION, "points redeemed / issued")
    public = reason.public()
    assert public == {
        "signal": "redemption_rate",
        "status": "critical",
        "value": None,
        "threshold": None,
        "message": "redemption_rate is critical",
    }
    assert reason.full()["value"] == 0.05 and reason.full()["threshold"] == 0.10
