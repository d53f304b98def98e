"""Finishing a redemption happens once, whoever gets there first.

The request that made a redemption and the recovery loop may both try to finish it (complete
it after the debit, or fail and compensate it). One statement locks the row and moves it only
if it is still in the state its finisher expects; the loser must move nothing, release nothing
and issue nothing, and learn the state the winner left. These tests race two finishers on the
real database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from services.exchange import repository as repo
from services.exchange.models import coupons
from services.exchange.service import Exchange, Finish
from services.exchange.settings import Settings
from services.rewards_ledger.client import LedgerClient
from shared.db import Database
from tests.integration.helpers import (
    create_item,
    exchange_reconciliation,
    get_item,
    open_database,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def exchange_db(infra) -> AsyncIterator[Database]:
    async with open_database(infra.database_url, "jifen_exchange") as db:
        yield db


async def pending_redemption(db: Database, item: dict[str, Any]) -> Any:
    """A redemption that holds one unit and waits for its debit (out of the recovery loop's
    reach for an hour), written as the exchange's first step writes it."""
    async with db.transaction() as session:
        row = {
            "id": str(uuid.uuid4()),
            "user_id": f"finish_{uuid.uuid4().hex[:8]}",
            "idempotency_key": uuid.uuid4().hex,
            "item_id": item["id"],
            "item_type": item["type"],
            "item_name": item["name"],
            "quantity": 1,
            "points": item["points_price"],
            "status": "pending",
            "holds_stock": True,
            "limit_period_key": None,
            "shipping_address": None,
            "next_attempt_at": datetime.now(UTC) + timedelta(hours=1),
        }
        [inserted] = (await repo.insert_redemptions(session, [row])).values()
        assert await repo.reserve_stock(session, item["id"], 1)
    return inserted


def failure(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "expected": "pending",
        "status": "failed",
        "release": True,
        "failure_code": "ledger_unavailable",
        "failure_message": "test",
        "compensated": True,
    }


async def test_a_finisher_waiting_on_the_lock_moves_nothing_once_the_other_has_finished(
    http, exchange_db
) -> None:
    exchange = http("exchange")
    item = await create_item(exchange, type="coupon", stock=5)
    row = await pending_redemption(exchange_db, item)

    first = exchange_db.sessions()
    await first.begin()
    moved = await repo.finish_redemptions(first, [failure(row)])
    assert moved[row.id].status == "failed" and moved[row.id].held_stock is True

    async def complete() -> dict[str, Any]:
        async with exchange_db.transaction() as session:
            return await repo.finish_redemptions(
                session,
                [
                    {
                        "id": row.id,
                        "expected": "pending",
                        "status": "completed",
                        "release": False,
                        "ledger_entry_id": 1,
                        "balance_after": 0,
                        "reward": {"type": "coupon", "codes": ["X"]},
                    }
                ],
            )

    second = asyncio.create_task(complete())
    await asyncio.sleep(0.5)
    assert not second.done(), "the second finisher did not wait for the row lock"
    await repo.release_stock(first, item["id"], 1)
    await first.commit()
    await first.close()

    assert await second == {}  # it found the row failed under the lock: nothing to do
    async with exchange_db.transaction() as session:
        [now] = (await repo.redemptions_by_ids(session, [row.id])).values()
    assert (now.status, now.holds_stock, now.reward, now.ledger_entry_id) == (
        "failed",
        False,
        None,
        None,
    )
    assert (await get_item(exchange, item["id"]))["stock"] == 5
    assert (await exchange_reconciliation(exchange))["ok"]


async def test_completion_and_compensation_racing_leave_one_outcome_and_its_effects_once(
    http, infra, exchange_db
) -> None:
    exchange = http("exchange")
    service = Exchange(Settings(), exchange_db, LedgerClient("http://127.0.0.1:9", "unused", 1))
    item = await create_item(exchange, type="coupon", stock=20)
    completed = 0
    for _ in range(10):
        row = await pending_redemption(exchange_db, item)
        completion = Finish.completed(row, {"entry_id": 7, "balance_after": 0})
        compensation = Finish.failed(row, "ledger_unavailable", "test", True)
        seen = await asyncio.gather(
            service.finish_many([completion]), service.finish_many([compensation])
        )
        # Both finishers report the same final state: the winner's.
        final = {s[row.id].status for s in seen}
        assert len(final) == 1 and final <= {"completed", "failed"}, final
        completed += final == {"completed"}
        async with exchange_db.transaction() as session:
            issued = (
                await session.execute(select(func.count()).where(coupons.c.redemption_id == row.id))
            ).scalar_one()
        assert issued == (1 if final == {"completed"} else 0)
    # A completed redemption keeps its unit; a compensated one gave it back, once.
    assert (await get_item(exchange, item["id"]))["stock"] == 20 - completed
    report = await exchange_reconciliation(exchange)
    assert report["ok"], report
    await service.ledger.close()
