"""The console's revisions build exactly the tables its models describe."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from console.models import metadata
from shared.db import create_engine, database_url, ensure_database
from shared.migrate import upgrade
from tests.conftest import unique

pytestmark = pytest.mark.integration


async def test_console_migrations_build_the_schema_the_models_describe(infra) -> None:
    name = unique("jifen_mig_console").lower()
    await ensure_database(infra.database_url, name)
    url = database_url(infra.database_url, name)
    await asyncio.to_thread(upgrade, "console", url.render_as_string(hide_password=False))
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                )
            )
    finally:
        await engine.dispose()
    assert diff == []
