"""The points lifecycle: expiry sweeps (several replicas, run twice), refunds after expiry.

The sweep tests drive the ledger's own code against a private database on the real
PostgreSQL, with an explicit clock, so they can move time forward without touching the data
of the running suite.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from services.rewards_ledger import service
from services.rewards_ledger.models import journal_entries
from services.rewards_ledger.settings import Settings
from services.rewards_ledger.workers import ExpirySweeper
from shared.db import Database
from shared.messaging.outbox import UNSENT_MESSAGES
from tests.conftest import ADMIN, eventually, unique
from tests.integration.helpers import balance, credit, entries, reconciled, reconciliation

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _give(db: Database, user: str, points: int, expires_at: datetime) -> None:
    async with db.transaction() as session:
        await service.credit(
            session,
            [service.NewCredit(user, points, unique("give"), "adjustment", "t", expires_at)],
        )


async def _count(db: Database, kind: str, user_prefix: str) -> int:
    async with db.transaction() as session:
        stmt = select(func.count()).where(
            journal_entries.c.kind == kind, journal_entries.c.user_id.like(f"{user_prefix}%")
        )
        return int((await session.execute(stmt)).scalar_one())


async def _reconciled(db: Database) -> None:
    await reconciled(db)


async def test_sweeps_in_several_replicas_run_twice_expire_each_lot_once(ledger_db) -> None:
    prefix = unique("sweep")
    users = [f"{prefix}_{i}" for i in range(60)]
    for i, user in enumerate(users):
        await _give(ledger_db, user, 10 + i, T0 + timedelta(days=1))  # due
        await _give(ledger_db, user, 5, T0 + timedelta(days=30))  # not yet
    settings = Settings(expiry_sweep_batch=7)  # many small batches, so replicas interleave
    replicas = [ExpirySweeper(settings, ledger_db) for _ in range(3)]
    now = T0 + timedelta(days=2)

    first = await asyncio.gather(*(r.sweep_once(now) for r in replicas))
    second = await asyncio.gather(*(r.sweep_once(now) for r in replicas))

    assert sum(first) == 60 and sum(second) == 0
    assert await _count(ledger_db, "expire", prefix) == 60
    async with ledger_db.transaction() as session:
        view = await service.account_view(session, users[3], now, 30)
        events = (
            await session.execute(
                text(
                    f"SELECT count(*) FROM ({UNSENT_MESSAGES}) m "
                    "WHERE m.key LIKE :prefix AND CAST(m.payload AS jsonb) ->> 'type' = 'expired'"
                ),
                {"prefix": f"{prefix}%"},
            )
        ).scalar_one()
    assert view["balance"] == 5 and view["expiring_within_30_days"] == 5
    assert events == 60  # one ledger.events message per expired lot
    await _reconciled(ledger_db)


async def test_a_debit_never_spends_expired_points_even_before_the_sweep(ledger_db) -> None:
    user = unique("lazy")
    await _give(ledger_db, user, 30, T0 + timedelta(days=1))
    await _give(ledger_db, user, 20, T0 + timedelta(days=90))
    now = T0 + timedelta(days=5)
    async with ledger_db.transaction() as session:
        with pytest.raises(service.InsufficientPoints):
            await service.debit(session, user, 25, unique("d"), "", None, now=now)
    async with ledger_db.transaction() as session:
        result, _ = await service.debit(session, user, 20, unique("d"), "", None, now=now)
    assert result["balance_after"] == 0
    assert await _count(ledger_db, "expire", user) == 1
    await _reconciled(ledger_db)


async def test_a_refund_after_its_lot_expired_gives_the_points_back_and_expires_them(
    ledger_db,
) -> None:
    user = unique("late_refund")
    await _give(ledger_db, user, 30, T0 + timedelta(days=10))
    await _give(ledger_db, user, 50, T0 + timedelta(days=100))
    key = unique("buy")
    async with ledger_db.transaction() as session:
        await service.debit(session, user, 40, key, "", None, now=T0)
    async with ledger_db.transaction() as session:
        first, created = await service.refund(session, user, key, "", now=T0 + timedelta(days=20))
    async with ledger_db.transaction() as session:
        again, created_again = await service.refund(
            session, user, key, "", now=T0 + timedelta(days=21)
        )
    assert created and not created_again
    assert first["points"] == 40 and first["expired_points"] == 30
    assert first["balance_after"] == 50  # 10 back to the live lot, 30 back and expired at once
    assert again["allocations"] == first["allocations"]
    assert {(a["points"], a["expired"]) for a in first["allocations"]} == {(30, True), (10, False)}
    await _reconciled(ledger_db)


async def test_refunding_a_debit_that_never_arrived_voids_its_key(ledger_db) -> None:
    user = unique("void")
    await _give(ledger_db, user, 30, T0 + timedelta(days=10))
    async with ledger_db.transaction() as session:
        voided, created = await service.refund(session, user, "never-came", "timeout", now=T0)
    assert created and voided["status"] == "voided" and voided["points"] == 0
    async with ledger_db.transaction() as session:
        with pytest.raises(service.DomainError) as refused:
            await service.debit(session, user, 10, "never-came", "", None, now=T0)
    assert refused.value.code == "debit_voided"
    async with ledger_db.transaction() as session:
        assert (await service.account_view(session, user, T0, 30))["balance"] == 30
    await _reconciled(ledger_db)


async def test_the_running_ledger_expires_due_points_on_its_own(http) -> None:
    ledger = http("rewards_ledger")
    user = unique("expiring")
    await credit(ledger, user, 40, validity_days=365)
    await credit(
        ledger, user, 25, expires_at=(datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    )
    account = (await ledger.get(f"/v1/accounts/{user}", headers=ADMIN)).json()
    assert account["balance"] == 65 and account["expiring_within_7_days"] == 25
    assert account["expiring_soon"][0]["points"] == 25

    async def expired() -> None:
        assert await balance(ledger, user) == 40

    await eventually(expired, timeout=30)
    await asyncio.sleep(2)  # a few more sweeps find nothing to do
    kinds = [e["kind"] for e in await entries(ledger, user)]
    assert kinds.count("expire") == 1 and await balance(ledger, user) == 40
    assert (await reconciliation(ledger))["ok"]


async def test_a_batch_of_debits_judges_each_one_as_if_it_came_alone(ledger_db) -> None:
    rich, poor, nobody = unique("rich"), unique("poor"), unique("nobody")
    await _give(ledger_db, rich, 30, T0 + timedelta(days=10))
    await _give(ledger_db, rich, 50, T0 + timedelta(days=100))
    await _give(ledger_db, poor, 5, T0 + timedelta(days=100))
    earlier = unique("earlier")
    async with ledger_db.transaction() as session:
        before, _ = await service.debit(session, rich, 10, earlier, "", None, now=T0)
    async with ledger_db.transaction() as session:
        await service.refund(session, poor, "gone", "timeout", now=T0)  # voids the key "gone"
    twice = unique("twice")
    commands = [
        service.DebitCommand(rich, 25, twice, "first", "ref-1"),  # spans both lots
        service.DebitCommand(poor, 10, unique("big")),  # more than poor has
        service.DebitCommand(rich, 25, twice, "first", "ref-1"),  # same key again: a replay
        service.DebitCommand(rich, 10, earlier),  # a key used before this batch: a replay
        service.DebitCommand(rich, 11, earlier),  # that key for another amount: refused
        service.DebitCommand(poor, 1, "gone"),  # a voided key: refused
        service.DebitCommand(nobody, 1, unique("ghost")),  # no account at all
        service.DebitCommand(rich, 45, unique("rest")),  # all that is left after the first
        service.DebitCommand(rich, 1, unique("over")),  # now rich has nothing left
    ]
    async with ledger_db.transaction() as session:
        outcomes = await service.debit_many(session, commands, now=T0)

    errors = [o.code if isinstance(o, service.DomainError) else None for o in outcomes]
    assert errors == [
        None,
        "insufficient_points",
        None,
        None,
        "idempotency_key_reused",
        "debit_voided",
        "insufficient_points",
        None,
        "insufficient_points",
    ]
    first, created = outcomes[0]
    assert created and first["balance_after"] == 45 and first["reference"] == "ref-1"
    # Earliest expiry first: the 20 left of the 30-point lot, then 5 of the 50-point lot.
    assert [a["points"] for a in first["allocations"]] == [20, 5]
    assert outcomes[2] == (first, False)
    assert outcomes[3] == (before, False)
    assert outcomes[7][0]["balance_after"] == 0 and outcomes[7][1] is True
    async with ledger_db.transaction() as session:
        assert (await service.account_view(session, rich, T0, 30))["balance"] == 0
        assert (await service.account_view(session, poor, T0, 30))["balance"] == 5
        # Each stored debit reads back exactly as the batch answered it.
        alone, created_alone = await service.debit(session, rich, 25, twice, "", None, now=T0)
    assert (alone, created_alone) == (first, False)
    await _reconciled(ledger_db)


async def test_the_batch_debit_endpoint_answers_per_debit(http) -> None:
    ledger = http("rewards_ledger")
    user = unique("batch")
    await credit(ledger, user, 30)
    key = unique("k")
    body = {
        "debits": [
            {"user_id": user, "points": 20, "idempotency_key": key, "reference": "r:1"},
            {"user_id": user, "points": 20, "idempotency_key": unique("k")},
            {"user_id": user, "points": 20, "idempotency_key": key, "reference": "r:1"},
        ]
    }
    response = await ledger.post("/v1/debits/batch", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 409, 200]
    assert results[0]["debit"]["balance_after"] == 10
    assert results[2]["debit"] == results[0]["debit"]
    assert results[1]["error"] == "insufficient_points" and results[1]["details"] == {
        "balance": 10,
        "requested": 20,
    }
    assert await balance(ledger, user) == 10

    # Not for users, and a malformed batch is refused whole with nothing applied.
    assert (await ledger.post("/v1/debits/batch", json=body)).status_code == 401
    bad = {"debits": [{"user_id": user, "points": 1, "idempotency_key": unique("k")}, {}]}
    refused = await ledger.post("/v1/debits/batch", json=bad, headers=ADMIN)
    assert refused.status_code == 422 and refused.json()["error"] == "validation_error"
    empty = await ledger.post("/v1/debits/batch", json={"debits": []}, headers=ADMIN)
    assert empty.status_code == 422
    assert await balance(ledger, user) == 10
    assert (await reconciliation(ledger))["ok"]
