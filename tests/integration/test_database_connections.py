"""Pooled connections the database dropped are never handed out (pool_pre_ping: a
replacement that only checked whether the socket had closed saved nothing measurable at
1,000 events/s and would miss connections a firewall dropped silently)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text

from shared.db import Database, asyncpg_kwargs, database_url
from tests.integration.helpers import open_database

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(infra) -> AsyncIterator[Database]:
    async with open_database(infra.database_url, "postgres") as database:
        yield database


async def _backend_pids(db: Database, count: int) -> set[int]:
    """Check out `count` connections at once, so the pool holds that many."""
    sessions = [db.sessions() for _ in range(count)]
    try:
        return {
            int((await s.execute(text("SELECT pg_backend_pid()"))).scalar_one()) for s in sessions
        }
    finally:
        for s in sessions:
            await s.close()


async def test_a_transaction_right_after_the_server_dropped_every_pooled_connection_succeeds(
    infra, db
) -> None:
    pids = await _backend_pids(db, 4)
    admin = await asyncpg.connect(**asyncpg_kwargs(database_url(infra.database_url, "postgres")))  # type: ignore[arg-type]
    try:
        # The timeout makes each call return once that backend has exited.
        gone = await admin.fetch(
            "SELECT pg_terminate_backend(pid, 5000) AS gone FROM unnest($1::int[]) AS pid",
            sorted(pids),
        )
    finally:
        await admin.close()
    assert all(row["gone"] for row in gone)

    for _ in range(4):  # every one of the four pooled connections is dead
        async with db.transaction() as session:
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert pid not in pids
