"""Insights benchmarks, called from `python -m bench` (bench/__main__.py wires them in).

- `kpi_queries`: the rollups that BENCH_INSIGHTS_BEHAVIORS behaviors (10M by default) of
  BENCH_INSIGHTS_USERS users over 90 business days leave in insights' tables, generated
  set-based by PostgreSQL (the distinct active user-days, redeemer-days, and each day's
  counters computed from them), then `GET /v1/kpis` over the 90 days and
  `GET /v1/kpis/summary` timed at the HTTP edge.
- `recommendations`: a catalog of BENCH_INSIGHTS_ITEMS items created through the exchange
  (Chinese names, categories, tags), redemption histories of BENCH_INSIGHTS_RECO_USERS users
  with taste (favourite categories, items redeemed together) loaded into insights, then
  `GET /v1/users/{id}/recommendations` timed with a few concurrent callers.
- `offline_recall`: the same histories, each user's last redemption held out; recall@5 of
  both recommenders (item-item: collaborative 60% + content 40%; user-based: balance peers)
  against the 5 most popular items (bench/recall.py, also runnable alone).
- `consumer`: behavior and ledger events as the pipeline publishes them (one credit per
  behavior), produced straight to their topics while the other consumers of those topics
  are stopped; insights' rate to a drained group and its CPU per event, to set against the
  end-to-end rate.

`rows(results)` turns the results into bench/__main__.py's table rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from bench.engagement import process_cpu_seconds
from bench.recall import draw_balances, recall_of
from services.devstack import Stack
from services.insights.recommendations import Item
from services.suite import CONSUMER_GROUPS
from shared.db import asyncpg_kwargs, database_url
from shared.events import BEHAVIOR_EVENTS, LEDGER_EVENTS, BehaviorEvent, LedgerEvent, stable_id
from shared.messaging.lag import consumer_lag
from shared.settings import DEV_ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
SERVICE = "insights"
GROUP = "jifen.insights.events"
TZ = ZoneInfo("Asia/Shanghai")
DAYS = 90
WARM_UP_S = 15.0
# What a documented end-to-end run credits per second on this kind of machine
# (docs/BENCHMARKS.md, engagement round), used when this run did not measure it.
DOCUMENTED_END_TO_END = 3_458


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": _percentile(values, 50) * 1000,
        "p99_ms": _percentile(values, 99) * 1000,
        "max_ms": max(values) * 1000 if values else float("nan"),
    }


async def _connect(server_url: str) -> asyncpg.Connection:
    return await asyncpg.connect(**asyncpg_kwargs(database_url(server_url, "jifen_insights")))  # type: ignore[arg-type]


# -- KPI queries over 90 days -------------------------------------------------------------------

# Each day d (0..89) has `active` users, a window of the user space that slides by day, so a
# user is active on some days and not others; each active user-day carries 1..10 behaviors
# (their sum is reported). Redeemers are every 20th active user of the day.
_ACTIVE = """
INSERT INTO active_days (day, user_id)
SELECT $1::date + d, 'kpi-' || ((i + d * 7919) % $2)
FROM generate_series(0, $3 - 1) AS d, generate_series(0, $4 - 1) AS i
ON CONFLICT DO NOTHING
"""
_BEHAVIORS = """
SELECT sum(1 + abs(hashtext(user_id || day::text)) % 10) FROM active_days
WHERE day BETWEEN $1 AND $2 AND user_id LIKE 'kpi-%'
"""
_REDEEMERS = """
INSERT INTO redeemer_days (day, user_id)
SELECT day, user_id FROM active_days
WHERE day BETWEEN $1 AND $2 AND user_id LIKE 'kpi-%' AND abs(hashtext(user_id)) % 20 = 0
ON CONFLICT DO NOTHING
"""
# Every counter of every day, computed from the sets (DAU, redeemers) or from the day's
# behaviors in proportion (tasks, notifications, points), as the consumer would have added.
_COUNTERS = """
INSERT INTO kpi_daily (day, asset, metric, value)
SELECT day, asset, metric, value FROM (
  SELECT day, '' AS asset, 'dau' AS metric, count(*) AS value FROM active_days
    WHERE day BETWEEN $1 AND $2 AND user_id LIKE 'kpi-%' GROUP BY day
  UNION ALL SELECT day, '', 'redeemers', count(*) FROM redeemer_days
    WHERE day BETWEEN $1 AND $2 AND user_id LIKE 'kpi-%' GROUP BY day
  UNION ALL SELECT day, '', 'redemptions', count(*) * 2 FROM redeemer_days
    WHERE day BETWEEN $1 AND $2 AND user_id LIKE 'kpi-%' GROUP BY day
  UNION ALL SELECT day, x.asset, x.metric, (count(*) * x.per_user)::bigint
    FROM active_days a
    CROSS JOIN (VALUES ('', 'tasks_started', 1.4), ('', 'tasks_completed', 0.9),
                       ('', 'push_sent', 0.5), ('', 'push_opened', 0.09),
                       ('points', 'issued', 55.0), ('points', 'redeemed', 14.0),
                       ('points', 'refunded', 0.5), ('points', 'expired', 6.0),
                       ('points', 'cycle_points', 14.0),
                       ('points', 'cycle_point_seconds', 14.0 * 86400 * 21),
                       ('points', 'holder_opens', 0.03), ('points', 'holder_closes', 0.02))
         AS x(asset, metric, per_user)
    WHERE a.day BETWEEN $1 AND $2 AND a.user_id LIKE 'kpi-%'
    GROUP BY day, x.asset, x.metric, x.per_user
) c
ON CONFLICT (day, asset, metric) DO UPDATE SET value = kpi_daily.value + excluded.value
"""


async def _time_gets(
    client: httpx.AsyncClient, url: str, params: dict[str, str], n: int
) -> dict[str, float]:
    seconds = []
    for _ in range(n):
        started = time.perf_counter()
        response = await client.get(url, params=params)
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
    return _ms(seconds)


async def kpi_queries(
    stack: Stack, server_url: str, behaviors: int, users: int, repeats: int = 50
) -> dict[str, Any]:
    today = datetime.now(UTC).astimezone(TZ).date()
    start, end = today - timedelta(days=DAYS), today - timedelta(days=1)
    per_day = max(1, round(behaviors / 5.5 / DAYS))  # 1..10 behaviors per active user-day
    conn = await _connect(server_url)
    try:
        started = time.monotonic()
        await conn.execute(_ACTIVE, start, users, DAYS, per_day)
        await conn.execute(_REDEEMERS, start, end)
        await conn.execute(_COUNTERS, start, end)
        await conn.execute("ANALYZE active_days; ANALYZE redeemer_days; ANALYZE kpi_daily")
        build_s = time.monotonic() - started
        generated = int(await conn.fetchval(_BEHAVIORS, start, end) or 0)
        active = int(
            await conn.fetchval(
                "SELECT count(*) FROM active_days WHERE day BETWEEN $1 AND $2", start, end
            )
        )
    finally:
        await conn.close()
    url = stack.url(SERVICE)
    pid = stack.processes[SERVICE].pid
    async with httpx.AsyncClient(headers=ADMIN, timeout=30) as client:
        series_params = {"from": start.isoformat(), "to": end.isoformat()}
        await client.get(f"{url}/v1/kpis", params=series_params)  # warm the pool
        cpu = process_cpu_seconds(pid)
        series = await _time_gets(client, f"{url}/v1/kpis", series_params, repeats)
        summary = await _time_gets(client, f"{url}/v1/kpis/summary", {}, repeats)
        cpu = process_cpu_seconds(pid) - cpu
        sample = (await client.get(f"{url}/v1/kpis", params=series_params)).json()["items"]
    return {
        "behaviors": generated,
        "active_user_days": active,
        "days": DAYS,
        "build_s": build_s,
        "series": series,
        "summary": summary,
        "cpu_ms_per_query": 1000 * cpu / (2 * repeats),
        "mean_dau": sum(d["dau"] for d in sample) / len(sample),
    }


# -- recommendations ----------------------------------------------------------------------------

CATEGORIES = (
    ("咖啡", ["拿铁", "美式", "摩卡", "卡布奇诺", "冷萃"], ["饮品", "早餐"]),
    ("奶茶", ["珍珠", "芝士", "抹茶", "椰奶", "杨枝甘露"], ["饮品", "下午茶"]),
    ("电影", ["IMAX", "杜比", "3D", "双人", "家庭"], ["娱乐", "周末"]),
    ("外卖", ["满减", "午餐", "晚餐", "夜宵", "早餐"], ["餐饮", "优惠"]),
    ("视频会员", ["月卡", "季卡", "年卡", "超前点播", "体育"], ["会员", "娱乐"]),
    ("音乐会员", ["月卡", "季卡", "年卡", "无损", "K歌"], ["会员", "音乐"]),
    ("话费", ["10元", "20元", "30元", "50元", "100元"], ["充值", "通讯"]),
    ("流量", ["1GB", "3GB", "5GB", "10GB", "日包"], ["充值", "通讯"]),
    ("图书", ["小说", "历史", "科技", "童书", "漫画"], ["阅读", "学习"]),
    ("文具", ["笔记本", "钢笔", "马克笔", "书签", "便签"], ["学习", "办公"]),
    ("家居", ["抱枕", "香薰", "收纳盒", "台灯", "毛巾"], ["生活", "家居"]),
    ("数码配件", ["数据线", "充电宝", "耳机", "手机壳", "支架"], ["数码", "出行"]),
    ("运动", ["瑜伽垫", "跳绳", "水杯", "护腕", "健身卡"], ["运动", "健康"]),
    ("出行", ["打车券", "单车月卡", "地铁卡", "加油券", "停车券"], ["出行", "优惠"]),
    ("生鲜", ["水果", "牛奶", "鸡蛋", "蔬菜", "坚果"], ["生活", "餐饮"]),
    ("美妆", ["面膜", "口红", "护手霜", "洗面奶", "香水"], ["个护", "礼品"]),
    ("宠物", ["猫粮", "狗粮", "猫砂", "玩具", "零食"], ["宠物", "生活"]),
    ("游戏", ["点卡", "皮肤", "月卡", "礼包", "道具"], ["娱乐", "游戏"]),
    ("公益", ["植树", "助学", "捐书", "动物保护", "环保"], ["公益", "温暖"]),
    ("旅行", ["酒店券", "机票券", "景点门票", "民宿", "温泉"], ["出行", "周末"]),
)
BRANDS = ("优选", "精选", "臻享", "畅享", "超值")


def catalog_bodies(count: int, rng: random.Random) -> list[dict[str, Any]]:
    bodies = []
    for n in range(count):
        category, kinds, tags = CATEGORIES[n % len(CATEGORIES)]
        kind = kinds[(n // len(CATEGORIES)) % len(kinds)]
        brand = BRANDS[(n // (len(CATEGORIES) * len(kinds))) % len(BRANDS)]
        bodies.append(
            {
                "name": f"{brand}{category}{kind}券 #{n}",
                "category": f"bench-{category}",
                "tags": tags,
                "type": "virtual",
                "points_price": rng.choice((200, 300, 500, 800, 1000, 1500, 2000, 3000)),
                "stock": 1_000_000,
            }
        )
    return bodies


def histories(item_ids: list[str], users: int, rng: random.Random) -> dict[str, list[str]]:
    """Redemptions with taste: each user favours one or two categories (items of a category
    sit at the same position mod the number of categories) and, after an item, often
    redeems its 'companion' (the next item of the next category)."""
    ncat = len(CATEGORIES)
    by_category = [item_ids[c::ncat] for c in range(ncat)]
    weights = [1.0 / (k + 1) for k in range(max(len(b) for b in by_category))]
    out: dict[str, list[str]] = {}
    for u in range(users):
        favourites = rng.sample(range(ncat), rng.choice((1, 2)))
        taken: list[str] = []
        for _ in range(rng.randint(2, 9)):
            if taken and rng.random() < 0.35:
                last = item_ids.index(taken[-1])
                pick = item_ids[(last + 1) % len(item_ids)]
            else:
                items = by_category[rng.choice(favourites)]
                pick = rng.choices(items, weights=weights[: len(items)])[0]
            if pick not in taken:
                taken.append(pick)
        out[f"reco-{u}"] = taken
    return out


async def _create_catalog(stack: Stack, bodies: list[dict[str, Any]]) -> list[str]:
    url = f"{stack.url('exchange')}/v1/items"
    ids: list[str] = []
    async with httpx.AsyncClient(headers=ADMIN, timeout=30) as client:
        for chunk in range(0, len(bodies), 20):
            responses = await asyncio.gather(
                *(client.post(url, json=body) for body in bodies[chunk : chunk + 20])
            )
            for response in responses:
                response.raise_for_status()
                ids.append(response.json()["id"])
    return ids


async def _load_histories(
    server_url: str, history: dict[str, list[str]], prices: dict[str, int], rng: random.Random
) -> dict[str, int]:
    now = datetime.now(UTC)
    redemptions = []
    for user, items in history.items():
        at = now - timedelta(days=rng.uniform(3, 60))
        for item in items:
            at += timedelta(hours=rng.uniform(1, 48))
            redemptions.append((uuid.uuid4().hex, user, item, 1, prices[item], min(at, now), False))
    drawn = draw_balances(list(history), rng)
    balances = [(user, "points", drawn[user], 1, True) for user in history]
    conn = await _connect(server_url)
    try:
        await conn.copy_records_to_table(
            "redemptions",
            records=redemptions,
            columns=[
                "redemption_id",
                "user_id",
                "item_id",
                "quantity",
                "points",
                "completed_at",
                "cancelled",
            ],
        )
        await conn.copy_records_to_table(
            "balances",
            records=balances,
            columns=["user_id", "asset", "balance", "entry_id", "holder"],
        )
        await conn.execute("ANALYZE redemptions; ANALYZE balances")
    finally:
        await conn.close()
    return drawn


async def recommendations(
    stack: Stack,
    server_url: str,
    items: int,
    users: int,
    requests: int,
    concurrency: int,
    seed: int = 23,
) -> tuple[dict[str, Any], dict[str, list[str]], list[str], dict[str, Any]]:
    rng = random.Random(seed)
    bodies = catalog_bodies(items, rng)
    started = time.monotonic()
    item_ids = await _create_catalog(stack, bodies)
    prices = {i: b["points_price"] for i, b in zip(item_ids, bodies, strict=True)}
    history = histories(item_ids, users, rng)
    balances = await _load_histories(server_url, history, prices, rng)
    load_s = time.monotonic() - started
    url = stack.url(SERVICE)
    some_user = next(iter(history))

    async with aiohttp.ClientSession(headers=ADMIN) as session:

        async def ready() -> bool:
            async with session.get(f"{url}/v1/users/{some_user}/recommendations") as r:
                body = await r.json()
                return bool(body.get("items")) and any(
                    i["item_id"] in prices for i in body["items"]
                )

        deadline = time.monotonic() + 120
        while not await ready():  # catalog copied, model rebuilt with the histories
            if time.monotonic() > deadline:
                raise RuntimeError("insights never recommended the bench catalog")
            await asyncio.sleep(1)
        ready_s = time.monotonic() - started - load_s
        user_ids = list(history)
        # Warm up past the model's next refresh (10 s by default): the rebuild that takes in
        # the loaded histories then happens before the measurement, not in the middle of it.
        warm_until = time.monotonic() + WARM_UP_S
        while time.monotonic() < warm_until:
            async with session.get(f"{url}/v1/users/{rng.choice(user_ids)}/recommendations") as r:
                await r.read()
        seconds: list[float] = []
        failures = 0
        empty = 0
        queue = [rng.choice(user_ids) for _ in range(requests)]
        pid = stack.processes[SERVICE].pid
        cpu = process_cpu_seconds(pid)
        began = time.monotonic()

        async def caller() -> None:
            nonlocal failures, empty
            while queue:
                user = queue.pop()
                t = time.perf_counter()
                async with session.get(f"{url}/v1/users/{user}/recommendations") as r:
                    body = await r.read()
                    if r.status != 200:
                        failures += 1
                    elif not json.loads(body)["items"]:
                        empty += 1
                seconds.append(time.perf_counter() - t)

        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.monotonic() - began
        cpu = process_cpu_seconds(pid) - cpu
    catalog = [
        Item(i, b["name"], b["category"], tuple(b["tags"]), b["points_price"], 1, None, None, True)
        for i, b in zip(item_ids, bodies, strict=True)
    ]
    return (
        {
            "items": items,
            "users": users,
            "redemptions": sum(len(v) for v in history.values()),
            "requests": requests,
            "concurrency": concurrency,
            "load_s": load_s,
            "ready_s": ready_s,
            "per_s": requests / elapsed,
            "failures": failures,
            "empty": empty,
            "cpu_ms_per_request": 1000 * cpu / requests,
            **_ms(seconds),
        },
        history,
        item_ids,
        {"catalog": catalog, "balances": balances},
    )


def offline_recall(
    catalog: list[Item], history: dict[str, list[str]], balances: dict[str, int], k: int = 5
) -> dict[str, Any]:
    """Leave-one-out recall@k of both recommenders and popularity (bench/recall.py)."""
    result = recall_of(catalog, history, balances, k)
    return {
        "users": result["users"],
        "k": k,
        "recall": result["recall"]["item_item"],
        "user_based_recall": result["recall"]["user_based"],
        "popularity_recall": result["recall"]["popularity"],
        "per_user_ms": result["per_user_ms"]["item_item"],
    }


# -- the consumer against the end-to-end rate ---------------------------------------------------


def _events(n: int, users: int, rng: random.Random) -> list[tuple[str, str, bytes]]:
    """n behaviors and the credit each one earns, as behavior_sensor and the ledger publish
    them (the credit right after its behavior, on the same user's partition)."""
    out = []
    now = datetime.now(UTC)
    balances: Counter[str] = Counter()
    entry = 10**15 + rng.randrange(10**12)
    for _ in range(n):
        user = f"flow-{int(users * rng.random() ** 2)}"
        event_id = uuid.uuid4().hex
        behavior = BehaviorEvent(
            behavior_id=stable_id("bench-insights", event_id),
            event_id=event_id,
            source="bench",
            user_id=user,
            action="bench_insights",
            occurred_at=now,
            received_at=now,
        )
        balances[user] += 1
        entry += 1
        credit = LedgerEvent(
            type="credited",
            entry_id=entry,
            user_id=user,
            points=1,
            balance_after=balances[user],
            idempotency_key=f"bench-insights:{event_id}",
            occurred_at=now,
        )
        out.append((BEHAVIOR_EVENTS, user, behavior.model_dump_json().encode()))
        out.append((LEDGER_EVENTS, user, credit.model_dump_json().encode()))
    return out


async def consumer(stack: Stack, bootstrap: str, behaviors: int, users: int) -> dict[str, Any]:
    """Insights alone on a burst of behaviors and their credits: the other consumers of
    behavior.events and ledger.events are stopped meanwhile (and started again after)."""
    topics = CONSUMER_GROUPS[GROUP]
    others = [s for s in ("task_progress", "engagement") if s in stack.processes]
    for service in others:
        stack.stop_service(service)
    try:
        messages = _events(behaviors, users, random.Random(11))
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            pid = stack.processes[SERVICE].pid
            cpu = process_cpu_seconds(pid)
            started = time.monotonic()
            for chunk in range(0, len(messages), 5000):
                await asyncio.gather(
                    *[
                        await producer.send(topic, value, key=key.encode())
                        for topic, key, value in messages[chunk : chunk + 5000]
                    ]
                )
            produced_s = time.monotonic() - started
            deadline = started + 600
            while await consumer_lag(bootstrap, GROUP, topics) > 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("insights did not catch up within 10 minutes")
                await asyncio.sleep(0.5)
            elapsed = time.monotonic() - started
            cpu = process_cpu_seconds(pid) - cpu
        finally:
            await producer.stop()
    finally:
        for service in others:
            stack.start_service(service)
        if others:
            stack.wait_ready(180, tuple(others))
    return {
        "behaviors": behaviors,
        "messages": len(messages),
        "produced_s": produced_s,
        "seconds": elapsed,
        "behaviors_per_s": behaviors / elapsed,
        "messages_per_s": len(messages) / elapsed,
        "cpu_ms_per_behavior": 1000 * cpu / behaviors,
        "cpu_ms_per_message": 1000 * cpu / len(messages),
    }


# -- wiring -------------------------------------------------------------------------------------


async def measure(
    stack: Stack, server_url: str, bootstrap: str, end_to_end_rate: float | None = None
) -> dict[str, Any]:
    """Every insights benchmark with the sizes from the environment (BENCH_INSIGHTS_*)."""
    results: dict[str, Any] = {"insights_load_average": os.getloadavg()[0]}
    print("  insights: consumer alone on behaviors and their credits ...", flush=True)
    flow = await consumer(
        stack,
        bootstrap,
        env_int("BENCH_INSIGHTS_FLOW_BEHAVIORS", 50_000),
        env_int("BENCH_INSIGHTS_FLOW_USERS", 20_000),
    )
    flow["end_to_end_rate"] = end_to_end_rate or DOCUMENTED_END_TO_END
    flow["end_to_end_measured"] = end_to_end_rate is not None
    results["insights_consumer"] = flow
    behaviors = env_int("BENCH_INSIGHTS_BEHAVIORS", 10_000_000)
    print(f"  insights: rollups of {behaviors:,} behaviors over {DAYS} days ...", flush=True)
    results["insights_kpis"] = await kpi_queries(
        stack, server_url, behaviors, env_int("BENCH_INSIGHTS_USERS", 200_000)
    )
    print("  insights: recommendations ...", flush=True)
    reco, history, _, extra = await recommendations(
        stack,
        server_url,
        env_int("BENCH_INSIGHTS_ITEMS", 400),
        env_int("BENCH_INSIGHTS_RECO_USERS", 20_000),
        env_int("BENCH_INSIGHTS_REQUESTS", 3000),
        env_int("BENCH_INSIGHTS_CONCURRENCY", 2),
    )
    results["insights_recommendations"] = reco
    print("  insights: offline recall@5 ...", flush=True)
    results["insights_recall"] = offline_recall(extra["catalog"], history, extra["balances"])
    return results


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Table rows (what, headline, detail) for bench/__main__.py's table()."""
    out: list[tuple[str, str, str]] = []
    if (load := results.get("insights_load_average")) is not None:
        out.append(("insights: machine load when it began", f"{load:.1f}", "1-minute average"))
    if (flow := results.get("insights_consumer")) is not None:
        source = "this run" if flow["end_to_end_measured"] else "docs/BENCHMARKS.md"
        out.append(
            (
                "insights: consumer alone, behavior + credit",
                f"{flow['behaviors_per_s']:,.0f} behaviors/s",
                f"{flow['messages_per_s']:,.0f} messages/s; end to end credits "
                f"{flow['end_to_end_rate']:,.0f}/s ({source}): "
                f"{flow['behaviors_per_s'] / flow['end_to_end_rate']:.1f}x headroom",
            )
        )
        out.append(
            (
                "insights: CPU per behavior (+ its credit)",
                f"{flow['cpu_ms_per_behavior']:.3f} ms",
                f"{flow['cpu_ms_per_message']:.3f} ms per message",
            )
        )
    if (kpis := results.get("insights_kpis")) is not None:
        for name, label in (
            ("series", f"GET /v1/kpis, {kpis['days']} days"),
            ("summary", "GET /v1/kpis/summary"),
        ):
            r = kpis[name]
            out.append(
                (
                    f"insights: {label}",
                    f"p99 {r['p99_ms']:,.1f} ms",
                    f"p50 {r['p50_ms']:,.1f} ms; rollups of {kpis['behaviors']:,} behaviors "
                    f"({kpis['active_user_days']:,} active user-days, built in "
                    f"{kpis['build_s']:.0f} s); {kpis['cpu_ms_per_query']:.1f} ms CPU per query",
                )
            )
    if (reco := results.get("insights_recommendations")) is not None:
        out.append(
            (
                f"insights: recommendations, {reco['concurrency']} callers",
                f"p99 {reco['p99_ms']:,.1f} ms",
                f"p50 {reco['p50_ms']:,.1f} ms; {reco['per_s']:,.0f}/s; {reco['items']} items, "
                f"{reco['redemptions']:,} redemptions of {reco['users']:,} users; "
                f"{reco['cpu_ms_per_request']:.2f} ms CPU each; {reco['failures']} failed, "
                f"{reco['empty']} empty",
            )
        )
    if (recall := results.get("insights_recall")) is not None:
        out.append(
            (
                f"insights: offline recall@{recall['k']}",
                f"{recall['recall']:.3f}",
                f"item-item; user-based {recall['user_based_recall']:.3f}, popularity "
                f"{recall['popularity_recall']:.3f}; {recall['users']:,} users, last "
                "redemption held out",
            )
        )
    return out


def main() -> None:
    """`python -m bench.insights`: these benchmarks alone, on a fresh embedded stack."""
    import tempfile
    from pathlib import Path

    from services.devstack import EmbeddedBroker, free_port, start_embedded_postgres
    from services.devstack import stop_embedded_postgres as stop_postgres

    scratch = Path(tempfile.mkdtemp(prefix="jifen-bench-insights-"))
    database = os.environ.get("JIFEN_DATABASE_URL") or start_embedded_postgres(scratch / "pg")
    broker = EmbeddedBroker(port=free_port())
    bootstrap = broker.start(log_path=scratch / "broker.log")
    stack = Stack(
        database_url=database,
        kafka_bootstrap=bootstrap,
        base_port=int(os.environ.get("BENCH_BASE_PORT", 18200)),
        env={"JIFEN_LOG_LEVEL": "WARNING", "JIFEN_SEED_DEMO": "false"},
        log_dir=scratch / "logs",
    )
    try:
        stack.start(timeout=180)
        results = asyncio.run(measure(stack, database, bootstrap))
    finally:
        stack.stop()
        broker.stop()
        stop_postgres()
    width = max(len(r[0]) for r in rows(results))
    for what, headline, detail in rows(results):
        print(f"{what:<{width}}  {headline:>18}  {detail}")
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
