"""Retention: the tables that remember what was already applied or received stop growing.

An inbox row (and a behavior's `(source, event_id)`) is what turns a redelivery into a no-op,
so it has to outlive every way the same message can come back. The rule: keep rows at least
as long as the topics keep messages (Kafka's default retention is 7 days) plus the time an
outage could leave them unread; `JIFEN_DEDUPE_RETENTION_HOURS` defaults to 14 days and cannot
be set below one. Rows older than that are deleted in batches by the retention sweeper, which
any number of replicas may run: each batch skips rows another replica has locked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Table, TextClause, text

from shared.db import Database
from shared.metrics import RETENTION_PURGED
from shared.settings import JifenSettings
from shared.worker import PollingWorker


@dataclass(frozen=True)
class Purge:
    """One kind of row to forget: those of `table` matching `older_than` (a condition on
    `:cutoff`), deleted `:limit` at a time. `:cutoff` is now less the hours in the settings
    attribute `retention` (the dedupe retention unless a table keeps its rows longer)."""

    table: str
    older_than: str
    retention: str = "dedupe_retention_hours"

    def statement(self) -> TextClause:
        return text(
            f"DELETE FROM {self.table} WHERE ctid = ANY(ARRAY("
            f"SELECT ctid FROM {self.table} WHERE {self.older_than} "
            "LIMIT :limit FOR UPDATE SKIP LOCKED)) RETURNING 1"
        )


def inbox_purge(inbox: Table) -> Purge:
    return Purge(inbox.name, "applied_at < :cutoff")


class RetentionSweeper(PollingWorker):
    """Deletes rows past the retention period, a batch per table per step (replica-safe)."""

    def __init__(self, settings: JifenSettings, db: Database, purges: Sequence[Purge]) -> None:
        super().__init__(
            poll_s=settings.retention_sweep_interval_s,
            full_batch=settings.retention_batch_size,
            backoff_cap_s=settings.retry_backoff_max_s,
        )
        self.settings = settings
        self.db = db
        self.purges = [(p, p.statement()) for p in purges]

    async def step(self) -> int:
        """Purge one batch of each table; returns the largest batch (a full one runs again)."""
        now = datetime.now(UTC)
        most = 0
        for purge, statement in self.purges:
            hours = float(getattr(self.settings, purge.retention))
            params = {
                "cutoff": now - timedelta(hours=hours),
                "limit": self.settings.retention_batch_size,
            }
            async with self.db.transaction() as session:
                deleted = len((await session.execute(statement, params)).all())
            if deleted:
                RETENTION_PURGED.labels(self.settings.service_name, purge.table).inc(deleted)
            most = max(most, deleted)
        return most
