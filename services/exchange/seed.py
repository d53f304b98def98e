"""Demo catalog for `make run`: one item of each kind, idempotent by name."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from services.exchange import catalog
from services.exchange.models import items
from services.exchange.schemas import ItemCreate
from shared.service import Runtime

DEMO_ITEMS: list[dict[str, Any]] = [
    {
        "name": "5 yuan coupon",
        "description": "5 yuan off any order over 50 yuan",
        "category": "coupons",
        "tags": ["coupon", "popular"],
        "type": "coupon",
        "points_price": 50,
        "stock": 1000,
        "coupon_value_cents": 500,
        "per_user_limit": {"period": "day", "quantity": 2},
    },
    {
        "name": "20 yuan coupon",
        "description": "20 yuan off any order over 200 yuan",
        "category": "coupons",
        "tags": ["coupon"],
        "type": "coupon",
        "points_price": 180,
        "stock": 200,
        "coupon_value_cents": 2000,
        "per_user_limit": {"period": "month", "quantity": 3},
    },
    {
        "name": "VIP week",
        "description": "7 days of VIP membership; extends an active membership",
        "category": "membership",
        "tags": ["vip"],
        "type": "vip",
        "points_price": 120,
        "stock": 10000,
        "vip_days": 7,
    },
    {
        "name": "Jifen mug",
        "description": "A ceramic mug, shipped to your address",
        "image_url": "https://example.com/images/jifen-mug.png",
        "category": "merch",
        "tags": ["physical", "limited"],
        "type": "physical",
        "points_price": 300,
        "stock": 50,
        "per_user_limit": {"period": "lifetime", "quantity": 1},
    },
    {
        "name": "Profile badge",
        "description": "A badge on your profile",
        "category": "virtual",
        "tags": ["badge"],
        "type": "virtual",
        "points_price": 10,
        "stock": 100000,
    },
]


async def seed(rt: Runtime) -> None:
    async with rt.db.transaction() as session:
        existing = set((await session.execute(select(items.c.name))).scalars())
        for fields in DEMO_ITEMS:
            if fields["name"] not in existing:
                await catalog.create_item(session, ItemCreate.model_validate(fields).model_dump())
