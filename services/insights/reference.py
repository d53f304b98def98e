"""Reference data insights copies from other services over their HTTP APIs (`upstream.py`), on
a timer (`workers.py`): the exchange's catalog (recommendations choose from it), task_progress's
rules (which behaviors start a task-period) and the ledger's points expiring soon (expiry-aware
reasons and the expiring-pile gauge).

Each copy is replaced whole in one transaction after every page has been read, so a failed
read leaves the last good copy in place (and is retried at the next tick). No database
transaction is open while a remote call waits.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from services.insights import repository as repo
from services.insights.metrics import POINTS_EXPIRING, REFERENCE_SYNCS
from services.insights.settings import Settings
from services.insights.upstream import READ_ERRORS, Upstream
from shared.db import Database

log = logging.getLogger(__name__)


def catalog_row(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "item_id": item["id"],
        "name": item["name"],
        "category": item["category"],
        "tags": list(item.get("tags") or []),
        "points_price": int(item["points_price"]),
        "stock": int(item["stock"]),
        "per_user_limit": item.get("per_user_limit"),
        "min_tier": item.get("min_tier"),
        "available": bool(item.get("available", item.get("active", False))),
    }


def rule_row(task: dict[str, Any]) -> dict[str, Any]:
    def at(value: Any) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    return {
        "task_id": task["id"],
        "action": task["action"],
        "period": task["period"],
        "active": bool(task.get("active", True)),
        "starts_at": at(task.get("starts_at")),
        "ends_at": at(task.get("ends_at")),
    }


async def copy_catalog_and_rules(db: Database, upstream: Upstream) -> None:
    """Copy the catalog and the task rules (one failing leaves the other's copy done)."""
    for name, fetch, to_row, replace in (
        ("catalog", upstream.catalog, catalog_row, repo.replace_catalog),
        ("task_rules", upstream.rules, rule_row, repo.replace_rules),
    ):
        try:
            rows = [to_row(x) for x in await fetch()]
        except READ_ERRORS as exc:
            REFERENCE_SYNCS.labels(name, "failed").inc()
            log.warning("could not copy %s: %s", name, exc)
            continue
        async with db.transaction() as session:
            await replace(session, rows)
        REFERENCE_SYNCS.labels(name, "ok").inc()


async def copy_expiring(
    settings: Settings, db: Database, upstream: Upstream, now: datetime
) -> None:
    """Copy the points expiring within `expiring_window_days`, and set the expiring-pile
    gauge from them."""
    end = now + timedelta(days=settings.expiring_window_days)
    try:
        lots = await upstream.expiring(now, end)
    except READ_ERRORS as exc:
        REFERENCE_SYNCS.labels("expiring_points", "failed").inc()
        log.warning("could not read the points expiring soon: %s", exc)
        return
    rows = [{"user_id": user, "expires_at": at, "points": points} for user, at, points in lots]
    async with db.transaction() as session:
        await repo.replace_expiring(session, rows)
    REFERENCE_SYNCS.labels("expiring_points", "ok").inc()
    POINTS_EXPIRING.set(sum(points for _, _, points in lots))
