"""Each service's revisions build exactly the schema its models describe, and the outbox
revision keeps the rows that were never sent."""

from __future__ import annotations

import asyncio
import importlib
import json

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from services.suite import SERVICES
from shared.db import create_engine, database_url, ensure_database
from shared.messaging.outbox import UNSENT_MESSAGES
from shared.migrate import alembic_config, upgrade
from tests.conftest import unique

pytestmark = pytest.mark.integration


async def _fresh_database(infra, service: str) -> str:
    name = unique(f"jifen_mig_{service}").lower()
    await ensure_database(infra.database_url, name)
    return database_url(infra.database_url, name).render_as_string(hide_password=False)


@pytest.mark.parametrize("service", list(SERVICES))  # every service the suite runs
async def test_migrations_build_the_schema_the_models_describe(infra, service) -> None:
    url = await _fresh_database(infra, service)
    await asyncio.to_thread(upgrade, f"services.{service}", url)
    metadata = importlib.import_module(f"services.{service}.models").metadata
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


async def test_the_outbox_revision_drops_sent_rows_and_keeps_unsent_ones(infra) -> None:
    url = await _fresh_database(infra, "ledger_outbox")
    await asyncio.to_thread(upgrade, "services.rewards_ledger", url, "0002")
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO outbox (topic, key, payload, published_at) VALUES "
                    "('ledger.events', 'sent', '{}', now()), "
                    "('ledger.events', 'unsent', '{}', NULL)"
                )
            )
        await asyncio.to_thread(upgrade, "services.rewards_ledger", url, "0003")
        async with engine.connect() as conn:
            keys = (await conn.execute(text("SELECT key FROM outbox"))).scalars().all()
    finally:
        await engine.dispose()
    assert keys == ["unsent"]


async def test_the_outbox_becomes_a_row_per_transaction_keeping_unsent_messages(infra) -> None:
    """Unsent messages survive the change to one row per transaction (each becomes a row of
    one message) and the way back (each message a row again, in order)."""
    url = await _fresh_database(infra, "ledger_outbox_rows")
    await asyncio.to_thread(upgrade, "services.rewards_ledger", url, "0005")
    engine = create_engine(url, pool_size=1)
    cfg = alembic_config("services.rewards_ledger", url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO outbox (topic, key, payload) VALUES "
                    "('ledger.events', 'a', '{\"n\": 1}'), ('ledger.events', NULL, '{\"n\": 2}')"
                )
            )
        await asyncio.to_thread(upgrade, "services.rewards_ledger", url)
        async with engine.begin() as conn:
            rows = (await conn.execute(text(UNSENT_MESSAGES))).all()
            assert [(r.topic, r.key, json.loads(r.payload)) for r in rows] == [
                ("ledger.events", "a", {"n": 1}),
                ("ledger.events", None, {"n": 2}),
            ]
            await conn.execute(
                text(
                    "INSERT INTO outbox (topics, keys, payloads) VALUES "
                    "(ARRAY['t', 't'], ARRAY['b', 'c'], ARRAY['{\"n\": 3}', '{\"n\": 4}'])"
                )
            )
        await asyncio.to_thread(command.downgrade, cfg, "0005")
        async with engine.connect() as conn:
            back = (
                await conn.execute(text("SELECT topic, key, payload FROM outbox ORDER BY id"))
            ).all()
    finally:
        await engine.dispose()
    assert [(r.key, r.payload["n"]) for r in back] == [("a", 1), (None, 2), ("b", 3), ("c", 4)]


async def test_the_outbox_revision_can_be_undone_and_redone(infra) -> None:
    url = await _fresh_database(infra, "ledger_outbox_down")
    await asyncio.to_thread(upgrade, "services.rewards_ledger", url)
    cfg = alembic_config("services.rewards_ledger", url)
    await asyncio.to_thread(command.downgrade, cfg, "0002")
    columns = "SELECT column_name FROM information_schema.columns WHERE table_name = 'outbox'"
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            assert "published_at" in (await conn.execute(text(columns))).scalars().all()
        await asyncio.to_thread(upgrade, "services.rewards_ledger", url)
        async with engine.connect() as conn:
            assert "published_at" not in (await conn.execute(text(columns))).scalars().all()
    finally:
        await engine.dispose()
