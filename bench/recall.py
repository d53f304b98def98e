"""Offline recall@5 of both recommenders on the bench's histories: `python -m bench.recall`.

The histories are the ones `bench/insights.py` loads for its recommendation benchmark (users
with taste: one or two favourite categories, an item often followed by its companion), each
user with a points balance drawn as that benchmark draws it. Leave-one-out: each user's last
redemption is held out (users with at least 3), and each recommender ranks the whole catalog
from the rest: no price band, since the balances are drawn independently of taste and a band
would cap both recalls alike (the user-based recommender still picks its peers by balance).
recall@5 is the share of users whose held-out item is in their top 5; the 5 most redeemed
items are the baseline. Pure CPU, no stack: a few seconds.

Sizes: BENCH_INSIGHTS_ITEMS (400) and BENCH_INSIGHTS_RECO_USERS (20,000), like the online
benchmark; 1,000 users sampled.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.insights.recommendations import (
    RECOMMENDERS,
    Item,
    Model,
    Redeemed,
    UserView,
    recall_at_k,
)

TZ = ZoneInfo("Asia/Shanghai")
BALANCES = (400, 600, 1000, 1500, 2500)  # what bench/insights.py gives its users
WHOLE_CATALOG = (1, 10**12)


def draw_balances(users: list[str], rng: random.Random) -> dict[str, int]:
    return {user: rng.choice(BALANCES) for user in users}


def recall_of(
    catalog: list[Item],
    history: dict[str, list[str]],
    balances: dict[str, int],
    k: int = 5,
    sample: int = 1000,
) -> dict[str, Any]:
    """Leave-one-out recall@k of every recommender and of popularity, on `sample` users."""
    rng = random.Random(5)
    now = datetime.now(UTC)
    train = {u: items[:-1] for u, items in history.items() if len(items) >= 3}
    held = {u: {history[u][-1]} for u in train}
    popularity = Counter(i for items in train.values() for i in items)
    started = time.monotonic()
    model = Model.from_history(catalog, train, popularity, now, balances=balances)
    build_s = time.monotonic() - started
    users = rng.sample(sorted(train), min(sample, len(train)))
    subset = {u: held[u] for u in users}
    at = now - timedelta(days=30)
    recall: dict[str, float] = {}
    per_user_ms: dict[str, float] = {}
    for arm, recommend in sorted(RECOMMENDERS.items()):
        started = time.monotonic()
        ranked = {
            u: [
                r.item_id
                for r in recommend(
                    model,
                    UserView(u, balances[u], redeemed=[Redeemed(i, 1, at) for i in train[u]]),
                    limit=k,
                    now=now,
                    tz=TZ,
                    band=WHOLE_CATALOG,
                )
            ]
            for u in users
        }
        per_user_ms[arm] = 1000 * (time.monotonic() - started) / max(len(users), 1)
        recall[arm] = recall_at_k(ranked, subset, k)
    top = [i for i, _ in popularity.most_common(k)]
    recall["popularity"] = recall_at_k({u: top for u in users}, subset, k)
    return {
        "users": len(users),
        "k": k,
        "recall": recall,
        "per_user_ms": per_user_ms,
        "model_build_s": build_s,
    }


def evaluate(
    items: int = 400, users: int = 20_000, sample: int = 1000, seed: int = 23
) -> dict[str, Any]:
    """The benchmark's catalog and histories, generated without a stack, then `recall_of`."""
    from bench.insights import catalog_bodies, histories  # the same generators

    rng = random.Random(seed)
    bodies = catalog_bodies(items, rng)
    item_ids = [f"bench-item-{n}" for n in range(items)]
    catalog = [
        Item(i, b["name"], b["category"], tuple(b["tags"]), b["points_price"], 1, None, None, True)
        for i, b in zip(item_ids, bodies, strict=True)
    ]
    history = histories(item_ids, users, rng)
    result = recall_of(catalog, history, draw_balances(sorted(history), rng), sample=sample)
    return {"items": items, "histories": users, **result}


def main() -> None:
    result = evaluate(
        int(os.environ.get("BENCH_INSIGHTS_ITEMS", 400)),
        int(os.environ.get("BENCH_INSIGHTS_RECO_USERS", 20_000)),
    )
    for arm, value in result["recall"].items():
        ms = result["per_user_ms"].get(arm)
        cost = f"  {ms:.2f} ms per user" if ms is not None else ""
        print(f"recall@{result['k']} {arm:<11} {value:.3f}{cost}")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
