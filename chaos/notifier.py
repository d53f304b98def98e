"""The notifier under chaos (chaos/runner.py calls these).

Each cycle, while the faults run:
- `NotifyFlow.send` registers a device for some of the cycle's users, starts a marketing
  campaign to them, and publishes `redemption.shipped` events for others on exchange.events
  (some twice, as a broker redelivers);
- the notifier (killed, scaled, replayed, its connections terminated like every consumer)
  sends them with the `log` provider, which appends one JSON line per message to the file
  named by JIFEN_LOG_PATH.

`check` then asks, from the notifier's own database and that file:
1. the campaign finished: one notification per recipient, none left queued, claimed or
   sending, every one sent (at least once: a wave cut by a kill is sent again after the
   lease);
2. every campaign message recorded sent reached the provider, and every copy of it (a
   resend after a kill) carried its collapse id, so the phone shows one;
3. every shipped parcel has exactly one notification (by its cause's id), sent, and it
   reached the provider (at least once, with the same collapse id).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from services.notifier.domain import notification_id
from shared.db import asyncpg_kwargs, database_url
from shared.events import EXCHANGE_EVENTS
from shared.settings import DEV_ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}


def log_lines(path: Path) -> tuple[Counter[str], set[str]]:
    """How many times each notification id was written by the log provider, and the ids
    written with another collapse id than their own (a resend that would show twice)."""
    seen: Counter[str] = Counter()
    strays: set[str] = set()
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                message = json.loads(line)
                seen[message["notification_id"]] += 1
            except (ValueError, KeyError):
                continue  # a line cut by a kill -9 mid-write
            if message.get("collapse_id") != message["notification_id"]:
                strays.add(message["notification_id"])
    return seen, strays


class NotifyFlow:
    def __init__(self, notifier_url: str, prefix: str, rng: random.Random) -> None:
        self.url = notifier_url
        self.prefix = prefix
        self.rng = rng
        self.recipients = [f"{prefix}_n{i}" for i in range(rng.randint(20, 60))]
        self.shipped = [str(uuid.uuid4()) for _ in range(rng.randint(5, 15))]
        self.campaign_id: str | None = None

    async def _retry(self, client: httpx.AsyncClient, method: str, path: str, body: Any) -> Any:
        """As a client does: again until the notifier answers (it may be down a while)."""
        deadline = time.monotonic() + 120
        while True:
            try:
                response = await client.request(
                    method, f"{self.url}{path}", json=body, headers=ADMIN
                )
                if response.status_code < 500:
                    response.raise_for_status()
                    return response.json()
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the notifier did not take {method} {path}")
            await asyncio.sleep(0.5)

    async def send(self, client: httpx.AsyncClient, producer: AIOKafkaProducer) -> None:
        for user in self.recipients:
            token = f"chaos{uuid.uuid4().hex}"
            await self._retry(
                client, "POST", f"/v1/users/{user}/devices", {"platform": "android", "token": token}
            )
            await self._retry(
                client, "PUT", f"/v1/users/{user}/preferences", {"quiet_hours": {"enabled": False}}
            )
        created = await self._retry(
            client,
            "POST",
            "/v1/campaigns",
            {
                "idempotency_key": f"chaos-{self.prefix}",
                "name": f"chaos {self.prefix}",
                "audience": {"user_ids": self.recipients},
                "category": "marketing",
                "title": "chaos",
                "body": f"campaign {self.prefix}",
            },
        )
        self.campaign_id = created["id"]
        for i, redemption in enumerate(self.shipped):
            user = self.recipients[i % len(self.recipients)]
            event = {
                "type": "redemption.shipped",
                "redemption_id": redemption,
                "user_id": user,
                "item_id": "chaos-parcel",
                "item_type": "physical",
                "quantity": 1,
                "points": 5,
                "status": "completed",
                "occurred_at": datetime.now(UTC).isoformat(),
            }
            for _ in range(2 if self.rng.random() < 0.3 else 1):
                await producer.send_and_wait(
                    EXCHANGE_EVENTS, json.dumps(event).encode(), key=user.encode()
                )
            await asyncio.sleep(self.rng.uniform(0, 0.5))

    async def settle(self, server_url: str, timeout: float = 150) -> None:
        """Wait until the campaign is expanded and nothing of this cycle is on its way."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = await _scalar(
                server_url,
                "SELECT count(*) FROM notifications WHERE user_id LIKE $1 "
                "AND status IN ('queued', 'claimed', 'sending')",
                f"{self.prefix}\\_n%",
            )
            done = await _scalar(
                server_url,
                "SELECT count(*) FROM campaigns WHERE id = $1 AND status = 'done'",
                self.campaign_id,
            )
            if busy == 0 and done == 1:
                return
            await asyncio.sleep(0.5)

    async def check(self, server_url: str, log_path: Path) -> list[str]:
        problems: list[str] = []
        rows = await _rows(
            server_url,
            "SELECT id, user_id, trigger, status, reason, campaign_id FROM notifications "
            "WHERE user_id LIKE $1",
            f"{self.prefix}\\_n%",
        )
        written, strays = log_lines(log_path)
        campaign = [r for r in rows if r["campaign_id"] == self.campaign_id]
        per_user = Counter(r["user_id"] for r in campaign)
        if set(per_user) != set(self.recipients) or any(n != 1 for n in per_user.values()):
            problems.append(
                f"notifier: campaign {self.prefix} has {len(campaign)} notifications for "
                f"{len(per_user)} of {len(self.recipients)} recipients"
            )
        for r in campaign:
            if r["status"] != "sent":
                problems.append(
                    f"notifier: campaign message {r['id']} is {r['status']} ({r['reason']})"
                )
            elif written[r["id"]] < 1:
                problems.append(f"notifier: campaign message {r['id']} recorded sent, never sent")
            if r["id"] in strays:
                problems.append(f"notifier: message {r['id']} sent under another collapse id")
        by_id = {r["id"]: r for r in rows}
        for redemption in self.shipped:
            nid = notification_id("redemption_shipped", redemption)
            row = by_id.get(nid)
            if row is None:
                problems.append(f"notifier: no message for shipped redemption {redemption}")
            elif row["status"] != "sent" or written[nid] < 1 or nid in strays:
                problems.append(
                    f"notifier: shipped message {nid} is {row['status']} ({row['reason']}), "
                    f"written {written[nid]}x"
                )
        return problems


async def _rows(server_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(**asyncpg_kwargs(database_url(server_url, "jifen_notifier")))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _scalar(server_url: str, sql: str, *args: Any) -> int:
    rows = await _rows(server_url, sql, *args)
    return int(rows[0][0]) if rows else 0
