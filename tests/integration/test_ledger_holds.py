"""Holds (积分抵现 at checkout) on a private ledger database, with an explicit clock: a hold, a
partial capture and a void, each retried and replayed, move exactly what they should; held
points do not expire while held and expire at once when released late; the deadline sweeper
voids each hold exactly once with several replicas; a corrupted hold fails reconciliation.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from services.rewards_ledger import service
from services.rewards_ledger.domain import CaptureExceedsHold, HoldExpired, InvalidTransition
from services.rewards_ledger.domain.refusals import IdempotencyKeyReused
from services.rewards_ledger.settings import Settings
from services.rewards_ledger.workers import ExpirySweeper, HoldSweeper
from shared.db import Database
from shared.events import ClawbackCommand, GrantCommand
from shared.messaging.outbox import UNSENT_MESSAGES
from tests.conftest import unique
from tests.integration.helpers import reconciled

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)


async def _give(db: Database, user: str, points: int, expires_at: datetime | None) -> str:
    async with db.transaction() as session:
        [entry] = await service.credit(
            session,
            [service.NewCredit(user, points, unique("give"), "adjustment", "t", expires_at)],
            T0,
        )
    return str(entry["lot_id"])


async def _run(db: Database, fn: Any, *args: Any, **kwargs: Any) -> Any:
    async with db.transaction() as session:
        return await fn(session, *args, **kwargs)


async def _hold(
    db: Database, user: str, points: int, key: str, until: datetime, now: datetime = T0
) -> tuple[dict[str, Any], bool]:
    command = service.HoldCommand(user, points, key, until, reference=f"order:{key}")
    return await _run(db, service.place_hold, command, now)  # type: ignore[no-any-return]


async def _account(db: Database, user: str, now: datetime = T0) -> dict[str, Any]:
    return await _run(db, service.account_view, user, now, 30)  # type: ignore[no-any-return]


async def _lots(db: Database, user: str) -> dict[str, tuple[int, int, str]]:
    async with db.transaction() as session:
        rows = await session.execute(
            text("SELECT id, remaining, held, status FROM lots WHERE user_id = :u"), {"u": user}
        )
        return {r.id: (r.remaining, r.held, r.status) for r in rows}


async def _kinds(db: Database, user: str) -> list[tuple[str, int, int]]:
    async with db.transaction() as session:
        rows = await session.execute(
            text(
                "SELECT kind, amount, held_delta FROM journal_entries WHERE user_id = :u "
                "ORDER BY id"
            ),
            {"u": user},
        )
        return [(r.kind, r.amount, r.held_delta) for r in rows]


async def test_a_hold_a_partial_capture_and_their_replays_move_exactly_what_they_should(
    ledger_db,
) -> None:
    user = unique("hold_user")
    soon = await _give(ledger_db, user, 100, T0 + 10 * DAY)
    later = await _give(ledger_db, user, 50, T0 + 30 * DAY)
    never = await _give(ledger_db, user, 30, None)
    key = unique("order")

    hold, created = await _hold(ledger_db, user, 120, key, T0 + DAY)
    again, created_again = await _hold(ledger_db, user, 120, key, T0 + DAY)

    assert created and not created_again and again == hold
    assert hold["status"] == "open" and hold["points"] == 120
    assert [(lot["lot_id"], lot["points"]) for lot in hold["lots"]] == [(soon, 100), (later, 20)]
    account = await _account(ledger_db, user)
    assert (account["balance"], account["held"]) == (60, 120)  # available, held
    with pytest.raises(IdempotencyKeyReused):
        await _hold(ledger_db, user, 121, key, T0 + DAY)
    with pytest.raises(service.InsufficientPoints):
        await _hold(ledger_db, user, 61, unique("order"), T0 + DAY)
    with pytest.raises(service.InsufficientPoints):  # a debit sees only what is available
        await _run(ledger_db, service.debit, user, 61, unique("d"), "", None, T0)
    await _run(ledger_db, service.debit, user, 60, unique("d"), "", None, T0)  # later 30, never 30

    capture = unique("pay")
    done, created = await _run(ledger_db, service.capture_hold, hold["id"], 90, capture, T0)
    replay, replayed = await _run(ledger_db, service.capture_hold, hold["id"], 90, capture, T0)

    assert created and not replayed and replay == done
    assert (done["status"], done["captured"], done["released"]) == ("captured", 90, 30)
    assert await _lots(ledger_db, user) == {
        soon: (10, 0, "active"),  # 90 captured of the 100 held, 10 released
        later: (20, 0, "active"),  # 20 released
        never: (0, 0, "active"),
    }
    account = await _account(ledger_db, user)
    assert (account["balance"], account["held"]) == (30, 0)
    assert (await _kinds(ledger_db, user))[3:] == [
        ("hold", 0, 120),
        ("debit", -60, 0),
        ("debit", -90, -120),  # the capture: 90 debited, the whole hold let go
    ]
    history = await _run(ledger_db, service.history, user, 1, None)
    assert history["items"][0]["allocations"] == [
        {"lot_id": soon, "points": 90, "expires_at": T0 + 10 * DAY}
    ]
    with pytest.raises(IdempotencyKeyReused):
        await _run(ledger_db, service.capture_hold, hold["id"], 80, capture, T0)
    with pytest.raises(InvalidTransition):
        await _run(ledger_db, service.capture_hold, hold["id"], 90, unique("pay"), T0)
    with pytest.raises(InvalidTransition):
        await _run(ledger_db, service.void_hold, hold["id"], unique("cancel"), T0)
    with pytest.raises(IdempotencyKeyReused):
        await _run(ledger_db, service.void_hold, hold["id"], capture, T0)

    # the capture is a debit under the caller's key: a refund gives its points back
    refund, _ = await _run(ledger_db, service.refund, user, capture, "order refunded", None, T0)
    assert refund["points"] == 90 and (await _account(ledger_db, user))["balance"] == 120
    await reconciled(ledger_db)


async def test_a_void_returns_the_reservation_and_is_final(ledger_db) -> None:
    user = unique("hold_void")
    lot = await _give(ledger_db, user, 100, T0 + 10 * DAY)
    hold, _ = await _hold(ledger_db, user, 70, unique("order"), T0 + DAY)
    other, _ = await _hold(ledger_db, user, 10, unique("order"), T0 + DAY)
    key = unique("cancel")

    voided, created = await _run(ledger_db, service.void_hold, hold["id"], key, T0)
    replay, replayed = await _run(ledger_db, service.void_hold, hold["id"], key, T0)
    late, late_created = await _run(ledger_db, service.void_hold, hold["id"], unique("c"), T0)

    assert created and not replayed and not late_created and replay == voided == late
    assert (voided["status"], voided["released"], voided["closed_by"]) == ("voided", 70, "void")
    assert await _lots(ledger_db, user) == {lot: (100, 10, "active")}
    account = await _account(ledger_db, user)
    assert (account["balance"], account["held"]) == (90, 10)
    with pytest.raises(InvalidTransition):
        await _run(ledger_db, service.capture_hold, hold["id"], None, unique("pay"), T0)
    with pytest.raises(IdempotencyKeyReused):  # that key voided another hold
        await _run(ledger_db, service.void_hold, other["id"], key, T0)
    with pytest.raises(CaptureExceedsHold):
        await _run(ledger_db, service.capture_hold, other["id"], 11, unique("pay"), T0)
    with pytest.raises(HoldExpired):  # past its deadline: only a void (or the sweeper) closes it
        await _run(ledger_db, service.capture_hold, other["id"], 10, unique("pay"), T0 + 2 * DAY)
    whole, _ = await _run(ledger_db, service.capture_hold, other["id"], None, unique("pay"), T0)
    assert (whole["captured"], whole["released"]) == (10, 0)
    assert [k for k, _, _ in await _kinds(ledger_db, user)] == [
        "adjustment",
        "hold",
        "hold",
        "hold_void",
        "debit",
    ]
    await reconciled(ledger_db)


async def test_held_points_do_not_expire_while_held_and_expire_at_once_when_let_go(
    ledger_db,
) -> None:
    user, other = unique("hold_exp"), unique("hold_exp")
    old = await _give(ledger_db, user, 100, T0 + DAY)
    young = await _give(ledger_db, user, 100, T0 + 20 * DAY)
    hold, _ = await _hold(ledger_db, user, 80, unique("order"), T0 + 5 * DAY)
    other_old = await _give(ledger_db, other, 40, T0 + DAY)
    other_hold, _ = await _hold(ledger_db, other, 40, unique("order"), T0 + 5 * DAY)
    sweeper = ExpirySweeper(Settings(), ledger_db)

    await sweeper.sweep_once(T0 + 2 * DAY)  # old's 20 free points expire, its 80 held do not

    assert (await _lots(ledger_db, user))[old] == (80, 80, "active")
    assert (await _lots(ledger_db, other))[other_old] == (40, 40, "active")
    assert (await _account(ledger_db, user, T0 + 2 * DAY))["held"] == 80
    assert await sweeper.sweep_once(T0 + 3 * DAY) == 0  # nothing more is due

    pay = unique("pay")
    done, _ = await _run(ledger_db, service.capture_hold, hold["id"], 30, pay, T0 + 3 * DAY)
    cancelled, _ = await _run(
        ledger_db, service.void_hold, other_hold["id"], "x" + pay, T0 + 3 * DAY
    )

    # the capture takes 30 of the expired lot; the 50 it lets go expire at once
    assert (done["captured"], done["released"], done["expired_points"]) == (30, 50, 50)
    assert await _lots(ledger_db, user) == {old: (0, 0, "expired"), young: (100, 0, "active")}
    assert (await _account(ledger_db, user, T0 + 3 * DAY))["balance"] == 100
    assert (await _kinds(ledger_db, user))[-3:] == [
        ("expire", -20, 0),
        ("debit", -30, -80),
        ("expire", -50, 0),
    ]
    assert cancelled["expired_points"] == 40
    assert await _lots(ledger_db, other) == {other_old: (0, 0, "expired")}
    assert (await _account(ledger_db, other, T0 + 3 * DAY))["balance"] == 0
    await reconciled(ledger_db)


async def test_held_points_are_never_clawed_back_and_a_release_repays_the_debt(ledger_db) -> None:
    user = unique("hold_claw")
    grant_id = unique("grant")
    grant = GrantCommand(
        grant_id=grant_id,
        user_id=user,
        points=100,
        expires_at=T0 + 30 * DAY,
        task_id="t",
        period_key="p",
        completion=1,
        causation_event_id=unique("cause"),
        occurred_at=T0,
    )
    await _run(ledger_db, service.apply_rewards, [grant], 365, T0)
    hold, _ = await _hold(ledger_db, user, 90, unique("order"), T0 + DAY)
    clawback = ClawbackCommand(
        clawback_id=unique("claw"),
        grant_id=grant_id,
        user_id=user,
        clawed_total=100,
        reference="refund",
        occurred_at=T0,
    )

    await _run(ledger_db, service.apply_rewards, [clawback], 365, T0)

    account = await _account(ledger_db, user)
    assert (account["balance"], account["held"], account["debt"]) == (0, 90, 90)
    await _run(ledger_db, service.void_hold, hold["id"], unique("cancel"), T0)
    account = await _account(ledger_db, user)
    assert (account["balance"], account["held"], account["debt"]) == (0, 0, 0)
    await reconciled(ledger_db)


async def test_several_sweepers_void_each_hold_past_its_deadline_exactly_once(ledger_db) -> None:
    prefix = unique("hold_sweep")
    users = [f"{prefix}_{i}" for i in range(40)]
    for i, user in enumerate(users):
        await _give(ledger_db, user, 50, T0 + (1 + i % 3) * DAY)  # some lots expire while held
        await _hold(ledger_db, user, 20, f"{prefix}:due:{i}", T0 + timedelta(hours=1))
        await _hold(ledger_db, user, 5, f"{prefix}:open:{i}", T0 + 10 * DAY)
    settings = Settings(expiry_sweep_batch=7)  # small batches, so the replicas interleave
    replicas = [HoldSweeper(settings, ledger_db) for _ in range(4)]
    now = T0 + DAY + timedelta(hours=12)  # the first third of the lots expired, held

    first = await asyncio.gather(*(r.sweep_once(now) for r in replicas))
    second = await asyncio.gather(*(r.sweep_once(now) for r in replicas))

    assert sum(first) == 40 and sum(second) == 0
    async with ledger_db.transaction() as session:
        statuses = dict(
            (
                await session.execute(
                    text(
                        "SELECT status || ':' || COALESCE(closed_by, ''), count(*) FROM holds "
                        "WHERE user_id LIKE :p GROUP BY 1"
                    ),
                    {"p": f"{prefix}%"},
                )
            ).all()
        )
        voids = (
            await session.execute(
                text(
                    f"SELECT count(*) FROM ({UNSENT_MESSAGES}) m WHERE m.key LIKE :p "
                    "AND CAST(m.payload AS jsonb) ->> 'type' = 'hold_voided'"
                ),
                {"p": f"{prefix}%"},
            )
        ).scalar_one()
    assert statuses == {"voided:deadline": 40, "open:": 40}
    assert voids == 40  # one ledger.events message per voided hold
    # a third of the lots expired while held: the 20 released of each expired at once
    views = [await _account(ledger_db, u, now) for u in users]
    assert sum(v["balance"] for v in views) == sum(0 if i % 3 == 0 else 45 for i in range(40))
    assert all(v["held"] == 5 for v in views)
    await reconciled(ledger_db)


async def test_reconciliation_catches_a_corrupted_hold(ledger_db) -> None:
    user = unique("hold_bad")
    await _give(ledger_db, user, 100, None)
    hold, _ = await _hold(ledger_db, user, 40, unique("order"), T0 + DAY)
    corrupt = "UPDATE holds SET points = points + 5 WHERE id = :id"
    repair = "UPDATE holds SET points = points - 5 WHERE id = :id"
    async with ledger_db.transaction() as session:
        await session.execute(text(corrupt), {"id": hold["id"]})
    try:
        report = await _run(ledger_db, service.reconcile)
    finally:
        async with ledger_db.transaction() as session:
            await session.execute(text(repair), {"id": hold["id"]})
    failed = {v["check"] for v in report["violations"]}
    assert {"held_matches_open_holds", "holds_reserve_their_points"} <= failed
    assert "holds_match_their_entries" in failed
    await reconciled(ledger_db)
