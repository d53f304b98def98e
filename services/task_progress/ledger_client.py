"""task_progress's calls to rewards_ledger: which reward assets exist (a rule may only name
one the ledger knows) and the debit that pays for a make-up check-in."""

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


class LedgerClient:
    """The ledger's HTTP API with task_progress's service credential. Asset codes are
    checked only when a rule is created or its rewards change, before the request touches
    the database, so no connection or row lock waits on the ledger; the same holds for
    make-up debits."""

    def __init__(self, base_url: str, token: str, timeout_s: float) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
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

    async def debit(self, user_id: str, points: int, key: str, reason: str) -> int:
        """Take `points` with an idempotency key (a retry with the same key is the same
        debit); returns the balance after. A refusal (insufficient_points, ...) is raised as
        the ledger's own error; no definite answer is LedgerUnavailable (503): the caller may
        retry with the same key."""
        body = {"points": points, "idempotency_key": key, "reason": reason}
        try:
            response = await self._http.post(
                f"/v1/accounts/{quote(user_id, safe='')}/debits", json=body
            )
        except httpx.HTTPError as exc:
            raise LedgerUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if response.status_code in (200, 201):
            return int(response.json()["balance_after"])
        if 400 <= response.status_code < 500:
            answer = response.json()
            raise DomainError(
                str(answer.get("error", "refused")),
                str(answer.get("message", "the ledger refused the debit")),
                status=response.status_code,
                **(answer.get("details") or {}),
            )
        raise LedgerUnavailable(f"it answered {response.status_code}")
