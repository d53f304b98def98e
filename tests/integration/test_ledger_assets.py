"""Assets, pending points, clawbacks with debt, paid extensions and the liability report.

Most tests drive the ledger's own code on a private database (`ledger_db`) with a clock they
move; the HTTP ones use the running suite.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.rewards_ledger import service
from services.rewards_ledger.domain import AssetNotSpendable, NothingToExtend
from services.rewards_ledger.models import journal_entries
from services.rewards_ledger.settings import Settings
from services.rewards_ledger.workers import ReleaseSweeper
from shared.db import Database
from shared.errors import NotFound
from shared.events import ClawbackCommand, GrantCommand
from tests.conftest import ADMIN, unique
from tests.integration.helpers import credit, reconciled, reconciliation

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def grant(
    user: str, points: int, *, pending_days: int | None = None, **fields: Any
) -> GrantCommand:
    return GrantCommand(
        grant_id=fields.pop("grant_id", unique("g")),
        user_id=user,
        points=points,
        available_at=T0 + timedelta(days=pending_days) if pending_days else None,
        task_id="t",
        period_key="lifetime",
        completion=1,
        causation_event_id=fields.pop("causation", "order-1"),
        occurred_at=T0,
        **fields,
    )


def clawback(g: GrantCommand, total: int) -> ClawbackCommand:
    return ClawbackCommand(
        clawback_id=unique("c"),
        grant_id=g.grant_id,
        user_id=g.user_id,
        asset=g.asset,
        clawed_total=total,
        reference="refund-1",
        occurred_at=T0,
    )


async def apply(db: Database, *commands: Any, now: datetime = T0) -> None:
    async with db.transaction() as session:
        await service.apply_rewards(session, list(commands), 365, now)


async def view(db: Database, user: str, asset: str = "points", now: datetime = T0) -> dict:
    async with db.transaction() as session:
        return await service.account_view(session, user, now, 30, asset)


async def kinds(db: Database, user: str) -> list[str]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(journal_entries.c.kind)
            .where(journal_entries.c.user_id == user)
            .order_by(journal_entries.c.id)
        )
        return list(rows.scalars())


async def debit(db: Database, user: str, points: int, now: datetime = T0) -> None:
    async with db.transaction() as session:
        await service.debit(session, user, points, unique("d"), "", None, now=now)


async def test_pending_points_show_cannot_be_spent_and_are_released_exactly_once(
    ledger_db,
) -> None:
    users = [unique("pend") for _ in range(30)]
    await apply(ledger_db, *(grant(u, 70, pending_days=7) for u in users))
    await apply(ledger_db, grant(users[0], 10))  # available at once
    first = await view(ledger_db, users[0])
    assert (first["balance"], first["pending"]) == (10, 70)
    assert first["pending_lots"][0]["available_at"] == T0 + timedelta(days=7)
    with pytest.raises(service.InsufficientPoints):
        await debit(ledger_db, users[0], 11)

    settings = Settings(expiry_sweep_batch=4)  # small batches, so replicas interleave
    replicas = [ReleaseSweeper(settings, ledger_db) for _ in range(3)]
    early = await asyncio.gather(*(r.sweep_once(T0 + timedelta(days=6)) for r in replicas))
    assert sum(early) == 0
    due = T0 + timedelta(days=7, seconds=1)
    released = await asyncio.gather(*(r.sweep_once(due) for r in replicas))
    again = await asyncio.gather(*(r.sweep_once(due) for r in replicas))

    assert sum(released) == 30 and sum(again) == 0
    assert (await view(ledger_db, users[0], now=due))["balance"] == 80
    assert (await view(ledger_db, users[5], now=due))["pending"] == 0
    assert await kinds(ledger_db, users[5]) == ["pending", "release"]
    await debit(ledger_db, users[0], 80, now=due)
    await reconciled(ledger_db)


async def test_a_refund_before_release_cancels_the_pending_points(ledger_db) -> None:
    user = unique("cancel")
    ratio, bonus = grant(user, 30, pending_days=7), grant(user, 20, pending_days=7)
    await apply(ledger_db, ratio, bonus)
    await apply(ledger_db, clawback(ratio, 30), clawback(bonus, 20))
    account = await view(ledger_db, user)
    assert (account["balance"], account["pending"], account["debt"]) == (0, 0, 0)
    assert await ReleaseSweeper(Settings(), ledger_db).sweep_once(T0 + timedelta(days=8)) == 0
    assert await kinds(ledger_db, user) == ["pending", "pending", "clawback", "clawback"]
    await reconciled(ledger_db)


async def test_spent_points_become_debt_that_the_next_credit_repays_first(ledger_db) -> None:
    user = unique("debt")
    order = grant(user, 50)
    await apply(ledger_db, order, grant(user, 20))
    await debit(ledger_db, user, 60)  # 10 left
    await apply(ledger_db, clawback(order, 50))
    account = await view(ledger_db, user)
    assert (account["balance"], account["debt"]) == (0, 40)  # 10 taken back, 40 owed
    with pytest.raises(service.InsufficientPoints):
        await debit(ledger_db, user, 1)

    await apply(ledger_db, grant(user, 25))  # repays 25 of 40
    assert ((await view(ledger_db, user))["balance"], (await view(ledger_db, user))["debt"]) == (
        0,
        15,
    )
    await apply(ledger_db, grant(user, 100))  # repays the last 15
    account = await view(ledger_db, user)
    assert (account["balance"], account["debt"]) == (85, 0)
    assert (await kinds(ledger_db, user))[-4:] == ["credit", "debt_repaid", "credit", "debt_repaid"]
    await reconciled(ledger_db)


async def test_partial_clawbacks_reverse_in_steps_and_replays_change_nothing(ledger_db) -> None:
    user = unique("partial")
    order = grant(user, 100)
    await apply(ledger_db, order)
    await apply(ledger_db, clawback(order, 30))  # a 30% refund
    await apply(ledger_db, clawback(order, 30))  # the same again: nothing more
    assert (await view(ledger_db, user))["balance"] == 70
    await apply(ledger_db, clawback(order, 100), clawback(order, 60))  # the rest, and a late one
    assert (await view(ledger_db, user))["balance"] == 0
    assert (await kinds(ledger_db, user)).count("clawback") == 2
    await reconciled(ledger_db)


async def test_a_clawback_that_arrives_before_its_grant_applies_when_the_grant_comes(
    ledger_db,
) -> None:
    user = unique("early")
    order = grant(user, 40)
    await apply(ledger_db, clawback(order, 40))
    assert (await view(ledger_db, user))["balance"] == 0
    await apply(ledger_db, order)
    assert await kinds(ledger_db, user) == ["credit", "clawback"]
    assert (await view(ledger_db, user))["debt"] == 0
    await reconciled(ledger_db)


async def test_growth_never_expires_and_cannot_be_spent(ledger_db) -> None:
    user = unique("growth")
    await apply(ledger_db, grant(user, 10, asset="growth", expires_at=T0 + timedelta(days=1)))
    account = await view(ledger_db, user, "growth", now=T0 + timedelta(days=900))
    assert account["balance"] == 10 and account["expiring_within_30_days"] == 0
    async with ledger_db.transaction() as session:
        with pytest.raises(AssetNotSpendable):
            await service.debit(session, user, 5, unique("d"), "", None, asset="growth")
    assert (await view(ledger_db, user))["balance"] == 0  # points untouched


async def test_a_grant_of_an_unknown_asset_is_refused_and_changes_nothing(ledger_db) -> None:
    user = unique("unknown")
    with pytest.raises(NotFound):
        await apply(ledger_db, grant(user, 10), grant(user, 10, asset="nosuch"))
    assert await kinds(ledger_db, user) == []


async def _extend(db: Database, user: str, key: str, days: int = 90, now: datetime = T0) -> Any:
    async with db.transaction() as session:
        return await service.extend(
            session, user, days, key, window_days=30, fee_percent=10, fee_minimum=1, now=now
        )


async def test_an_extension_moves_expiring_points_once_for_a_fee_from_other_lots(
    ledger_db,
) -> None:
    user = unique("extend")
    await apply(
        ledger_db,
        grant(user, 200, expires_at=T0 + timedelta(days=10)),
        grant(user, 50, expires_at=T0 + timedelta(days=300)),
    )
    key = unique("ext")
    result, created = await _extend(ledger_db, user, key)
    assert created and result["fee"] == 20 and result["points_extended"] == 200
    assert result["lots"][0]["new_expires_at"] == T0 + timedelta(days=100)
    replay, created_again = await _extend(ledger_db, user, key)
    assert not created_again and replay["entry_id"] == result["entry_id"]
    with pytest.raises(NothingToExtend):  # that lot was extended once already
        await _extend(ledger_db, user, unique("ext"))
    account = await view(ledger_db, user, now=T0 + timedelta(days=20))
    assert account["balance"] == 230 and account["expiring_within_30_days"] == 0
    await reconciled(ledger_db)


async def test_an_extension_that_the_other_lots_cannot_pay_changes_nothing(ledger_db) -> None:
    user = unique("broke")
    await apply(ledger_db, grant(user, 200, expires_at=T0 + timedelta(days=10)))
    with pytest.raises(service.InsufficientPoints):
        await _extend(ledger_db, user, unique("ext"))
    assert await kinds(ledger_db, user) == ["credit"]


async def test_the_liability_report_adds_up_what_the_ledger_owes(ledger_db) -> None:
    async with ledger_db.transaction() as session:
        before = await service.liability_report(session, "points", T0, Settings().tz)
    user = unique("liab")
    order = grant(user, 100, expires_at=T0 + timedelta(days=40))
    await apply(ledger_db, order, grant(user, 30, pending_days=7))
    await debit(ledger_db, user, 100)
    await apply(ledger_db, clawback(order, 60))  # spent: debt 60
    async with ledger_db.transaction() as session:
        after = await service.liability_report(session, "points", T0, Settings().tz)

    assert after["outstanding"] - before["outstanding"] == 0
    assert after["pending"] - before["pending"] == 30
    assert after["debt"] - before["debt"] == 60
    assert len(after["expiring_by_month"]) == 12
    flows, old = after["last_30_days"], before["last_30_days"]
    assert flows["issued"] - old["issued"] == 130
    assert flows["spent"] - old["spent"] == 100
    assert flows["clawed_back"] - old["clawed_back"] == 60


async def test_assets_over_http(http) -> None:
    ledger = http("rewards_ledger")
    code = unique("balloon").lower()[:30]
    body = {"code": code, "name": "气球", "spendable": True, "expires": False}
    created = await ledger.post("/v1/assets", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    assert (await ledger.post("/v1/assets", json=body, headers=ADMIN)).status_code == 200
    other = await ledger.post("/v1/assets", json={**body, "spendable": False}, headers=ADMIN)
    assert other.status_code == 409 and other.json()["error"] == "asset_exists"
    codes = [a["code"] for a in (await ledger.get("/v1/assets", headers=ADMIN)).json()["items"]]
    assert {"points", "growth", code} <= set(codes)

    user = unique("holder")
    await credit(ledger, user, 7, asset=code)
    await credit(ledger, user, 3, asset="growth")
    listed = (await ledger.get(f"/v1/accounts/{user}/balances", headers=ADMIN)).json()
    held = {i["asset"]: i["balance"] for i in listed["items"]}
    assert held["points"] == 0 and held[code] == 7 and held["growth"] == 3

    spend = {"points": 2, "idempotency_key": unique("k"), "asset": "growth"}
    refused = await ledger.post(f"/v1/accounts/{user}/debits", json=spend, headers=ADMIN)
    assert refused.status_code == 409 and refused.json()["error"] == "asset_not_spendable"
    for bad in (
        {"points": 2, "idempotency_key": unique("k"), "asset": "nosuch"},
        {"points": -2, "idempotency_key": unique("k"), "asset": code},
    ):
        answer = await ledger.post(f"/v1/accounts/{user}/debits", json=bad, headers=ADMIN)
        assert answer.status_code in (404, 422) and "error" in answer.json()
    spent = await ledger.post(
        f"/v1/accounts/{user}/debits", json={**spend, "asset": code}, headers=ADMIN
    )
    assert spent.status_code == 201 and spent.json()["balance_after"] == 5
    report = await ledger.get("/v1/reports/liability", params={"asset": code}, headers=ADMIN)
    assert report.status_code == 200 and report.json()["outstanding"] >= 5
    missing = await ledger.get("/v1/reports/liability", params={"asset": "nosuch"}, headers=ADMIN)
    assert missing.status_code == 404
    assert (await reconciliation(ledger))["ok"]
