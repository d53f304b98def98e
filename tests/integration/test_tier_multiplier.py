"""A member tier's points multiplier reaches the next grant: engagement decides the tier from
growth earned, task_progress keeps the change (tier.changed) and multiplies the points of
behaviors that happen from then on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import ADMIN, envelope, eventually, unique
from tests.integration.helpers import (
    create_task,
    credit,
    entries,
    open_database,
    send,
    wait_for_balance,
)

pytestmark = pytest.mark.integration

# The ladder the engagement tests use too (PUT replaces it with the same tiers).
LADDER = [
    {"code": "member", "name": "会员", "min_growth": 0, "multiplier": 1.0},
    {"code": "silver", "name": "白银", "min_growth": 100, "multiplier": 1.2},
    {"code": "gold", "name": "黄金", "min_growth": 1000, "multiplier": 1.5, "benefits": ["gift"]},
]


async def test_the_tier_multiplier_applies_to_points_earned_after_the_upgrade(http, infra) -> None:
    engagement, tasks = http("engagement"), http("task_progress")
    sensor, ledger = http("behavior_sensor"), http("rewards_ledger")
    assert (await engagement.put("/v1/tiers", json=LADDER, headers=ADMIN)).status_code == 200
    action = unique("post").lower()
    await create_task(tasks, action=action, reward_points=10, period="day")
    user = unique("member")
    before = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    await send(sensor, [envelope(user, action, before)])
    await wait_for_balance(ledger, user, 10)  # no tier yet: 1x

    await credit(ledger, user, 150, asset="growth")

    async def known_to_task_progress() -> Any:
        async with open_database(infra.database_url, "jifen_task_progress") as db:
            async with db.read_only() as session:
                row = (
                    await session.execute(
                        text("SELECT tier, multiplier FROM tier_history WHERE user_id = :u"),
                        {"u": user},
                    )
                ).one_or_none()
        assert row is not None and row.tier == "silver"
        return row

    await eventually(known_to_task_progress, timeout=30)
    await send(sensor, [envelope(user, action, datetime.now(UTC).isoformat())])
    await wait_for_balance(ledger, user, 10 + 12)  # 10 x 1.2
    # A behavior from before the upgrade, arriving late, earns at the tier held then.
    await send(sensor, [envelope(user, action, before)])
    await wait_for_balance(ledger, user, 10 + 12 + 10)
    reasons = [e["reason"] for e in await entries(ledger, user)]
    assert sum("tier x1.2" in r for r in reasons) == 1
