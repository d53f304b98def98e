"""Reference data insights copies from other services over their HTTP APIs, on a timer:
the exchange's catalog (recommendations choose from it), task_progress's rules (which
behaviors start a task-period) and the ledger's points expiring soon (expiry-aware reasons
and the expiring-pile gauge).

Each copy is replaced whole in one transaction after every page has been read, so a failed
read leaves the last good copy in place (and is retried at the next tick). No database
transaction is open while a remote call waits.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.insights import repository as repo
from services.insights.metrics import POINTS_EXPIRING, REFERENCE_SYNCS
from services.insights.settings import Settings
from shared.db import Database
from shared.worker import PollingWorker

log = logging.getLogger(__name__)
# httpx logs every request at INFO: one line per page every few seconds says nothing.
logging.getLogger("httpx").setLevel(logging.WARNING)

PAGE = 200


class Upstream:
    """The three services' read APIs, with insights's own credential (JIFEN_SERVICE_TOKEN:
    exchange:catalog, tasks:rules and ledger:expiring open these reads and nothing else)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = httpx.AsyncClient(
            timeout=settings.upstream_timeout_s,
            headers={"Authorization": f"Bearer {settings.outbound_token}"},
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def _get(self, url: str, params: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.get(url, params=params)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def catalog(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            page = await self._get(
                f"{self.settings.exchange_url}/v1/items",
                {"include_unavailable": "true", "limit": PAGE, "offset": offset},
            )
            items.extend(page["items"])
            offset = page.get("next_offset")
        return items

    async def rules(self) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = await self._get(
                f"{self.settings.task_progress_url}/v1/tasks", {"limit": 500, "offset": offset}
            )
            tasks.extend(page["items"])
            offset += len(page["items"])
            if not page["items"] or offset >= int(page["total"]):
                return tasks

    async def expiring(self, start: datetime, end: datetime) -> AsyncIterator[dict[str, Any]]:
        params: dict[str, Any] = {"from": start.isoformat(), "to": end.isoformat()}
        while True:
            page = await self._get(f"{self.settings.ledger_url}/v1/reports/expiring-lots", params)
            for item in page["items"]:
                yield item
            cursor = page.get("next")
            if not cursor:
                return
            params = {
                **params,
                "after_user": cursor["user_id"],
                "after_expires_at": cursor["expires_at"],
            }


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


class ReferenceSync(PollingWorker):
    """Copies the catalog and the task rules every `reference_refresh_s`."""

    def __init__(self, settings: Settings, db: Database, upstream: Upstream) -> None:
        super().__init__(
            poll_s=settings.reference_refresh_s,
            full_batch=1 << 30,
            backoff_cap_s=settings.retry_backoff_max_s,
        )
        self.settings = settings
        self.db = db
        self.upstream = upstream

    async def step(self) -> int:
        for name, fetch, to_row, replace in (
            ("catalog", self.upstream.catalog, catalog_row, repo.replace_catalog),
            ("task_rules", self.upstream.rules, rule_row, repo.replace_rules),
        ):
            try:
                rows = [to_row(x) for x in await fetch()]
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                REFERENCE_SYNCS.labels(name, "failed").inc()
                log.warning("could not copy %s: %s", name, exc)
                continue
            async with self.db.transaction() as session:
                await replace(session, rows)
            REFERENCE_SYNCS.labels(name, "ok").inc()
        return 0


class ExpiringSync(PollingWorker):
    """Copies the points expiring within `expiring_window_days` every `expiring_refresh_s`,
    and sets the expiring-pile gauge from them."""

    def __init__(self, settings: Settings, db: Database, upstream: Upstream) -> None:
        super().__init__(
            poll_s=settings.expiring_refresh_s,
            full_batch=1 << 30,
            backoff_cap_s=settings.retry_backoff_max_s,
        )
        self.settings = settings
        self.db = db
        self.upstream = upstream

    async def step(self) -> int:
        now = datetime.now(UTC)
        end = now + timedelta(days=self.settings.expiring_window_days)
        try:
            rows = [
                {
                    "user_id": x["user_id"],
                    "expires_at": datetime.fromisoformat(x["expires_at"]),
                    "points": int(x["points"]),
                }
                async for x in self.upstream.expiring(now, end)
            ]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            REFERENCE_SYNCS.labels("expiring_points", "failed").inc()
            log.warning("could not read the points expiring soon: %s", exc)
            return 0
        async with self.db.transaction() as session:
            await repo.replace_expiring(session, rows)
        REFERENCE_SYNCS.labels("expiring_points", "ok").inc()
        POINTS_EXPIRING.set(sum(r["points"] for r in rows))
        return 0
