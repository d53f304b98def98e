"""The exchange's HTTP API as other services call it, on the kit's `ServiceClient`."""

from __future__ import annotations

from typing import Any

from shared.client import ServiceClient


class ExchangeClient:
    def __init__(self, base_url: str, token: str, timeout_s: float, *, retries: int = 0) -> None:
        self.http = ServiceClient("exchange", base_url, token, timeout_s, retries=retries)

    async def close(self) -> None:
        await self.http.close()

    async def catalog(self, page_size: int = 200) -> list[dict[str, Any]]:
        """Every catalog item, unavailable ones included, read page by page (raises
        `Unavailable` when a page has no definite answer)."""
        items: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            page = await self.http.fetch(
                "/v1/items", include_unavailable="true", limit=page_size, offset=offset
            )
            items.extend(page["items"])
            offset = page.get("next_offset")
        return items

    async def violations(self) -> dict[str, int]:
        """`GET /v1/reconciliation` as failing rows per check (0 for a clean check)."""
        report = await self.http.fetch("/v1/reconciliation")
        failing = {str(v["check"]): len(v["rows"]) for v in report["violations"]}
        return {str(c): failing.get(str(c), 0) for c in report["checks"]} | failing
