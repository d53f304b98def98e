"""Insights on the running suite (issue 34): NPS from `nps_submitted` behaviors, KPI targets
stored, edited (audited) and followed by the summary and the target gauges, and the business
health — healthy on a sound suite, critical (503) when a signal crosses its threshold, the
thresholds set on extra API replicas of insights by their settings."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared.events import BEHAVIOR_EVENTS, EXCHANGE_EVENTS, LEDGER_EVENTS, ExchangeEvent
from tests.conftest import ADMIN, eventually, unique
from tests.integration.test_insights import behavior, kpi_day, ledger_event, publish

pytestmark = pytest.mark.integration

DAY = date(2001, 1, 1) + timedelta(days=random.randrange(3000))
NOON = datetime(DAY.year, DAY.month, DAY.day, 4, 0, tzinfo=UTC)  # noon in Asia/Shanghai
SIGNALS = {
    "redemption_rate",
    "expiry_rate",
    "slow_redemptions",
    "consumer_lag",
    "reconciliation_rewards_ledger",
    "reconciliation_exchange",
}
MAX_MS = str(3_600_000)
# A sound suite's thresholds for the rates, whatever the other tests did to them (they
# issue far more than they redeem); lag and reconciliation keep theirs.
RELAXED = {
    "JIFEN_HEALTH_REDEMPTION_RATE_WARNING": "0",
    "JIFEN_HEALTH_REDEMPTION_RATE_CRITICAL": "0",
    "JIFEN_HEALTH_EXPIRY_RATE_WARNING": "10",
    "JIFEN_HEALTH_EXPIRY_RATE_CRITICAL": "10",
    "JIFEN_HEALTH_SLOW_REDEMPTION_WARNING_MS": MAX_MS,
    "JIFEN_HEALTH_SLOW_REDEMPTION_CRITICAL_MS": MAX_MS,
    "JIFEN_HEALTH_LAG_WARNING": "100000",
    "JIFEN_HEALTH_LAG_CRITICAL": "1000000",
}
# Any expiry at all is critical, and so is a redemption slower than the default 2 s.
STRICT = {
    **RELAXED,
    "JIFEN_HEALTH_EXPIRY_RATE_WARNING": "0",
    "JIFEN_HEALTH_EXPIRY_RATE_CRITICAL": "0",
    "JIFEN_HEALTH_SLOW_REDEMPTION_WARNING_MS": "1000",
    "JIFEN_HEALTH_SLOW_REDEMPTION_CRITICAL_MS": "2000",
    "JIFEN_HEALTH_SLOW_WINDOW_S": "60",
}


@pytest.fixture
def insights(http) -> httpx.AsyncClient:
    return http("insights")


@pytest.fixture(scope="module")
def replicas(stack) -> Iterator[dict[str, str]]:
    """Two extra API replicas of insights: one with a sound suite's thresholds, one strict."""
    names = {
        "relaxed": stack.start_service("insights", replica=1, role="api", extra_env=RELAXED),
        "strict": stack.start_service("insights", replica=2, role="api", extra_env=STRICT),
    }
    try:
        stack.wait_ready(120, tuple(names.values()))
        yield {kind: stack.url(name) for kind, name in names.items()}
    finally:
        for name in names.values():
            stack.stop_service(name)


def nps_behavior(user: str, score: object, at: datetime):
    b = behavior(user, "nps_submitted", at)
    return b.model_copy(update={"attributes": {"score": score}})


async def test_nps_is_counted_from_posted_behaviors_once_each(
    insights: httpx.AsyncClient, producer: AIOKafkaProducer
):
    tag = uuid.uuid4().hex[:8]
    scores: list[object] = [10, 10, 9, 8, "7", 3]  # 3 promoters, 2 passives, 1 detractor
    responses = [nps_behavior(f"nps_{i}_{tag}", s, NOON) for i, s in enumerate(scores)]
    ignored = [nps_behavior(f"nps_bad_{tag}", 11, NOON), behavior(f"nps_x_{tag}", "login", NOON)]
    for _ in range(2):  # a redelivered response counts once (behaviors claim no inbox row)
        await publish(producer, BEHAVIOR_EVENTS, [*responses, *ignored])

    async def counted() -> dict:
        day = await kpi_day(insights, DAY)
        assert day["nps_responses"] == 6, day
        return day

    day = await eventually(counted, timeout=60)
    assert (day["nps_promoters"], day["nps_detractors"]) == (3, 1)
    assert day["nps"] == pytest.approx(100 * (3 - 1) / 6)


async def test_a_target_is_stored_edited_with_its_history_and_followed(
    insights: httpx.AsyncClient,
):
    listed = await insights.get("/v1/kpis/targets", headers=ADMIN)
    assert listed.status_code == 200, listed.text
    targets = {t["kpi"]: t for t in listed.json()["items"]}
    assert targets["nps"]["comparison"] == ">=" and targets["nps"]["default"] == 50.0
    assert targets["expiry_rate"]["comparison"] == "<="
    before = targets["nps"]["target"]
    operator = unique("ops")
    try:
        changed = await insights.put(
            "/v1/kpis/targets/nps",
            json={"target": 42.5, "operator": operator, "reason": "first quarter"},
            headers=ADMIN,
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["target"] == 42.5 and changed.json()["updated_by"] == "admin"

        summary = (await insights.get("/v1/kpis/summary", headers=ADMIN)).json()
        [nps] = [i for i in summary["items"] if i["kpi"] == "nps"]
        assert nps["target"] == 42.5 and nps["comparison"] == ">="
        if nps["value"] is not None:
            assert nps["met"] is (nps["value"] >= 42.5)

        history = await insights.get("/v1/kpis/targets/nps/history", headers=ADMIN)
        assert history.status_code == 200, history.text
        newest = history.json()["items"][0]
        assert (newest["old_target"], newest["new_target"]) == (before, 42.5)
        assert (newest["changed_by"], newest["operator"]) == ("admin", operator)
        assert newest["reason"] == "first quarter" and newest["changed_at"]

        # The gauge the alerts compare the KPI with follows within a refresh (30 s).
        async def exported() -> None:
            text = (await insights.get("/metrics")).text
            assert re.search(r'^jifen_insights_kpi_target\{kpi="nps"\} 42\.5$', text, re.M)

        await eventually(exported, timeout=75, interval=1)
    finally:
        restored = await insights.put(
            "/v1/kpis/targets/nps", json={"target": before}, headers=ADMIN
        )
        assert restored.status_code == 200, restored.text

    # Unknown KPIs and bad values are refused; nothing is recorded for them.
    missing = await insights.put("/v1/kpis/targets/nope", json={"target": 1}, headers=ADMIN)
    assert missing.status_code == 404, missing.text
    for body in ({"target": "high"}, {"target": 1, "extra": 1}, {}):
        bad = await insights.put("/v1/kpis/targets/nps", json=body, headers=ADMIN)
        assert bad.status_code == 422, (body, bad.text)
    assert (await insights.get("/v1/kpis/targets/nope/history", headers=ADMIN)).status_code == 404


async def test_business_health_is_healthy_on_a_sound_suite(replicas: dict[str, str]):
    async with httpx.AsyncClient(base_url=replicas["relaxed"], timeout=30) as relaxed:

        async def read() -> dict:
            # the worker's first lag and reconciliation readings land soon after it starts
            answer = await relaxed.get("/v1/health/business", headers=ADMIN)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["status"] == "healthy", body
            return body

        body = await eventually(read, timeout=90, interval=1)
        reasons = {r["signal"]: r for r in body["reasons"]}
        assert set(reasons) == SIGNALS
        assert reasons["reconciliation_rewards_ledger"]["value"] == 0
        assert reasons["reconciliation_exchange"]["value"] == 0
        assert reasons["consumer_lag"]["value"] is not None  # a real reading, not "unknown"

        # Anyone may ask (a monitor): the verdicts, not the business's numbers.
        public = (await relaxed.get("/v1/health/business")).json()
        assert public["status"] == "healthy"
        assert all(r["value"] is None and r["threshold"] is None for r in public["reasons"])


async def test_business_health_is_critical_with_a_503_when_a_signal_crosses(
    replicas: dict[str, str], producer: AIOKafkaProducer
):
    now = datetime.now(UTC)
    user = unique("health")
    # points issued and some expired today: any expiry is critical on the strict replica
    await publish(
        producer,
        LEDGER_EVENTS,
        [
            ledger_event(user, "credited", 1000, 1000, occurred_at=now),
            ledger_event(user, "expired", -10, 990, occurred_at=now),
        ],
    )
    # and a redemption that took 30 s from request to completion
    slow = ExchangeEvent(
        type="redemption.completed",
        redemption_id=uuid.uuid4().hex,
        user_id=user,
        item_id=unique("item"),
        item_type="virtual",
        quantity=1,
        points=10,
        status="completed",
        occurred_at=now,
        requested_at=now - timedelta(seconds=30),
    )
    await publish(producer, EXCHANGE_EVENTS, [slow])

    async with httpx.AsyncClient(base_url=replicas["strict"], timeout=30) as strict:

        async def critical() -> dict:
            answer = await strict.get("/v1/health/business", headers=ADMIN)
            assert answer.status_code == 503, answer.text
            body = answer.json()
            reasons = {r["signal"]: r for r in body["reasons"]}
            assert reasons["slow_redemptions"]["status"] == "critical", reasons
            return body

        body = await eventually(critical, timeout=60, interval=1)
        assert body["status"] == "critical" and body["error"] == "business_critical"
        reasons = {r["signal"]: r for r in body["reasons"]}
        expiry = reasons["expiry_rate"]
        assert expiry["status"] == "critical" and expiry["value"] > 0 and expiry["threshold"] == 0
        assert reasons["slow_redemptions"]["value"] >= 30_000
        assert "expiry_rate" in body["message"] and "slow_redemptions" in body["message"]

        public = await strict.get("/v1/health/business")
        assert public.status_code == 503
        assert all(r["value"] is None for r in public.json()["reasons"])
