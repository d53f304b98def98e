"""The polling queries can use the partial indexes made for them, on every run.

Each of these queries runs every few seconds for as long as a service lives (the sensor's
pending claim, the exchange's recovery claim, the ledger's expiry sweep). A prepared statement
switches to a generic plan after five runs; if the constant that a partial index is defined
by (`status = 'received'`) were sent as a parameter, that plan could not use the index and
would scan the whole table on every poll. The test takes the SQL exactly as the repository
sends it, prepares it and asks PostgreSQL for its generic plan, with sequential scans priced
out, so it fails if the index is out of the planner's reach whatever the table sizes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.behavior_sensor import repository as sensor_repo
from services.exchange import repository as exchange_repo
from services.rewards_ledger import repository as ledger_repo
from shared.db import Database, create_engine, database_url

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)

CASES: list[tuple[str, str, Callable[[AsyncSession], Awaitable[Any]]]] = [
    (
        "jifen_behavior_sensor",
        "ix_received_pending",
        lambda s: sensor_repo.claim_pending(s, 100),
    ),
    ("jifen_behavior_sensor", "ix_received_pending", sensor_repo.pending_count),
    (
        "jifen_exchange",
        "ix_redemptions_unfinished",
        lambda s: exchange_repo.claim_unfinished(s, NOW, NOW + timedelta(seconds=10), 100),
    ),
    # Operations' shipping queue (the console's fulfilment page): physical redemptions only.
    (
        "jifen_exchange",
        "ix_redemptions_fulfilment",
        lambda s: exchange_repo.fulfilment_queue(s, "pending", None, 50, 0),
    ),
    # Both of the lots' indexes are partial on "active with points left"; either will do.
    ("jifen_rewards_ledger", "ix_lots_", lambda s: ledger_repo.accounts_with_due_lots(s, NOW, 50)),
    (
        "jifen_rewards_ledger",
        "ix_lots_",
        lambda s: ledger_repo.upcoming_expiries(
            s, "someone", "points", NOW, NOW + timedelta(days=7)
        ),
    ),
    # The release sweep's poll: pending lots whose window has closed.
    (
        "jifen_rewards_ledger",
        "ix_lots_pending",
        lambda s: ledger_repo.accounts_with_releasable_lots(s, NOW, 50),
    ),
    # Not a poll, but every debit runs it: the lots with points left of the spenders.
    (
        "jifen_rewards_ledger",
        "ix_lots_",
        lambda s: ledger_repo.active_lots(s, [("someone", "points")], NOW),
    ),
]


@pytest.mark.parametrize(("database", "index", "query"), CASES)
async def test_the_generic_plan_of_a_polling_query_uses_its_partial_index(
    stack, infra, database: str, index: str, query: Callable[[AsyncSession], Awaitable[Any]]
) -> None:
    db = Database(create_engine(database_url(infra.database_url, database), pool_size=1))
    sent: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with db.transaction() as session:
            await query(session)
            [statement] = [s for s in sent if s.lstrip().upper().startswith(("SELECT", "WITH"))]
            await session.execute(text("SET LOCAL enable_seqscan = off"))
            raw = (await (await session.connection()).get_raw_connection()).driver_connection
            assert raw is not None
            params = (await raw.prepare(statement)).get_parameters()
            await raw.execute(f"PREPARE probe AS {statement}")
            await raw.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            nulls = ", ".join(["NULL"] * len(params))
            plan = "\n".join(
                r[0]
                for r in await raw.fetch(f"EXPLAIN EXECUTE probe{f'({nulls})' if nulls else ''}")
            )
            await raw.execute("DEALLOCATE probe")
            await session.rollback()
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
        await db.dispose()
    assert index in plan, f"{index} not used by\n{statement}\n{plan}"
