"""The periodic reconciliation: a worker that runs a service's checks on a timer and exports
what it found, so a violation pages someone instead of waiting for an operator to look.

The checks themselves are the service's (the same ones its /v1/reconciliation runs); they read
one snapshot, and each check reports at most 100 failing rows."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.metrics import RECONCILIATION_LAST_RUN, RECONCILIATION_VIOLATIONS
from shared.worker import PollingWorker

log = logging.getLogger(__name__)

Reconcile = Callable[[AsyncSession], Awaitable[dict[str, Any]]]


class ReconciliationWorker(PollingWorker):
    """Runs `reconcile` every `interval_s` (first at start-up) and sets, for each check, the
    rows that failed it; a transient failure is retried with backoff like any step."""

    def __init__(
        self,
        service: str,
        db: Database,
        reconcile: Reconcile,
        *,
        interval_s: float,
        backoff_cap_s: float,
    ) -> None:
        super().__init__(poll_s=interval_s, full_batch=1, backoff_cap_s=backoff_cap_s)
        self.service = service
        self.db = db
        self._reconcile = reconcile
        self.last: dict[str, Any] | None = None

    async def step(self) -> int:
        async with self.db.snapshot() as session:
            result = await self._reconcile(session)
        failed = {v["check"]: len(v["rows"]) for v in result["violations"]}
        for check in result["checks"]:
            RECONCILIATION_VIOLATIONS.labels(self.service, check).set(failed.get(check, 0))
        RECONCILIATION_LAST_RUN.labels(self.service).set(time.time())
        if failed:
            log.error("%s: reconciliation found violations: %s", self.service, failed)
        self.last = result
        return 0  # never a "full batch": wait the interval
