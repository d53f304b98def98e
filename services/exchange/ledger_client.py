"""The exchange's only way to move points: rewards_ledger's HTTP API, with explicit outcomes.

Every call answers one of three things. `Done`: the ledger applied (or had already applied)
the request. `Refused`: the ledger answered with a definite no (4xx) that retrying will not
change. `Unreachable`: no definite answer (timeout, connection error, 5xx); the caller keeps
the redemption unfinished and the recovery loop asks again with the same idempotency key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx


@dataclass(frozen=True)
class Done:
    body: dict[str, Any]


@dataclass(frozen=True)
class Refused:
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Unreachable:
    reason: str


Outcome = Done | Refused | Unreachable


class LedgerClient:
    def __init__(self, base_url: str, admin_token: str, timeout_s: float) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s),
            headers={"Authorization": f"Bearer {admin_token}"},
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, json: dict[str, Any] | None = None) -> Outcome:
        try:
            response = await self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            return Unreachable(f"{type(exc).__name__}: {exc}".rstrip(": "))
        if response.status_code >= 500 or response.status_code == 429:
            return Unreachable(f"ledger answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            return Unreachable(f"ledger answered {response.status_code} without JSON")
        if response.is_success:
            return Done(body)
        details = {k: v for k, v in body.items() if k not in ("error", "message")}
        return Refused(
            str(body.get("error", "ledger_error")), str(body.get("message", "")), details
        )

    async def debit(
        self, user_id: str, points: int, key: str, reason: str, reference: str
    ) -> Outcome:
        return await self._call(
            "POST",
            f"/v1/accounts/{quote(user_id, safe='')}/debits",
            {"points": points, "idempotency_key": key, "reason": reason, "reference": reference},
        )

    async def refund(self, user_id: str, debit_key: str, reason: str, reference: str) -> Outcome:
        return await self._call(
            "POST",
            f"/v1/accounts/{quote(user_id, safe='')}/refunds",
            {"debit_idempotency_key": debit_key, "reason": reason, "reference": reference},
        )

    async def account(self, user_id: str) -> Outcome:
        return await self._call("GET", f"/v1/accounts/{quote(user_id, safe='')}")
