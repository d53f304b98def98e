"""The platform kit against the real PostgreSQL: units of work, after-commit hooks, the
retention purge, and no remote call while rows are locked."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.behavior_sensor.models import PURGES, messaging, metadata
from services.behavior_sensor.settings import Settings as SensorSettings
from services.behavior_sensor.workers import BehaviorProcessor
from shared.db import Database, after_commit, ensure_database
from shared.messaging import RetentionSweeper, inbox_purge
from shared.messaging.outbox import COUNT_UNSENT
from shared.settings import JifenSettings
from tests.integration.helpers import open_database

pytestmark = pytest.mark.integration


class Abort(Exception):
    pass


@pytest.fixture(scope="module")
async def db(infra) -> AsyncIterator[Database]:
    name = "jifen_platform_kit_test"
    await ensure_database(infra.database_url, name)
    async with open_database(infra.database_url, name, pool_size=4) as database:
        async with database.engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
        yield database


async def test_a_read_only_unit_of_work_cannot_write(db: Database) -> None:
    with pytest.raises(DBAPIError) as refused:
        async with db.read_only() as session:
            await session.execute(
                text("INSERT INTO inbox (consumer, message_id) VALUES ('c', 'm')")
            )
    assert "read-only" in str(refused.value)
    async with db.read_only() as session:  # reading is what it is for
        assert (await session.execute(text("SELECT count(*) FROM inbox"))).scalar_one() >= 0


async def test_after_commit_hooks_run_once_committed_and_never_after_a_rollback(
    db: Database,
) -> None:
    ran: list[str] = []
    with pytest.raises(Abort):
        async with db.transaction() as session:
            after_commit(session, lambda: ran.append("rolled back"))
            raise Abort
    async with db.transaction() as session:
        after_commit(session, lambda: ran.append("first"))
        after_commit(session, lambda: ran.append("second"))
        assert ran == []  # not before the commit
    assert ran == ["first", "second"]


async def _count(db: Database, sql: str, **params: Any) -> int:
    async with db.transaction() as session:
        return int((await session.execute(text(sql), params)).scalar_one())


async def test_retention_forgets_only_rows_past_the_window(db: Database) -> None:
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    old, recent = now - timedelta(hours=400), now - timedelta(hours=1)
    async with db.transaction() as session:
        for i, at in enumerate([old, old, old, recent]):
            await session.execute(
                text("INSERT INTO inbox (consumer, message_id, applied_at) VALUES (:c, :m, :at)"),
                {"c": tag, "m": f"m{i}", "at": at},
            )
        for i, (at, status) in enumerate(
            [(old, "published"), (old, "diverted"), (old, "received"), (recent, "published")]
        ):
            await session.execute(
                text(
                    "INSERT INTO received_events (source, event_id, user_id, action, "
                    "occurred_at, channel, received_at, status) "
                    "VALUES (:s, :e, 'u', 'like', :at, 'http', :at, :status)"
                ),
                {"s": tag, "e": f"e{i}", "at": at, "status": status},
            )
        for at in (old, recent):
            await session.execute(
                text(
                    "INSERT INTO farming_counters (user_id, action, window_start, count) "
                    "VALUES (:u, 'like', :at, 3)"
                ),
                {"u": tag, "at": at},
            )
    settings = JifenSettings(
        service_name="kit-test", dedupe_retention_hours=336, retention_batch_size=2
    )
    sweeper = RetentionSweeper(settings, db, [inbox_purge(messaging.inbox), *PURGES])
    assert await sweeper.step() == 2  # a full batch: the worker runs the next step at once
    while await sweeper.step():
        pass
    assert await _count(db, "SELECT count(*) FROM inbox WHERE consumer = :t", t=tag) == 1
    # a behavior still waiting for the processor is never forgotten, however old
    assert (
        await _count(
            db,
            "SELECT count(*) FROM received_events WHERE source = :t AND status = 'received'",
            t=tag,
        )
        == 1
    )
    assert await _count(db, "SELECT count(*) FROM received_events WHERE source = :t", t=tag) == 2
    assert await _count(db, "SELECT count(*) FROM farming_counters WHERE user_id = :t", t=tag) == 1


class LockProbingEnricher:
    """A remote enricher that, while it is being asked, checks from another connection that
    the behaviors it is asked about are not locked by anyone."""

    remote = True

    def __init__(self, db: Database) -> None:
        self.db = db
        self.locked_while_asked: list[bool] = []

    async def enrich(self, behaviors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [b["event_id"] for b in behaviors]
        try:
            async with self.db.transaction() as session:
                await session.execute(
                    text(
                        "SELECT id FROM received_events WHERE event_id = ANY(:ids) "
                        "FOR UPDATE NOWAIT"
                    ),
                    {"ids": ids},
                )
            self.locked_while_asked.append(False)
        except DBAPIError:
            self.locked_while_asked.append(True)
        return [{"tier": "gold", "event": b["event_id"]} for b in behaviors]

    async def aclose(self) -> None:
        return None


async def test_the_processor_asks_the_enricher_before_it_locks_the_behaviors(
    db: Database,
) -> None:
    tag = uuid.uuid4().hex[:8]
    async with db.transaction() as session:
        await session.execute(text("UPDATE received_events SET status = 'published'"))
        for i in range(3):
            await session.execute(
                text(
                    "INSERT INTO received_events (source, event_id, user_id, action, "
                    "occurred_at, channel) VALUES (:s, :e, 'u', 'share', now(), 'http')"
                ),
                {"s": tag, "e": f"{tag}-{i}"},
            )
    enricher = LockProbingEnricher(db)
    processor = BehaviorProcessor(SensorSettings(processor_batch_size=10), db, enricher)
    assert await processor.step() == 3
    assert enricher.locked_while_asked == [False]
    async with db.read_only() as session:
        rows = (
            await session.execute(
                text("SELECT status, enrichment FROM received_events WHERE source = :s"),
                {"s": tag},
            )
        ).all()
    assert [r.status for r in rows] == ["published"] * 3
    assert all(r.enrichment["tier"] == "gold" for r in rows)
    assert await _count(db, COUNT_UNSENT) >= 3  # published through the outbox
