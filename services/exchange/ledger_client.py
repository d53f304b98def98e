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

    def __init__(self, base_url: str, token: str, timeout_s: float) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
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

    async def debit_many(self, debits: list[dict[str, Any]]) -> list[Outcome]:
        """Many debits in one call (`POST /v1/debits/batch`): one outcome per debit, in order.
        Each item has user_id, points, idempotency_key, reason and reference."""
        outcome = await self._call("POST", "/v1/debits/batch", {"debits": debits})
        if isinstance(outcome, Refused):
            # A refusal of the whole call says nothing definite about any one debit: leave
            # them unconfirmed: recovery asks again and, past the deadline, compensates.
            outcome = Unreachable(f"ledger refused the batch: {outcome.code} {outcome.message}")
        if isinstance(outcome, Unreachable):
            return [outcome] * len(debits)
        results = outcome.body.get("results")
        if not isinstance(results, list) or len(results) != len(debits):
            return [Unreachable("ledger answered the batch without one result per debit")] * len(
                debits
            )
        outcomes: list[Outcome] = []
        for r in results:
            if not isinstance(r, dict) or not isinstance(r.get("status"), int):
                outcomes.append(
                    Unreachable("ledger answered one debit of a batch without a status")
                )
                continue
            status = r["status"]
            if 200 <= status < 300 and isinstance(r.get("debit"), dict):
                outcomes.append(Done(r["debit"]))
            elif 400 <= status < 500 and status != 429:
                details = r.get("details") or {}
                outcomes.append(
                    Refused(str(r.get("error", "ledger_error")), str(r.get("message", "")), details)
                )
            else:
                outcomes.append(Unreachable(f"ledger answered {status} for one debit of a batch"))
        return outcomes

    async def refund(self, user_id: str, debit_key: str, reason: str, reference: str) -> Outcome:
        return await self._call(
            "POST",
            f"/v1/accounts/{quote(user_id, safe='')}/refunds",
            {"debit_idempotency_key": debit_key, "reason": reason, "reference": reference},
        )

    async def account(self, user_id: str) -> Outcome:
        return await self._call("GET", f"/v1/accounts/{quote(user_id, safe='')}")
