"""The notifier's reads from rewards_ledger: points expiring in a window, and the holders of
more than a balance (a campaign audience). Both are keyset-paged reports; a failure raises
`LedgerUnavailable`, which the platform's retry treats as transient."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from shared.errors import DomainError


class LedgerUnavailable(DomainError):
    status = 503

    def __init__(self, reason: str) -> None:
        super().__init__("ledger_unavailable", f"rewards_ledger could not be read ({reason})")


class LedgerReports:
    def __init__(self, base_url: str, token: str, timeout_s: float) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise LedgerUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if response.status_code != 200:
            raise LedgerUnavailable(
                f"{path} answered {response.status_code}: {response.text[:200]}"
            )
        result: dict[str, Any] = response.json()
        return result

    async def expiring(
        self,
        start: datetime,
        end: datetime,
        after: tuple[str, str] | None,
        limit: int,
    ) -> tuple[list[tuple[str, datetime, int]], tuple[str, str] | None]:
        """(user_id, expires_at, points) rows and the cursor of the next page (or None)."""
        params: dict[str, Any] = {"from": start.isoformat(), "to": end.isoformat(), "limit": limit}
        if after is not None:
            params["after_user"], params["after_expires_at"] = after
        page = await self._get("/v1/reports/expiring-lots", params)
        rows = [
            (i["user_id"], datetime.fromisoformat(i["expires_at"]), int(i["points"]))
            for i in page["items"]
        ]
        nxt = page.get("next")
        return rows, (nxt["user_id"], nxt["expires_at"]) if nxt else None

    async def holders(
        self, min_balance: int, after: str, limit: int
    ) -> tuple[list[str], str | None]:
        page = await self._get(
            "/v1/reports/holders", {"min_balance": min_balance, "after": after, "limit": limit}
        )
        return [i["user_id"] for i in page["items"]], page.get("next")
