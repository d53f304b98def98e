"""The exchange's only way to move points: rewards_ledger's HTTP API, with explicit outcomes.

Every call answers one of three things. `Done`: the ledger applied (or had already applied)
the request. `Refused`: the ledger answered with a definite no (4xx) that retrying will not
change. `Unreachable`: no definite answer (timeout, connection error, 5xx); the caller keeps
the redemption unfinished and the recovery loop asks again with the same idempotency key.
"""

from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp


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
    """Keep-alive connections to the ledger. aiohttp rather than httpx here: under a few dozen
    concurrent redemptions httpx's pool bookkeeping cost more CPU than the redemption itself
    (docs/BENCHMARKS.md, hot item)."""

    def __init__(self, base_url: str, admin_token: str, timeout_s: float) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {admin_token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop, as aiohttp requires.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=200, limit_per_host=200, keepalive_timeout=30),
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, json: dict[str, Any] | None = None) -> Outcome:
        try:
            async with self._http().request(method, self._base + path, json=json) as response:
                status = response.status
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Unreachable(f"{type(exc).__name__}: {exc}".rstrip(": "))
        if status >= 500 or status == 429:
            return Unreachable(f"ledger answered {status}")
        try:
            body = jsonlib.loads(raw)
        except ValueError:  # includes bytes that are not UTF-8
            return Unreachable(f"ledger answered {status} without JSON")
        if not isinstance(body, dict):
            return Unreachable(f"ledger answered {status} with a JSON {type(body).__name__}")
        if 200 <= status < 300:
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
