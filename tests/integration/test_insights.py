"""Insights on the running suite: KPIs from what every topic carries, experiments with their
exposures and results, recommendations over the real exchange and ledger, bad input."""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from shared.auth import issue_user_token
from shared.events import (
    BEHAVIOR_EVENTS,
    EXCHANGE_EVENTS,
    EXPERIMENT_EXPOSURES,
    LEDGER_EVENTS,
    NOTIFY_EVENTS,
    PROGRESS_EVENTS,
    BehaviorEvent,
    ExchangeEvent,
    ExperimentExposure,
    LedgerEvent,
    LotDraw,
    NotifyEvent,
    ProgressEvent,
    stable_id,
)
from shared.experiments import assign
from shared.settings import DEV_JWT_SECRET
from tests.conftest import ADMIN, eventually, unique
from tests.integration.helpers import (
    create_item,
    create_task,
    credit,
    read_topic,
    redeem,
    wait_for_balance,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "jifen-business.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

# Far enough in the past that no other test's events land on it, one day per test run.
DAY = date(2001, 1, 1) + timedelta(days=random.randrange(3000))
NOON = datetime(DAY.year, DAY.month, DAY.day, 4, 0, tzinfo=UTC)  # noon in Asia/Shanghai


@pytest.fixture
def insights(http) -> httpx.AsyncClient:
    return http("insights")


async def publish(producer: AIOKafkaProducer, topic: str, events: Sequence[BaseModel]) -> None:
    for event in events:
        user = getattr(event, "user_id", None) or "none"
        await producer.send(topic, event.model_dump_json().encode(), key=str(user).encode())
    await producer.flush()


def behavior(user: str, action: str, at: datetime) -> BehaviorEvent:
    event_id = uuid.uuid4().hex
    return BehaviorEvent(
        behavior_id=stable_id("test-behavior", event_id),
        event_id=event_id,
        source="insights-test",
        user_id=user,
        action=action,
        occurred_at=at,
        received_at=at,
    )


_ENTRY_IDS = iter(range(10**15 + random.randrange(10**12), 10**16))


def ledger_event(user: str, type_: str, points: int, balance: int, **fields: Any) -> LedgerEvent:
    return LedgerEvent(
        type=type_,  # type: ignore[arg-type]
        entry_id=next(_ENTRY_IDS),
        user_id=user,
        points=points,
        balance_after=balance,
        idempotency_key=uuid.uuid4().hex,
        occurred_at=fields.pop("occurred_at", NOON),
        **fields,
    )


def completed_redemption(user: str, at: datetime, points: int = 10) -> ExchangeEvent:
    return ExchangeEvent(
        type="redemption.completed",
        redemption_id=uuid.uuid4().hex,
        user_id=user,
        item_id=unique("item"),
        item_type="virtual",
        quantity=1,
        points=points,
        status="completed",
        occurred_at=at,
    )


async def rule_syncs(insights: httpx.AsyncClient) -> float:
    response = await insights.get("/metrics")
    for line in response.text.splitlines():
        if line.startswith('jifen_insights_reference_syncs_total{data="task_rules",outcome="ok"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def kpi_day(insights: httpx.AsyncClient, day: date) -> dict[str, Any]:
    response = await insights.get(
        "/v1/kpis", params={"from": day.isoformat(), "to": day.isoformat()}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    [item] = response.json()["items"]
    return dict(item)


async def test_known_behaviors_and_redemptions_give_exactly_the_expected_kpis(
    http, insights: httpx.AsyncClient, producer: AIOKafkaProducer
):
    tag = uuid.uuid4().hex[:8]
    u = {name: f"kpi_{name}_{tag}" for name in ("ann", "bob", "cat", "dan", "eve")}
    action = f"ins_{tag}"
    task = await create_task(
        http("task_progress"), action=action, target_count=100, reward_points=1, period="day"
    )

    # A behavior of the rule's action only starts a task-period once insights has copied
    # the rule: wait for a full copy that began after the task was created.
    first = await rule_syncs(insights)

    async def rule_copied() -> None:
        assert await rule_syncs(insights) >= first + 2

    await eventually(rule_copied, timeout=30)

    later = NOON + timedelta(hours=2)
    behaviors = [
        behavior(u["ann"], action, NOON),
        behavior(u["ann"], action, later),
        behavior(u["bob"], action, NOON),
        behavior(u["eve"], "login", NOON),
    ]
    progress = [
        ProgressEvent(
            type="task.completed",
            event_id=uuid.uuid4().hex,
            user_id=u["ann"],
            task_id=task["id"],
            period_key=DAY.isoformat(),
            completion=1,
            occurred_at=later,
        )
    ]
    # Each twice: behaviors and progress claim no inbox row in insights (their rollups are
    # sets and forward merges), so the repeats must change nothing by themselves.
    for _ in range(2):
        await publish(producer, BEHAVIOR_EVENTS, behaviors)
        await publish(producer, PROGRESS_EVENTS, progress)
    n1, n2, n3 = (uuid.uuid4().hex for _ in range(3))
    await publish(
        producer,
        NOTIFY_EVENTS,
        [
            NotifyEvent(
                type=kind,
                event_id=f"{nid}:{kind}",
                notification_id=nid,
                user_id=u["ann"],
                category="reminders",
                trigger="points_expiring",
                occurred_at=NOON,
            )
            for nid, kind in ((n1, "sent"), (n1, "opened"), (n2, "sent"), (n3, "sent"))
        ],
    )

    def draw(points: int, days_held: int) -> LotDraw:
        return LotDraw(
            lot_id=uuid.uuid4().hex, points=points, earned_at=NOON - timedelta(days_held)
        )

    await publish(
        producer,
        LEDGER_EVENTS,
        [
            ledger_event(u["ann"], "credited", 500, 500),
            ledger_event(u["ann"], "debited", -200, 300, lots=[draw(200, 10)]),
            ledger_event(u["ann"], "expired", -100, 200, lots=[draw(100, 40)]),
            ledger_event(u["bob"], "credited", 50, 50),
            ledger_event(u["cat"], "credited", 150, 150),
            ledger_event(u["cat"], "debited", -150, 0, lots=[draw(150, 20)]),
            ledger_event(u["dan"], "credited", 300, 300),
        ],
    )
    await publish(
        producer,
        EXCHANGE_EVENTS,
        [completed_redemption(u["ann"], NOON), completed_redemption(u["cat"], later)],
    )

    expected = {
        "day": DAY.isoformat(),
        "dau": 3,  # ann, bob, eve
        "tasks_started": 2,
        "tasks_completed": 1,
        "task_completion_rate": 0.5,
        "push_sent": 3,
        "push_opened": 1,
        "push_open_rate": 1 / 3,
        "redemptions": 2,
        "redeemers": 2,
        "holders": 3,  # ann, cat (for a while) and dan held at least 100 points
        "redeemer_rate": 2 / 3,
        "points_issued": 1000,
        "points_redeemed": 350,
        "points_expired": 100,
        "redemption_rate": 0.35,
        "expiry_rate": 0.1,
        # (200 points x 10 days + 150 points x 20 days) / 350 points
        "earn_to_redeem_days": (200 * 10 + 150 * 20) / 350,
        "nps_responses": 0,  # no survey that day (tests/integration/test_insights_kpis.py)
        "nps_promoters": 0,
        "nps_detractors": 0,
    }

    async def matches() -> None:
        got = await kpi_day(insights, DAY)
        assets = got.pop("assets")
        assert got.pop("nps") is None  # no responses: no score
        assert got == pytest.approx(expected), got
        assert assets == {"points": {"issued": 1000, "redeemed": 350, "expired": 100}}

    await eventually(matches, timeout=60)
    # The day before and after are untouched.
    before = await kpi_day(insights, DAY - timedelta(days=1))
    assert before["dau"] == 0 and before["points_issued"] == 0


async def create_experiment(insights: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {
        "key": unique("exp").replace("_", "-"),
        "name": "test experiment",
        "variants": [{"key": "control", "weight": 1}, {"key": "treatment", "weight": 1}],
        "metric": {"type": "conversion", "event": "notification_opened", "window_days": 7},
        "status": "running",
        **fields,
    }
    response = await insights.post("/v1/experiments", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def seed_arm(
    producer: AIOKafkaProducer, key: str, variant: str, exposed: int, converted: int
) -> None:
    at = datetime.now(UTC) - timedelta(hours=1)
    users = [f"{key}-{variant}-{i}" for i in range(exposed)]
    await publish(
        producer,
        EXPERIMENT_EXPOSURES,
        [
            ExperimentExposure(
                event_id=stable_id("exposure", key, user),
                experiment=key,
                variant=variant,
                user_id=user,
                source="insights-test",
                occurred_at=at,
            )
            for user in users
        ],
    )
    opened = [
        NotifyEvent(
            type="opened",
            event_id=f"{key}:{user}:opened",
            notification_id=f"{key}:{user}",
            user_id=user,
            category="reminders",
            trigger="points_expiring",
            experiment=key,
            variant=variant,
            occurred_at=at + timedelta(minutes=5),
        )
        for user in users[:converted]
    ]
    await publish(producer, NOTIFY_EVENTS, opened)


async def results(insights: httpx.AsyncClient, key: str) -> dict[str, Any]:
    response = await insights.get(f"/v1/experiments/{key}/results", headers=ADMIN)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_seeded_experiment_gives_the_expected_p_value_and_flags_a_starved_arm(
    insights: httpx.AsyncClient, producer: AIOKafkaProducer
):
    fair = await create_experiment(insights)
    starved = await create_experiment(insights)
    await seed_arm(producer, fair["key"], "control", 1000, 100)
    await seed_arm(producer, fair["key"], "treatment", 1000, 130)
    await seed_arm(producer, starved["key"], "control", 1000, 100)
    await seed_arm(producer, starved["key"], "treatment", 800, 104)

    async def fair_done() -> dict[str, Any]:
        got = await results(insights, fair["key"])
        assert [(v["n"], v["conversions"]) for v in got["variants"]] == [(1000, 100), (1000, 130)]
        return got

    got = await eventually(fair_done, timeout=60)
    control, treatment = got["variants"]
    assert control["rate"] == pytest.approx(0.10)
    assert treatment["rate"] == pytest.approx(0.13)
    assert treatment["lift"] == pytest.approx(0.30)
    # pooled two-proportion z: z = 0.03 / sqrt(0.115 * 0.885 * 2/1000) = 2.1027, p = 0.03549
    assert treatment["statistic"] == pytest.approx(2.10274, abs=1e-4)
    assert treatment["p_value"] == pytest.approx(0.035488, abs=1e-5)
    assert control["ci"][0] < 0.10 < control["ci"][1]
    assert got["srm"]["mismatch"] is False and got["srm"]["p_value"] == pytest.approx(1.0)

    async def starved_done() -> dict[str, Any]:
        got = await results(insights, starved["key"])
        assert [v["n"] for v in got["variants"]] == [1000, 800]
        return got

    got = await eventually(starved_done, timeout=60)
    # chi-square = 2 x 100^2 / 900 = 22.22 on 1 degree of freedom: p = 2.4e-6
    assert got["srm"]["chi_square"] == pytest.approx(22.2222, abs=1e-3)
    assert got["srm"]["p_value"] == pytest.approx(2.43e-6, rel=0.01)
    assert got["srm"]["mismatch"] is True


async def test_assignment_is_the_shared_function_and_an_exposure_is_logged_once(
    insights: httpx.AsyncClient,
):
    exp = await create_experiment(insights, metric={"type": "conversion", "event": "redemption"})
    key = exp["key"]
    users = [unique("assign") for _ in range(20)]
    for user in users:
        response = await insights.get(f"/v1/experiments/{key}/assignment/{user}", headers=ADMIN)
        assert response.status_code == 200, response.text
        expected = assign(key, user, [("control", 1), ("treatment", 1)])
        assert response.json() == {
            "experiment": key,
            "user_id": user,
            "variant": expected,
            "in_experiment": True,
            "status": "running",
        }
    # A user asks for their own assignment with their token; exposure logged once however
    # often the copy is shown.
    me = users[0]
    token = {"Authorization": f"Bearer {issue_user_token(DEV_JWT_SECRET, me)}"}
    for _ in range(3):
        response = await insights.get(
            f"/v1/experiments/{key}/assignment/{me}", params={"expose": "true"}, headers=token
        )
        assert response.status_code == 200, response.text
    other = await insights.get(f"/v1/experiments/{key}/assignment/{users[1]}", headers=token)
    assert other.status_code == 403

    async def exposed_once() -> None:
        got = await results(insights, key)
        assert sum(v["n"] for v in got["variants"]) == 1

    await eventually(exposed_once, timeout=30)


async def test_recommendations_respect_affordability_stock_limits_and_tier_with_reasons(
    http, insights: httpx.AsyncClient
):
    exchange, ledger = http("exchange"), http("rewards_ledger")
    tag = uuid.uuid4().hex[:6]
    coffee, mug, gift = f"咖啡{tag}", f"杯子{tag}", f"礼品{tag}"

    async def item(name: str, category: str, price: int, **fields: Any) -> str:
        made = await create_item(
            exchange, name=name, category=category, points_price=price, **fields
        )
        return str(made["id"])

    # Prices sit around a balance of 1,000,000 so no other test's item is in the band.
    starter = await item(
        f"星巴克礼品卡{tag}", gift, 1_000_000, per_user_limit={"period": "lifetime", "quantity": 1}
    )
    latte = await item(f"星巴克拿铁咖啡券{tag}", coffee, 950_000)
    mocha = await item(f"瑞幸摩卡咖啡券{tag}", coffee, 1_050_000)
    americano = await item(f"美式咖啡券{tag}", coffee, 1_000_000)
    cup = await item(f"星巴克马克杯{tag}", mug, 1_200_000)
    gone = await item(f"售罄咖啡券{tag}", coffee, 1_000_000, stock=0)
    dear = await item(f"咖啡机{tag}", mug, 1_600_000)
    cheap = await item(f"咖啡豆小样{tag}", coffee, 400_000)
    vip = await item(f"金卡咖啡券{tag}", coffee, 1_000_000, min_tier=f"gold{tag}")

    # Another user redeemed the gift card and then the latte: they go together.
    fan = unique("fan")
    await credit(ledger, fan, 3_000_000)
    await wait_for_balance(ledger, fan, 3_000_000)
    for item_id in (starter, latte):
        response = await redeem(exchange, fan, item_id)
        assert response.status_code in (200, 201), response.text
    # Our user redeemed the gift card (its per-user limit is now reached).
    me = unique("me")
    await credit(ledger, me, 2_000_000)
    await wait_for_balance(ledger, me, 2_000_000)
    response = await redeem(exchange, me, starter)
    assert response.status_code in (200, 201), response.text
    await wait_for_balance(ledger, me, 1_000_000)
    mine = {starter, latte, mocha, americano, cup, gone, dear, cheap, vip}

    async def personalized() -> list[dict[str, Any]]:
        response = await insights.get(
            f"/v1/users/{me}/recommendations", params={"limit": 5}, headers=ADMIN
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["balance"] == 1_000_000 and body["strategy"] == "personalized", body
        items = [i for i in body["items"] if i["item_id"] in mine]
        assert items and items[0]["item_id"] == latte, body
        return items

    items = await eventually(personalized, timeout=60)
    ids = [i["item_id"] for i in items]
    assert not {starter, gone, dear, cheap, vip} & set(ids)  # limit, stock, price, tier
    assert all(500_000 <= i["points_price"] <= 1_500_000 for i in items)
    assert all(i["reason"] for i in items)
    assert items[0]["reason"] == f"兑换过「星巴克礼品卡{tag}」的用户也兑换了它"
    categories = [i["category"] for i in items]
    assert categories.count(coffee) <= 2
    assert cup in ids  # the cap makes room for another category

    # A user with no redemptions gets what is popular, affordable to them.
    newcomer = unique("new")
    await credit(ledger, newcomer, 1_000_000)
    await wait_for_balance(ledger, newcomer, 1_000_000)

    async def popular() -> dict[str, Any]:
        response = await insights.get(f"/v1/users/{newcomer}/recommendations", headers=ADMIN)
        assert response.status_code == 200, response.text
        body = dict(response.json())
        assert body["strategy"] == "popular" and body["balance"] == 1_000_000, body
        top = [i for i in body["items"] if i["item_id"] in mine][:2]
        assert [i["item_id"] for i in top] == [starter, latte], body
        return body

    body = await eventually(popular, timeout=60)
    assert all(i["reason"] == "热门兑换商品" for i in body["items"][:2])


async def test_bad_input_gets_4xx_and_changes_nothing(insights: httpx.AsyncClient):
    exp = await create_experiment(insights)
    key = exp["key"]
    bad_bodies = [
        {
            "key": "x",
            "name": "one variant",
            "variants": [{"key": "a", "weight": 1}],
            "metric": {"type": "conversion", "event": "redemption"},
        },
        {
            "key": "y",
            "name": "twins",
            "variants": [{"key": "a", "weight": 1}, {"key": "a", "weight": 1}],
            "metric": {"type": "conversion", "event": "redemption"},
        },
        {
            "key": "Bad Key",
            "name": "n",
            "variants": [{"key": "a", "weight": 1}, {"key": "b", "weight": 1}],
            "metric": {"type": "conversion", "event": "redemption"},
        },
        {
            "key": "z",
            "name": "n",
            "variants": [{"key": "a", "weight": 0}, {"key": "b", "weight": 1}],
            "metric": {"type": "conversion", "event": "redemption"},
        },
        {
            "key": "w",
            "name": "n",
            "variants": [{"key": "a", "weight": 1}, {"key": "b", "weight": 1}],
            "metric": {"type": "ratio", "event": "redemption"},
        },
    ]
    for body in bad_bodies:
        response = await insights.post("/v1/experiments", json=body, headers=ADMIN)
        assert response.status_code == 422, response.text
        assert set(response.json()) >= {"error", "message"}
    # Another definition under an existing key is a conflict; the original stands.
    changed = {**exp, "variants": [{"key": "a", "weight": 1}, {"key": "b", "weight": 3}]}
    for field in ("created_at", "updated_at"):
        changed.pop(field)
    response = await insights.post("/v1/experiments", json=changed, headers=ADMIN)
    assert response.status_code == 409 and response.json()["error"] == "experiment_exists"
    again = await insights.get(f"/v1/experiments/{key}", headers=ADMIN)
    assert again.json() == exp
    listed = await insights.get("/v1/experiments", params={"limit": 200}, headers=ADMIN)
    assert not {"x", "y", "z", "w"} & {e["key"] for e in listed.json()["items"]}

    checks = [
        ("/v1/kpis", {"from": "2026-02-01", "to": "2026-01-01"}, 422),
        ("/v1/kpis", {"from": "2024-01-01", "to": "2026-01-01"}, 422),
        ("/v1/kpis", {"from": "yesterday", "to": "2026-01-01"}, 422),
        ("/v1/kpis", {"from": "2026-01-01"}, 422),
        ("/v1/experiments/nope-nope/results", {}, 404),
        ("/v1/experiments/nope-nope/assignment/u1", {}, 404),
        ("/v1/users/u1/recommendations", {"limit": 0}, 422),
        ("/v1/users/u1/recommendations", {"limit": 1000}, 422),
    ]
    for path, params, status in checks:
        response = await insights.get(path, params=params, headers=ADMIN)
        assert response.status_code == status, (path, response.text)
        assert set(response.json()) >= {"error", "message"}
    response = await insights.get("/v1/kpis/summary")
    assert response.status_code == 401
    token = {"Authorization": f"Bearer {issue_user_token(DEV_JWT_SECRET, 'someone')}"}
    response = await insights.get("/v1/kpis/summary", headers=token)
    assert response.status_code == 403
    response = await insights.patch(
        f"/v1/experiments/{key}", json={"status": "paused"}, headers=ADMIN
    )
    assert response.status_code == 422
    stopped = await insights.patch(
        f"/v1/experiments/{key}", json={"status": "stopped"}, headers=ADMIN
    )
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    restart = await insights.patch(
        f"/v1/experiments/{key}", json={"status": "running"}, headers=ADMIN
    )
    assert restart.status_code == 409 and restart.json()["error"] == "experiment_stopped"
    off = await insights.get(f"/v1/experiments/{key}/assignment/u1", headers=ADMIN)
    assert off.json()["variant"] is None and off.json()["status"] == "stopped"


async def test_summary_compares_the_last_30_days_with_the_targets(insights: httpx.AsyncClient):
    response = await insights.get("/v1/kpis/summary", headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (date.fromisoformat(body["to"]) - date.fromisoformat(body["from"])).days == 29
    targets = {i["kpi"]: (i["comparison"], i["target"]) for i in body["items"]}
    assert targets == {
        "dau_growth": (">=", 0.30),
        "task_completion_rate": (">=", 0.60),
        "push_open_rate": (">=", 0.15),
        "redemption_rate": (">=", 0.20),
        "redeemer_rate": (">=", 0.20),
        "earn_to_redeem_days": ("<=", 30.0),
        "expiry_rate": ("<=", 0.15),
        "nps": (">=", 50.0),
    }
    for item in body["items"]:
        if item["value"] is not None:
            assert item["met"] is (
                item["value"] >= item["target"]
                if item["comparison"] == ">="
                else item["value"] <= item["target"]
            )


async def test_every_dashboard_and_alert_query_names_a_metric_the_suite_exports(http, stack):
    """Each metric a Grafana panel or an alert reads is on some running service's /metrics
    (a labelled metric shows its HELP/TYPE lines before its first sample)."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"]]
    rules = yaml.safe_load(ALERTS.read_text())
    queries += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    exported: set[str] = set()
    pages = [http(service).get("/metrics") for service in stack.services]
    async with httpx.AsyncClient(base_url=stack.url("console"), timeout=30) as console:
        pages.append(console.get("/metrics"))  # the consumer lag is the console's
        responses = [await page for page in pages]
    for response in responses:
        assert response.status_code == 200
        for line in response.text.splitlines():
            match = re.match(r"(?:# (?:HELP|TYPE) )?(jifen_\w+)", line)
            if match:
                exported.add(match.group(1))
    for query in queries:
        for name in re.findall(r"\bjifen_\w+", query):
            base = re.sub(r"_(total|bucket|count|sum)$", "", name)
            assert name in exported or base in exported, (name, query)


async def test_a_debit_on_ledger_events_names_the_lots_it_drew_from_and_when_they_were_earned(
    http, infra
):
    """The ledger's part of the exact earn-to-redeem cycle: `lots` on a debited event."""
    ledger = http("rewards_ledger")
    user = unique("lots")
    first = await credit(ledger, user, 30, validity_days=10)
    second = await credit(ledger, user, 50, validity_days=100)
    await wait_for_balance(ledger, user, 80)
    response = await ledger.post(
        f"/v1/accounts/{user}/debits",
        json={"points": 45, "idempotency_key": unique("k"), "reason": "test"},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    [debited] = await read_topic(
        infra.kafka_bootstrap,
        LEDGER_EVENTS,
        1,
        lambda m: m["user_id"] == user and m["type"] == "debited",
    )
    lots = debited["lots"]
    # earliest expiry first: all 30 of the first lot, then 15 of the second
    assert [(d["points"], d["lot_id"]) for d in lots] == [
        (30, first["lot_id"]),
        (15, second["lot_id"]),
    ]
    for draw, lot in zip(lots, (first, second), strict=True):
        assert datetime.fromisoformat(draw["earned_at"]) == datetime.fromisoformat(
            lot["created_at"]
        )
