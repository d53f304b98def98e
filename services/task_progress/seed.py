"""Demo rules for `make run`: the operations table from the product design."""

from __future__ import annotations

from services.task_progress import repository as repo
from services.task_progress.schemas import TaskCreate
from services.task_progress.service import rule_snapshot
from shared.events import stable_id
from shared.service import Runtime

DEMO_TASKS = [
    {
        "name": "Daily check-in",
        "description": "Check in every day: 5 points, rising to 30 on the 7th day in a row",
        "action": "checkin",
        "kind": "checkin",
        "ladder": [
            {"day": 1, "amount": 5},
            {"day": 3, "amount": 10},
            {"day": 5, "amount": 15},
            {"day": 7, "amount": 30},
        ],
        "cycle_days": 7,
        "after_cycle": "restart",
        "makeup": {"window_days": 7, "max_per_month": 2, "cost_points": 20},
    },
    {
        "name": "Daily login",
        "description": "Log in once a day",
        "action": "login",
        "reward_points": 2,
        "period": "day",
        "max_per_period": 1,
    },
    {
        "name": "Like 3 posts",
        "description": "Every 3 likes earn 1 point, up to 20 times a day",
        "action": "like",
        "target_count": 3,
        "reward_points": 1,
        "period": "day",
        "max_per_period": 20,
    },
    {
        "name": "Thoughtful comment",
        "description": "A comment of 20+ characters earns 10 points, 5 a day",
        "action": "comment",
        "reward_points": 10,
        "period": "day",
        "max_per_period": 5,
        "conditions": [{"attribute": "length", "op": ">=", "value": 20}],
    },
    {
        "name": "Share",
        "description": "Share content, 3 times a day",
        "action": "share",
        "reward_points": 3,
        "period": "day",
        "max_per_period": 3,
    },
    {
        "name": "Big order bonus",
        "description": "An order over 100 yuan earns 20 points",
        "action": "order_paid",
        "reward_points": 20,
        "period": "lifetime",
        "conditions": [{"attribute": "amount_cents", "op": ">=", "value": 10000}],
    },
    {
        "name": "Points per spend",
        "description": "1 point for every 10 yuan spent",
        "action": "order_paid",
        "kind": "amount_ratio",
        "amount_unit_cents": 1000,
        "reward_points": 1,
        "period": "lifetime",
        "points_validity_days": 365,
    },
    {
        "name": "First order",
        "description": "Your first paid order earns 50 points",
        "action": "order_paid",
        "reward_points": 50,
        "period": "once",
    },
]


async def seed_demo_tasks(rt: Runtime) -> None:
    async with rt.db.transaction() as session:
        for spec in DEMO_TASKS:
            body = TaskCreate.model_validate(spec)
            task_id = stable_id("demo-task", body.name)
            await repo.insert_task(session, {"id": task_id, **body.model_dump()}, if_absent=True)
            await repo.insert_version(session, task_id, 1, rule_snapshot(body.model_dump()))
