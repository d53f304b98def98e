"""Holds at checkout (积分抵现) under chaos (chaos/runner.py calls these).

Each cycle, while the faults run, `HoldFlow.send` gives a few users points and places holds
on them as an order system would (retrying every call with the same key until the ledger
answers), then captures some (in whole or in part), voids others, sometimes sending the same
capture or void twice at once, and leaves the rest to the ledger's deadline sweeper.

`check` then asks the ledger's database:
1. nothing lost: every hold the client saw placed exists and ended as the client settled it
   (captured with the points asked, voided), or voided at its deadline when left alone; no
   hold for a refused placement;
2. no hold both captured and voided (no void entry for a captured hold, no capture debit for
   a voided one), none left open past its deadline and the sweep interval;
3. each user's balance is what they were given less what was captured, nothing held.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import httpx

from shared.db import asyncpg_kwargs, database_url
from shared.settings import DEV_ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
GIVEN = 200  # points each user gets
SWEEP_INTERVAL_S = 1  # JIFEN_HOLD_SWEEP_INTERVAL_S in chaos.runner.CHAOS_ENV
Fate = Literal["capture", "void", "expire"]


@dataclass
class Planned:
    key: str
    user: str
    points: int
    fate: Fate
    capture: int  # what to capture (fate capture)
    twice: bool  # send the capture or void twice at once
    placed: bool | None = None  # None until the ledger answered
    hold_id: str | None = None


class HoldFlow:
    def __init__(self, ledger_url: str, database: str, prefix: str, rng: random.Random) -> None:
        self.url = ledger_url
        self.database = database
        self.prefix = prefix
        self.rng = rng
        self.users = [f"{prefix}_h{i}" for i in range(6)]
        self.holds: list[Planned] = []
        for i in range(rng.randint(20, 36)):
            points = rng.randint(10, 80)
            fate: Fate = rng.choice(("capture", "capture", "void", "expire"))
            self.holds.append(
                Planned(
                    f"{prefix}:hold:{i}",
                    rng.choice(self.users),
                    points,
                    fate,
                    rng.randint(1, points),
                    rng.random() < 0.3,
                )
            )
        self.problems: list[str] = []

    def summary(self) -> dict[str, int]:
        placed = [h for h in self.holds if h.placed]
        return {
            "holds": len(placed),
            "holds_refused": sum(1 for h in self.holds if h.placed is False),
            "holds_captured": sum(1 for h in placed if h.fate == "capture"),
        }

    async def _call(
        self, client: httpx.AsyncClient, path: str, body: dict[str, Any]
    ) -> tuple[int, Any]:
        """As a client does: again, with the same key, until the ledger answers."""
        deadline = time.monotonic() + 150
        while True:
            try:
                response = await client.post(f"{self.url}{path}", json=body, headers=ADMIN)
                if response.status_code < 500 and response.status_code != 429:
                    return response.status_code, response.json()
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the ledger did not answer POST {path}")
            await asyncio.sleep(0.3)

    async def send(self, client: httpx.AsyncClient) -> None:
        for user in self.users:
            body = {"points": GIVEN, "idempotency_key": f"chaos-hold:{user}", "reason": "chaos"}
            status, answer = await self._call(client, f"/v1/accounts/{user}/credits", body)
            if status not in (200, 201):
                raise AssertionError(f"credit for {user}: {status} {answer}")
        await asyncio.gather(*(self._one(client, h, self.rng.uniform(0, 8)) for h in self.holds))

    async def _one(self, client: httpx.AsyncClient, hold: Planned, delay: float) -> None:
        await asyncio.sleep(delay)
        body = {
            "user_id": hold.user,
            "points": hold.points,
            "idempotency_key": hold.key,
            "expires_in_s": self.rng.randint(2, 6) if hold.fate == "expire" else 600,
            "reference": f"order:{hold.key}",
        }
        status, answer = await self._call(client, "/v1/holds", body)
        if status == 409 and answer.get("error") == "insufficient_points":
            hold.placed = False
            return
        if status not in (200, 201):
            self.problems.append(f"holds: placing {hold.key}: {status} {answer}")
            return
        hold.placed, hold.hold_id = True, answer["id"]
        if hold.fate == "expire":
            return
        await asyncio.sleep(self.rng.uniform(0.2, 3))
        settle: dict[str, Any] = {"idempotency_key": f"{hold.key}:{hold.fate}"}
        if hold.fate == "capture":
            settle["points"] = hold.capture
        path = f"/v1/holds/{hold.hold_id}/{hold.fate}"
        answers = await asyncio.gather(
            *(self._call(client, path, settle) for _ in range(2 if hold.twice else 1))
        )
        want = ("captured", hold.capture) if hold.fate == "capture" else ("voided", 0)
        for status, answer in answers:
            got = (answer.get("status"), answer.get("captured"))
            if status != 200 or got != want:
                self.problems.append(f"holds: {hold.fate} of {hold.key}: {status} {answer}")

    async def _rows(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        url = database_url(self.database, "jifen_rewards_ledger")
        conn = await asyncpg.connect(**asyncpg_kwargs(url))
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def settle(self, timeout: float = 90) -> None:
        """Wait until the sweeper has voided every hold left to its deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = await self._rows(
                "SELECT count(*) AS n FROM holds WHERE user_id = ANY($1::text[]) "
                "AND status = 'open'",
                self.users,
            )
            if rows[0]["n"] == 0:
                return
            await asyncio.sleep(0.5)

    async def check(self) -> list[str]:
        problems = list(self.problems)
        holds = {
            r["idempotency_key"]: r
            for r in await self._rows(
                "SELECT id, idempotency_key, user_id, points, status, captured, closed_by, "
                "settle_key, expires_at < now() - make_interval(secs => $2) AS overdue "
                "FROM holds WHERE user_id = ANY($1::text[])",
                self.users,
                SWEEP_INTERVAL_S + 5,
            )
        }
        planned = {h.key: h for h in self.holds}
        for key in sorted(set(holds) - set(planned)):
            problems.append(f"holds: {key} exists but was never sent")
        expected = {"capture": "captured", "void": "voided", "expire": "voided"}
        for h in self.holds:
            row = holds.get(h.key)
            if h.placed is False and row is not None:
                problems.append(f"holds: {h.key} was refused but exists ({row['status']})")
            if not h.placed:
                continue
            if row is None:
                problems.append(f"holds: {h.key} was placed and is lost")
                continue
            if row["status"] == "open" and row["overdue"]:
                problems.append(f"holds: {h.key} left open past its deadline")
            closed_by = {"capture": "capture", "void": "void", "expire": "deadline"}[h.fate]
            captured = h.capture if h.fate == "capture" else 0
            if (row["status"], row["closed_by"], row["captured"]) != (
                expected[h.fate],
                closed_by,
                captured,
            ):
                problems.append(
                    f"holds: {h.key} ({h.fate} {captured}) ended {row['status']} "
                    f"by {row['closed_by']} with {row['captured']} captured"
                )
        problems += await self._closed_once(holds)
        problems += await self._balances()
        return problems

    async def _closed_once(self, holds: dict[str, asyncpg.Record]) -> list[str]:
        """No hold both captured and voided: its void entry and its capture's debit exclude
        each other, and each is there once."""
        closings = Counter(
            r["idempotency_key"]
            for r in await self._rows(
                "SELECT idempotency_key FROM journal_entries WHERE user_id = ANY($1::text[]) "
                "AND kind IN ('hold_void', 'debit')",
                self.users,
            )
        )
        problems = []
        for h in holds.values():
            voids = closings[f"hold_void:{h['id']}"]
            captures = closings[f"debit:{h['idempotency_key']}:capture"]
            want = (
                (1, 0)
                if h["status"] == "voided"
                else (0, 1)
                if h["status"] == "captured"
                else (0, 0)
            )
            if (voids, captures) != want:
                problems.append(
                    f"holds: {h['idempotency_key']} is {h['status']} with {voids} voids and "
                    f"{captures} captures in the journal"
                )
        return problems

    async def _balances(self) -> list[str]:
        rows = await self._rows(
            "SELECT user_id, balance, held FROM accounts WHERE asset = 'points' "
            "AND user_id = ANY($1::text[])",
            self.users,
        )
        got = {r["user_id"]: (r["balance"], r["held"]) for r in rows}
        problems = []
        for user in self.users:
            spent = sum(
                h.capture for h in self.holds if h.user == user and h.placed and h.fate == "capture"
            )
            if got.get(user) != (GIVEN - spent, 0):
                problems.append(
                    f"holds: {user} has (balance, held) {got.get(user)}, "
                    f"expected ({GIVEN - spent}, 0)"
                )
        return problems
