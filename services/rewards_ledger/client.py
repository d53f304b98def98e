"""rewards_ledger's HTTP API as other services call it, on the kit's `ServiceClient`.

Two styles, one per kind of caller:
- the exchange's saga keeps every outcome (`Done | Refused | Unreachable`) and decides itself
  what an unanswered debit means (`debit_many`, `refund`, `account`);
- a request or a consumer that can only go on with a definite answer gets the value, the
  ledger's own refusal raised as its `DomainError`, or `Unavailable` with the code
  `ledger_unavailable` (503, transient: the caller's request or batch is retried with the same
  idempotency key).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from shared.client import Done, Outcome, Refused, ServiceClient, Unreachable

SERVICE = "rewards_ledger"
UNAVAILABLE = "ledger_unavailable"  # the error code a caller answers with (503)


def _user(user_id: str) -> str:
    return f"/v1/accounts/{quote(user_id, safe='')}"


def _batch_item(item: Any) -> Outcome:
    """One debit's outcome inside a batch answer (each carries its own status)."""
    if not isinstance(item, dict) or not isinstance(item.get("status"), int):
        return Unreachable("ledger answered one debit of a batch without a status", SERVICE)
    status = item["status"]
    if 200 <= status < 300 and not isinstance(item.get("debit"), dict):
        return Unreachable("ledger answered one debit of a batch without it", SERVICE)
    if 200 <= status < 300:
        return Done(item["debit"], status, SERVICE)
    if 400 <= status < 500 and status != 429:
        details = item.get("details") or {}
        return Refused(
            str(item.get("error", "ledger_error")), str(item.get("message", "")), details, status
        )
    return Unreachable(f"ledger answered {status} for one debit of a batch", SERVICE)


class LedgerClient:
    def __init__(self, base_url: str, token: str, timeout_s: float, *, retries: int = 0) -> None:
        self.http = ServiceClient(
            SERVICE, base_url, token, timeout_s, retries=retries, unavailable_code=UNAVAILABLE
        )

    async def close(self) -> None:
        await self.http.close()

    # --- outcomes, for the exchange's saga -------------------------------------------------

    async def debit_many(self, debits: list[dict[str, Any]]) -> list[Outcome]:
        """Many debits in one call (`POST /v1/debits/batch`): one outcome per debit, in order.
        Each item has user_id, points, idempotency_key, reason and reference."""
        outcome = await self.http.post("/v1/debits/batch", {"debits": debits}, idempotent=True)
        if isinstance(outcome, Refused):
            # A refusal of the whole call says nothing definite about any one debit: leave
            # them unconfirmed: recovery asks again and, past the deadline, compensates.
            outcome = Unreachable(
                f"ledger refused the batch: {outcome.code} {outcome.message}", SERVICE
            )
        if isinstance(outcome, Unreachable):
            return [outcome] * len(debits)
        results = outcome.body.get("results") if isinstance(outcome.body, dict) else None
        if not isinstance(results, list) or len(results) != len(debits):
            missing = Unreachable("ledger answered the batch without one result per debit", SERVICE)
            return [missing] * len(debits)
        return [_batch_item(r) for r in results]

    async def refund(self, user_id: str, debit_key: str, reason: str, reference: str) -> Outcome:
        body = {"debit_idempotency_key": debit_key, "reason": reason, "reference": reference}
        return await self.http.post(f"{_user(user_id)}/refunds", body, idempotent=True)

    async def account(self, user_id: str) -> Outcome:
        return await self.http.get(_user(user_id))

    # --- values, for callers that need a definite answer -----------------------------------

    async def asset_exists(self, code: str) -> bool:
        outcome = await self.http.get(f"/v1/assets/{quote(code, safe='')}")
        if isinstance(outcome, Refused) and outcome.status == 404:
            return False
        self.http.value(outcome)
        return True

    async def debit(self, user_id: str, points: int, key: str, reason: str) -> int:
        """Take `points` with an idempotency key (a retry with the same key is the same
        debit); returns the balance after."""
        body = {"points": points, "idempotency_key": key, "reason": reason}
        answer = self.http.value(
            await self.http.post(f"{_user(user_id)}/debits", body, idempotent=True)
        )
        return int(answer["balance_after"])

    async def expiring(
        self,
        start: datetime,
        end: datetime,
        after: tuple[str, str] | None = None,
        limit: int | None = None,
    ) -> tuple[list[tuple[str, datetime, int]], tuple[str, str] | None]:
        """One page of points expiring in [start, end): (user_id, expires_at, points) rows and
        the cursor of the next page (None after the last)."""
        params: dict[str, Any] = {"from": start.isoformat(), "to": end.isoformat(), "limit": limit}
        if after is not None:
            params["after_user"], params["after_expires_at"] = after
        page = await self.http.fetch("/v1/reports/expiring-lots", **params)
        rows = [
            (i["user_id"], datetime.fromisoformat(i["expires_at"]), int(i["points"]))
            for i in page["items"]
        ]
        nxt = page.get("next")
        return rows, (nxt["user_id"], nxt["expires_at"]) if nxt else None

    async def holders(
        self, min_balance: int, after: str, limit: int
    ) -> tuple[list[str], str | None]:
        """One page of the users holding at least `min_balance`, after `after`."""
        page = await self.http.fetch(
            "/v1/reports/holders", min_balance=min_balance, after=after, limit=limit
        )
        return [i["user_id"] for i in page["items"]], page.get("next")

    async def violations(self) -> dict[str, int]:
        """`GET /v1/reconciliation` as failing rows per check (0 for a clean check)."""
        report = await self.http.fetch("/v1/reconciliation")
        failing = {str(v["check"]): len(v["rows"]) for v in report["violations"]}
        return {str(c): failing.get(str(c), 0) for c in report["checks"]} | failing
