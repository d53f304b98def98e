"""task_progress's HTTP API as other services call it, on the kit's `ServiceClient`."""

from __future__ import annotations

from typing import Any

from shared.client import ServiceClient


class TaskClient:
    def __init__(self, base_url: str, token: str, timeout_s: float, *, retries: int = 0) -> None:
        self.http = ServiceClient("task_progress", base_url, token, timeout_s, retries=retries)

    async def close(self) -> None:
        await self.http.close()

    async def rules(self, page_size: int = 500) -> list[dict[str, Any]]:
        """Every task rule, read page by page (raises `Unavailable` when a page has no
        definite answer)."""
        tasks: list[dict[str, Any]] = []
        while True:
            page = await self.http.fetch("/v1/tasks", limit=page_size, offset=len(tasks))
            tasks.extend(page["items"])
            if not page["items"] or len(tasks) >= int(page["total"]):
                return tasks
