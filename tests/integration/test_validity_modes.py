"""Validity modes end to end: the lot a grant credits expires at the instant its rule's (else its
asset's) validity gives; the liability report counts it in its last valid month and the sweep
expires it at that instant, not a microsecond before.

The ledger tests drive its own code on a private database (`ledger_db`) with a clock they set;
the last one goes through the running suite (rule -> behavior -> grant -> lot)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

from services.rewards_ledger import service
from services.rewards_ledger.models import lots
from services.rewards_ledger.schemas import AssetIn
from shared.db import Database
from shared.events import GrantCommand
from shared.validity import Validity, expires_at_for
from tests.conftest import ADMIN, envelope, eventually, unique
from tests.integration.helpers import create_task, open_database, reconciled, send

pytestmark = pytest.mark.integration
SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 15, 10, tzinfo=SHANGHAI)


def grant(user: str, points: int, asset: str, **fields: Any) -> GrantCommand:
    return GrantCommand(
        grant_id=unique("g"),
        user_id=user,
        asset=asset,
        points=points,
        task_id="t",
        period_key="lifetime",
        completion=1,
        causation_event_id="b",
        occurred_at=fields.pop("occurred_at", T0),
        **fields,
    )


async def new_asset(db: Database, validity: dict[str, Any]) -> str:
    code = unique("v").lower().replace("-", "_")[:30]
    body = AssetIn(code=code, name="限时", spendable=True, expires=True, default_validity=validity)
    async with db.transaction() as session:
        await service.create_asset(session, body.model_dump())
    return code


async def lot_expiry(db: Database, user: str) -> list[datetime]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(lots.c.expires_at).where(lots.c.user_id == user).order_by(lots.c.expires_at)
        )
        return list(rows.scalars())


async def statuses(db: Database, user: str) -> list[str]:
    async with db.transaction() as session:
        rows = await session.execute(select(lots.c.status).where(lots.c.user_id == user))
        return sorted(rows.scalars())


async def sweep(db: Database, now: datetime) -> None:
    async with db.transaction() as session:
        for _ in range(100):
            if not await service.sweep_expired(session, now, 1000):
                break


async def apply(db: Database, *grants: GrantCommand, now: datetime = T0) -> None:
    async with db.transaction() as session:
        await service.apply_rewards(session, list(grants), Validity.of_days(365), now, SHANGHAI)


async def test_the_assets_default_applies_unless_the_grant_states_its_own(ledger_db) -> None:
    code = await new_asset(ledger_db, {"mode": "months_end", "n": 12})
    plain, own = unique("vm"), unique("vm")
    await apply(
        ledger_db,
        grant(plain, 10, code),
        grant(own, 10, code, validity=Validity(mode="year_end", n=1)),
    )
    assert await lot_expiry(ledger_db, plain) == [datetime(2027, 4, 1, tzinfo=SHANGHAI)]
    assert await lot_expiry(ledger_db, own) == [datetime(2028, 1, 1, tzinfo=SHANGHAI)]
    async with ledger_db.transaction() as session:
        stored = await service.get_asset(session, code)
    assert stored.default_validity == {"mode": "months_end", "n": 12}
    assert stored.default_validity_days is None


async def test_a_year_end_lot_counts_in_december_and_expires_at_new_year(ledger_db) -> None:
    code = await new_asset(ledger_db, {"mode": "year_end", "n": 0})  # 年底清零
    user = unique("vy")
    await apply(
        ledger_db, grant(user, 40, code), grant(user, 2, code, occurred_at=T0 - timedelta(days=1))
    )
    new_year = datetime(2027, 1, 1, tzinfo=SHANGHAI)
    assert await lot_expiry(ledger_db, user) == [new_year, new_year]

    async with ledger_db.transaction() as session:
        report = await service.liability_report(session, code, T0, SHANGHAI)
    by_month = {m["month"]: m["points"] for m in report["expiring_by_month"]}
    assert by_month["2026-12"] == 42 and by_month["2027-01"] == 0
    assert sum(by_month.values()) == 42

    await sweep(ledger_db, new_year - timedelta(microseconds=1))
    assert await statuses(ledger_db, user) == ["active", "active"]
    await sweep(ledger_db, new_year)
    assert await statuses(ledger_db, user) == ["expired", "expired"]
    async with ledger_db.transaction() as session:
        after = await service.account_view(session, user, new_year, 30, code)
    assert after["balance"] == 0
    await reconciled(ledger_db)


async def test_an_adjustment_takes_a_validity_too(ledger_db) -> None:
    user = unique("va")
    now = datetime(2026, 7, 9, 12, tzinfo=UTC)
    async with ledger_db.transaction() as session:
        await service.adjust(
            session,
            user,
            5,
            unique("k"),
            "goodwill",
            None,
            None,
            validity=Validity(mode="months_end", n=0),
            now=now,
            tz=SHANGHAI,
        )
    assert await lot_expiry(ledger_db, user) == [datetime(2026, 8, 1, tzinfo=SHANGHAI)]


async def test_a_rule_with_year_end_pays_a_lot_valid_to_the_end_of_next_year(http, infra) -> None:
    tasks, sensor, ledger = http("task_progress"), http("behavior_sensor"), http("rewards_ledger")
    code = unique("vh").lower().replace("-", "_")[:30]
    asset = {"code": code, "name": "限时", "spendable": True, "expires": True}
    created = await ledger.post(
        "/v1/assets",
        json={**asset, "default_validity": {"mode": "months_end", "n": 12}},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    assert created.json()["default_validity"] == {"mode": "months_end", "n": 12}

    action = unique("valid").lower()
    rule = await create_task(
        tasks,
        action=action,
        reward_points=7,
        period="lifetime",
        validity={"mode": "year_end", "n": 1},
        extra_rewards=[{"reward_type": code, "amount": 2}],
    )
    assert (rule["validity"], rule["points_validity_days"]) == ({"mode": "year_end", "n": 1}, None)
    versions = (await tasks.get(f"/v1/tasks/{rule['id']}/versions", headers=ADMIN)).json()
    assert versions["items"][0]["rule"]["validity"] == {"mode": "year_end", "n": 1}

    plain = await create_task(  # no validity of its own: the asset's default
        tasks, action=f"{action}_plain", reward_points=3, reward_type=code, period="lifetime"
    )
    assert plain["validity"] is None

    user = unique("vu")
    earned = datetime.now(SHANGHAI).replace(microsecond=0)
    await send(
        sensor,
        [
            envelope(user, action, earned.isoformat()),
            envelope(user, f"{action}_plain", earned.isoformat()),
        ],
    )
    end_of_next_year = expires_at_for(earned, Validity(mode="year_end", n=1), SHANGHAI)
    assert end_of_next_year == datetime(earned.year + 2, 1, 1, tzinfo=SHANGHAI)
    twelfth_month = expires_at_for(earned, Validity(mode="months_end", n=12), SHANGHAI)

    async with open_database(infra.database_url, "jifen_rewards_ledger") as db:

        async def credited() -> None:
            async with db.read_only() as session:
                rows = await session.execute(
                    text("SELECT asset, points, expires_at FROM lots WHERE user_id = :u"),
                    {"u": user},
                )
                found = {(r.asset, r.points): r.expires_at for r in rows}
            # the rule's validity wins over the asset's default for every grant it pays
            assert found == {
                ("points", 7): end_of_next_year,
                (code, 2): end_of_next_year,
                (code, 3): twelfth_month,
            }

        await eventually(credited, 30)

    patched = await tasks.patch(
        f"/v1/tasks/{rule['id']}", json={"points_validity_days": None}, headers=ADMIN
    )
    assert patched.json()["validity"] == {"mode": "year_end", "n": 1}  # days only clear days
    cleared = await tasks.patch(f"/v1/tasks/{rule['id']}", json={"validity": None}, headers=ADMIN)
    assert cleared.json()["validity"] is None and cleared.json()["version"] == 2
