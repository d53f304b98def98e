"""Orders, refunds and releases inside a chaos cycle: the ledger's pending, release and
clawback movements under the same faults as everything else.

Each cycle sends paid orders to `upstream.orders` (through the order adapter, as an order
system would), refunds some of them (full, partial, in two steps, and repeated), and runs the
ledger's release sweeper as one more replica whose clock is past the return window, several
times while the faults happen. After the cycle it checks that every order was credited once
per rule it met, every pending lot was released once (or cancelled), every refund took back
exactly its rounded-down share, and each buyer holds exactly what their orders earned less
what their refunds took back, with no pending and no debt left.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.behavior_sensor.domain import behavior_id
from services.rewards_ledger.settings import Settings as LedgerSettings
from services.rewards_ledger.workers import ReleaseSweeper
from shared.db import Database, asyncpg_kwargs, create_engine, database_url

SOURCE = "order_system"  # the order adapter's source
PENDING_SHOP, NOW_SHOP = "chaos_pending", "chaos_now"
RATIO_UNIT_CENTS, BONUS_FROM_CENTS, BONUS = 1000, 10000, 20
# Past the 7-day return window of the pending rule.
RELEASE_CLOCK = timedelta(days=8)

RULES = (
    {
        "name": "chaos: 1 point per 10 yuan, pending 7 days",
        "action": "order_paid",
        "kind": "amount_ratio",
        "amount_unit_cents": RATIO_UNIT_CENTS,
        "reward_points": 1,
        "period": "lifetime",
        "pending_days": 7,
        "conditions": [{"attribute": "shop_id", "op": "==", "value": PENDING_SHOP}],
    },
    {
        "name": "chaos: 1 point per 10 yuan",
        "action": "order_paid",
        "kind": "amount_ratio",
        "amount_unit_cents": RATIO_UNIT_CENTS,
        "reward_points": 1,
        "period": "lifetime",
        "conditions": [{"attribute": "shop_id", "op": "==", "value": NOW_SHOP}],
    },
    {
        "name": "chaos: 20 for an order of 100 yuan",
        "action": "order_paid",
        "reward_points": BONUS,
        "period": "lifetime",
        "conditions": [
            {"attribute": "shop_id", "op": "in", "value": [PENDING_SHOP, NOW_SHOP]},
            {"attribute": "amount_cents", "op": ">=", "value": BONUS_FROM_CENTS},
        ],
    },
)


async def create_rules(client: httpx.AsyncClient, tasks_url: str) -> None:
    found = await client.get(f"{tasks_url}/v1/tasks", params={"limit": 500})
    names = {t["name"] for t in found.json()["items"]}
    for rule in RULES:
        if rule["name"] not in names:
            (await client.post(f"{tasks_url}/v1/tasks", json=rule)).raise_for_status()


def _yuan(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def clawed(points: int, paid: int, refunded: int) -> int:
    """What a refund takes back of a grant: its share, rounded down (all of it when full)."""
    return points if refunded >= paid else points * refunded // paid


@dataclass
class Order:
    number: str
    buyer: str
    shop: str
    paid_cents: int
    refunds: dict[str, int] = field(default_factory=dict)  # refund_no -> cents

    @property
    def behavior_id(self) -> str:
        return behavior_id(SOURCE, self.number)

    @property
    def grants(self) -> list[int]:
        """The points of each grant the order earns (ratio, then the bonus)."""
        earned = (
            [self.paid_cents // RATIO_UNIT_CENTS] if self.paid_cents >= RATIO_UNIT_CENTS else []
        )
        return earned + ([BONUS] if self.paid_cents >= BONUS_FROM_CENTS else [])

    @property
    def refunded_cents(self) -> int:
        return min(self.paid_cents, sum(self.refunds.values()))

    def keeps(self) -> int:
        return sum(p - clawed(p, self.paid_cents, self.refunded_cents) for p in self.grants)


class OrderFlow:
    """One cycle's orders: what was sent, and what the ledger must show for it."""

    def __init__(self, database: str, prefix: str, rng: random.Random) -> None:
        self.database = database
        self.rng = rng
        self.orders = [
            Order(
                f"{prefix}_O{i}",
                f"{prefix}_b{i % 6}",
                rng.choice((PENDING_SHOP, NOW_SHOP)),
                rng.randint(20, 400) * 100 + rng.choice((0, 0, 50)),
            )
            for i in range(12)
        ]
        self.releases = 0

    def summary(self) -> dict[str, int]:
        return {
            "orders": len(self.orders),
            "refunded": sum(1 for o in self.orders if o.refunds),
            "released_lots": self.releases,
        }

    # -- sending ------------------------------------------------------------------------

    async def send(self, producer: AIOKafkaProducer) -> None:
        """Every order paid, then (for about half) refunded, spread over about ten seconds."""
        await asyncio.gather(*(self._one(producer, o, self.rng.uniform(0, 6)) for o in self.orders))

    async def _one(self, producer: AIOKafkaProducer, order: Order, delay: float) -> None:
        await asyncio.sleep(delay)
        paid_ms = int(datetime.now(UTC).timestamp() * 1000)
        paid = {
            "orderNo": order.number,
            "buyerId": order.buyer,
            "orderStatus": "PAID",
            "payAmount": _yuan(order.paid_cents),
            "paidTime": paid_ms,
            "shopId": order.shop,
        }
        await self._produce(producer, order.buyer, paid)
        if self.rng.random() < 0.5:
            return
        steps = (
            [None]  # a full refund
            if self.rng.random() < 0.5
            else [self.rng.randint(1, order.paid_cents - 1)]
            + ([None] if self.rng.random() < 0.4 else [])  # then perhaps the rest
        )
        for n, amount in enumerate(steps):
            await asyncio.sleep(self.rng.uniform(0, 3))
            refund_no = f"R{n}"
            left = order.paid_cents - order.refunded_cents
            cents = left if amount is None else amount
            message = {
                **paid,
                "orderStatus": "REFUNDED" if amount is None else "PARTIALLY_REFUNDED",
                "refundNo": refund_no,
                "refundTime": int(datetime.now(UTC).timestamp() * 1000),
            }
            if amount is not None:
                message["refundAmount"] = _yuan(cents)
            order.refunds[refund_no] = cents
            for _ in range(2 if self.rng.random() < 0.3 else 1):  # sometimes delivered twice
                await self._produce(producer, order.buyer, message)

    async def _produce(self, producer: AIOKafkaProducer, buyer: str, body: dict[str, Any]) -> None:
        while True:
            try:
                await producer.send_and_wait(
                    "upstream.orders", json.dumps(body).encode(), key=buyer.encode()
                )
                return
            except KafkaError:
                await asyncio.sleep(0.5)

    # -- releasing ----------------------------------------------------------------------

    async def release_during(self, seconds: float) -> None:
        """The release sweep as an extra ledger replica with its clock past the window, a few
        times while the faults happen (a terminated connection is retried)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(self.rng.uniform(1.5, 4))
            await self.release()

    async def release(self) -> None:
        db = Database(
            create_engine(database_url(self.database, "jifen_rewards_ledger"), pool_size=2)
        )
        try:
            for _ in range(20):
                try:
                    sweeper = ReleaseSweeper(LedgerSettings.model_validate({}), db)
                    self.releases += await sweeper.sweep_once(datetime.now(UTC) + RELEASE_CLOCK)
                    return
                except Exception:  # the faults terminate connections: sweep again
                    await asyncio.sleep(0.5)
        finally:
            await db.dispose()

    # -- checking -----------------------------------------------------------------------

    async def _ledger_rows(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        url = database_url(self.database, "jifen_rewards_ledger")
        conn = await asyncpg.connect(**asyncpg_kwargs(url))
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def _lots(self) -> list[asyncpg.Record]:
        """Every lot the cycle's orders were credited, with its clawback and releases."""
        return await self._ledger_rows(
            "SELECT e.reference, l.id, l.user_id, l.points, l.status, l.remaining, "
            "COALESCE(c.applied, 0) AS applied, COALESCE(c.target, 0) AS target, "
            "(SELECT count(*) FROM journal_entries r "
            " WHERE r.lot_id = l.id AND r.kind = 'release') AS releases "
            "FROM journal_entries e JOIN lots l ON l.id = e.lot_id "
            "LEFT JOIN clawbacks c ON c.lot_id = l.id "
            "WHERE e.kind IN ('credit', 'pending') AND e.reference = ANY($1::text[])",
            [o.behavior_id for o in self.orders],
        )

    async def unsettled(self) -> list[str]:
        """What the ledger does not show yet (or shows wrongly) for these orders."""
        lots = await self._lots()
        by_order: dict[str, list[asyncpg.Record]] = {}
        for lot in lots:
            by_order.setdefault(lot["reference"], []).append(lot)
        problems = []
        for order in self.orders:
            found = by_order.get(order.behavior_id, [])
            if sorted(lot["points"] for lot in found) != sorted(order.grants):
                problems.append(
                    f"order {order.number}: lots {sorted(lot['points'] for lot in found)}, "
                    f"expected {sorted(order.grants)}"
                )
                continue
            for lot in found:
                want = clawed(lot["points"], order.paid_cents, order.refunded_cents)
                if lot["applied"] != want or lot["target"] != want:
                    problems.append(
                        f"order {order.number} lot {lot['id']}: clawed back {lot['applied']} "
                        f"(target {lot['target']}), expected {want}"
                    )
                if lot["releases"] > 1:
                    problems.append(f"lot {lot['id']} released {lot['releases']} times")
                if lot["status"] == "pending" and lot["remaining"] > 0:
                    problems.append(f"lot {lot['id']} still pending after the release sweep")
        return problems

    async def holdings(self) -> list[str]:
        """Each buyer holds what their orders kept: no pending, no debt."""
        rows = await self._ledger_rows(
            "SELECT user_id, balance, pending, debt FROM accounts "
            "WHERE asset = 'points' AND user_id = ANY($1::text[])",
            sorted({o.buyer for o in self.orders}),
        )
        held = {r["user_id"]: (r["balance"], r["pending"], r["debt"]) for r in rows}
        problems = []
        for buyer in sorted({o.buyer for o in self.orders}):
            want = sum(o.keeps() for o in self.orders if o.buyer == buyer)
            got = held.get(buyer, (0, 0, 0))
            if got != (want, 0, 0):
                problems.append(
                    f"buyer {buyer}: (balance, pending, debt) = {got}, expected ({want}, 0, 0)"
                )
        return problems
