"""Fixtures of the integration tests beyond the running suite's (tests/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shared.db import Database, create_engine, database_url, ensure_database
from shared.migrate import upgrade
from tests.conftest import unique


@pytest.fixture(scope="module")
async def ledger_db(infra) -> AsyncIterator[Database]:
    """A private ledger database on the real PostgreSQL, migrated: tests drive the ledger's
    own code on it with an explicit clock, without touching the running suite's data."""
    name = f"jifen_ledger_{unique('life')}"
    await ensure_database(infra.database_url, name)
    url = database_url(infra.database_url, name)
    await asyncio.to_thread(upgrade, "services.rewards_ledger", url.render_as_string(False))
    db = Database(create_engine(url, pool_size=10, max_overflow=10))
    yield db
    await db.dispose()
