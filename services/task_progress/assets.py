"""Which reward assets exist: the ledger owns them, a rule may only name one it knows."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

import httpx

from services.task_progress.domain import BUILTIN_ASSETS
from shared.errors import DomainError, InvalidInput


class LedgerUnavailable(DomainError):
    status = 503

    def __init__(self, reason: str) -> None:
        super().__init__(
            "ledger_unavailable",
            f"could not ask rewards_ledger which assets exist ({reason}); try again later",
        )


class AssetCatalog:
    """Checks asset codes with the ledger's `GET /v1/assets/{code}` (admin token).

    Asked only when a rule is created or its rewards change, before the request touches the
    database, so no connection or row lock waits on the ledger.
    """

    def __init__(self, base_url: str, admin_token: str, timeout_s: float) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=timeout_s,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def exists(self, code: str) -> bool:
        try:
            response = await self._http.get(f"/v1/assets/{quote(code, safe='')}")
        except httpx.HTTPError as exc:
            raise LedgerUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise LedgerUnavailable(f"it answered {response.status_code}")

    async def require(self, codes: Iterable[str]) -> None:
        """Raise InvalidInput (422) naming every code the ledger does not know."""
        unknown = [
            code for code in sorted(set(codes) - BUILTIN_ASSETS) if not await self.exists(code)
        ]
        if unknown:
            raise InvalidInput(
                f"unknown reward asset {', '.join(unknown)}: create it in rewards_ledger first",
                unknown_assets=unknown,
            )
