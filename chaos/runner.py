"""Fault-injection cycles against the running suite, with the invariants checked after each.

One environment (embedded PostgreSQL, the broker, every service as a process, a supervisor
that restarts whatever dies) serves all cycles. A cycle:
1. sends a stream of behaviors (Kafka and HTTP, with duplicates and out-of-order times) and
   redemptions of a fresh item, retrying whatever was not acknowledged, as a real client does,
   and orders with refunds through the order adapter (chaos.orders), releasing pending order
   points with the ledger's sweeper as an extra replica whose clock is past the window;
2. meanwhile applies the seeded fault plan (chaos.schedule); failpoints also SIGKILL services
   between a DB commit and the offset commit, after a publish, after a ledger debit;
3. heals (all services up, extra replicas gone), waits for the work to settle, then checks:
   every accepted behavior credited exactly once, no negative balance or lot, the item's
   stock + what its redemptions hold = its initial stock, one net debit per completed
   redemption and none for the others, every order credited once per rule and every refund
   clawed back exactly (each buyer holds what their orders kept, nothing pending, no debt),
   every pending lot released once, holds settled as their client settled them or voided at
   their deadline (chaos.holds), and both reconciliations clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import GroupIdNotFound, KafkaError

from chaos import engagement as chaos_engagement
from chaos import insights as chaos_insights
from chaos.holds import HoldFlow
from chaos.notifier import NotifyFlow
from chaos.orders import OrderFlow, create_rules
from chaos.schedule import CONSUMERS, Fault, Plan
from services.behavior_sensor.domain import behavior_id
from services.devstack import EmbeddedBroker, Stack, drain
from services.suite import CONSUMER_GROUPS, SERVICES
from shared.db import asyncpg_kwargs, database_url
from shared.messaging.embedded_broker import delete_group, group_admin, topic_partitions
from shared.settings import DEV_ADMIN_TOKEN, DEV_INGEST_KEY

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
INGEST = {"X-Api-Key": DEV_INGEST_KEY}
ACTION = "chaos_tick"
SOURCE = "chaos"
FAILPOINTS = (
    "consumer.after_db_commit=0.004,consumer.after_offset_commit=0.004,"
    "relay.after_publish=0.004,publisher.after_send=0.004,exchange.after_debit=0.01"
)
CHAOS_ENV = {
    "JIFEN_ENV": "test",
    "JIFEN_LOG_LEVEL": "WARNING",
    "JIFEN_SEED_DEMO": "false",
    "JIFEN_FARMING_DEFAULT_LIMIT": "100000000",
    "JIFEN_KAFKA_TOPIC_PARTITIONS": "4",
    "JIFEN_LEDGER_TIMEOUT_S": "2",
    "JIFEN_RECOVERY_INTERVAL_S": "0.5",
    "JIFEN_PENDING_DEADLINE_S": "6",
    "JIFEN_FAILPOINTS": FAILPOINTS,
    # what a killed publisher left behind is swept after 1s (the relay's path gets exercised)
    "JIFEN_OUTBOX_SWEEP_AFTER_MS": "1000",
    # a killed consumer's partitions move to the survivors after 6s instead of 30s
    "JIFEN_KAFKA_SESSION_TIMEOUT_MS": "6000",
    "JIFEN_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
    # a member whose join never completes, or left with no partitions while its group stands
    # still, joins again after 20s: within the 60s a cycle gives the suite to get ready
    "JIFEN_CONSUMER_STALL_RESTART_S": "20",
    # chaos's clients are load generators, not callers to protect the suite from
    "JIFEN_RATE_LIMIT_KEY_PER_S": "0",
    "JIFEN_RATE_LIMIT_USER_PER_S": "0",
    "JIFEN_RATE_LIMIT_IP_PER_S": "0",
    # notifier: a killed dispatcher's claimed messages are taken over after 10s
    "JIFEN_DISPATCH_LEASE_S": "10",
    "JIFEN_DISPATCH_POLL_S": "0.3",
    "JIFEN_CAMPAIGN_CHUNK": "10",
    "JIFEN_CAMPAIGN_POLL_S": "0.3",
    # holds left to their deadline are voided within a second of it (chaos.holds)
    "JIFEN_HOLD_SWEEP_INTERVAL_S": "1",
}
GROUP_OF = {  # consumer service -> its consumer group
    "behavior_sensor": "jifen.behavior_sensor.upstream",
    "task_progress": "jifen.task_progress.behaviors",
    "rewards_ledger": "jifen.rewards_ledger.grants",
    "engagement": "jifen.engagement.events",
    "insights": "jifen.insights.events",
    "notifier": "jifen.notifier.events",
}


class Supervisor:
    """Restarts any expected process that died (as Kubernetes would), unless it is on hold."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.expected: dict[str, tuple[str, int, str | None]] = {}  # name -> service, replica, role
        self.hold_until: dict[str, float] = {}
        self.restarts = 0
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)

    def expect(self, service: str, replica: int = 0, role: str | None = None) -> str:
        name = self.stack.process_name(service, replica)
        with self.lock:
            self.expected[name] = (service, replica, role)
            proc = self.stack.processes.get(name)
            if proc is None or proc.poll() is not None:
                self.stack.processes.pop(name, None)
                self.stack.start_service(service, replica, role)
        return name

    def retire(self, name: str, sig: int) -> None:
        with self.lock:
            self.expected.pop(name, None)
            self.stack.stop_service(name, sig)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(0.3):
            with self.lock:
                for name, (service, replica, role) in list(self.expected.items()):
                    proc = self.stack.processes.get(name)
                    if proc is not None and proc.poll() is None:
                        continue
                    if time.monotonic() < self.hold_until.get(name, 0):
                        continue
                    self.stack.processes.pop(name, None)
                    try:
                        self.stack.start_service(service, replica, role)
                        self.restarts += 1
                    except RuntimeError:
                        pass  # the port is not free yet; try again next round


@dataclass
class Outcome:
    seed: int
    faults: list[str]
    events_accepted: int = 0
    sends: int = 0
    redemptions: dict[str, int] = field(default_factory=dict)
    orders: dict[str, int] = field(default_factory=dict)  # orders, refunds, releases
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


class Environment:
    def __init__(
        self, database: str, broker: EmbeddedBroker, stack: Stack, log: Any = print
    ) -> None:
        self.database = database
        self.broker = broker
        self.stack = stack
        self.supervisor = Supervisor(stack)
        self.log = log
        # the notifier's `log` provider writes here (one JSON line per message sent)
        self.notify_log = Path(stack.env.get("JIFEN_LOG_PATH", "notifications.log"))

    @property
    def bootstrap(self) -> str:
        return self.stack.kafka_bootstrap

    def start(self) -> None:
        for service in SERVICES:
            self.supervisor.expect(service)
        self.stack.wait_ready(180)
        self.supervisor.start()
        asyncio.run(self._create_task())

    def stop(self) -> None:
        self.supervisor.stop()
        self.stack.stop()

    async def _create_task(self) -> None:
        async with httpx.AsyncClient(headers=ADMIN, timeout=30) as client:
            found = await client.get(f"{self.stack.url('task_progress')}/v1/tasks")
            if any(t["action"] == ACTION for t in found.json()["items"]):
                await create_rules(client, self.stack.url("task_progress"))
                await chaos_engagement.prepare(client, self.stack.url("engagement"))
                return
            response = await client.post(
                f"{self.stack.url('task_progress')}/v1/tasks",
                json={"name": "chaos: 1 point per tick", "action": ACTION, "reward_points": 1},
            )
            response.raise_for_status()
            await create_rules(client, self.stack.url("task_progress"))
            await chaos_engagement.prepare(client, self.stack.url("engagement"))

    # -- one cycle ------------------------------------------------------------------------

    async def cycle(self, plan: Plan) -> Outcome:
        started = time.monotonic()
        outcome = Outcome(plan.seed, [f.describe() for f in plan.faults])
        rng = random.Random(plan.seed * 7919)
        prefix = f"c{plan.seed}_{uuid.uuid4().hex[:4]}"
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", request_timeout_ms=60_000
        )
        orders = OrderFlow(self.database, prefix, random.Random(plan.seed * 31))
        notify = NotifyFlow(self.stack.url("notifier"), prefix, random.Random(plan.seed * 17))
        holds = HoldFlow(
            self.stack.url("rewards_ledger"), self.database, prefix, random.Random(plan.seed * 13)
        )
        await producer.start()
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                item, redeemers = await self._prepare_redemptions(client, plan, prefix)
                accepted: dict[str, str] = {}  # behavior_id -> user
                redemption_ids: list[str] = []
                work = asyncio.gather(
                    self._send_events(client, producer, plan, rng, prefix, accepted, outcome),
                    self._redeem(client, item, redeemers, redemption_ids),
                    orders.send(producer),
                    orders.release_during(12),
                    notify.send(client, producer),
                    holds.send(client),
                )
                faults = asyncio.create_task(self._apply_faults(plan.faults, rng))
                try:
                    await asyncio.wait_for(work, timeout=240)
                finally:
                    # Bounded: a fault that hangs (a stuck group join, say) fails this cycle
                    # instead of the whole run; cancelling it still restores what it stopped.
                    await asyncio.wait_for(faults, timeout=300)
                await self._heal()
                outcome.events_accepted = len(accepted)
                await self._settle(accepted, item["id"], orders)
                await notify.settle(self.database)
                await holds.settle()
                await self._check(accepted, item, redemption_ids, outcome)
                outcome.problems += await orders.unsettled() + await orders.holdings()
                outcome.problems += await chaos_engagement.check(
                    self.database,
                    self.stack.redis_url,
                    sorted(set(accepted.values()) | {o.buyer for o in orders.orders}),
                )
                outcome.problems += await chaos_insights.check(
                    self.database, sorted(set(accepted.values())), redemption_ids
                )
                outcome.problems += await notify.check(self.database, self.notify_log)
                outcome.problems += await holds.check()
                outcome.orders = {**orders.summary(), **holds.summary()}
        except Exception as exc:  # anything unexpected is a failed cycle, with its seed
            outcome.problems.append(f"cycle aborted: {type(exc).__name__}: {exc}")
            await self._heal()
        finally:
            await producer.stop()
            outcome.seconds = time.monotonic() - started
        return outcome

    async def _prepare_redemptions(
        self, client: httpx.AsyncClient, plan: Plan, prefix: str
    ) -> tuple[dict[str, Any], list[str]]:
        item = await self._retry(
            client,
            "POST",
            f"{self.stack.url('exchange')}/v1/items",
            {
                "name": f"chaos item {prefix}",
                "category": "chaos",
                "type": "coupon",
                "points_price": 5,
                "stock": plan.stock,
            },
            ok=(201,),
        )
        redeemers = [f"{prefix}_r{i}" for i in range(plan.redeemers)]
        for user in redeemers:  # each can afford up to 12 units, so together they can oversell
            await self._retry(
                client,
                "POST",
                f"{self.stack.url('rewards_ledger')}/v1/accounts/{user}/credits",
                {"points": 60, "idempotency_key": f"chaos:{user}", "reason": "chaos"},
                ok=(200, 201),
            )
        return item, redeemers

    async def _retry(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        body: Any,
        ok: tuple[int, ...],
        headers: dict[str, str] | None = None,
        give_up_after: float = 120,
    ) -> Any:
        """Send until one of the `ok` statuses comes back (a crash or a 5xx means try again)."""
        deadline = time.monotonic() + give_up_after
        while True:
            try:
                response = await client.request(method, url, json=body, headers=headers or ADMIN)
                if response.status_code in ok:
                    return response.json()
                if response.status_code < 500 and response.status_code not in (404, 429):
                    raise AssertionError(f"{method} {url}: {response.status_code} {response.text}")
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{method} {url} not accepted within {give_up_after}s")
            await asyncio.sleep(0.3)

    async def _send_events(
        self,
        client: httpx.AsyncClient,
        producer: AIOKafkaProducer,
        plan: Plan,
        rng: random.Random,
        prefix: str,
        accepted: dict[str, str],
        outcome: Outcome,
    ) -> None:
        users = [f"{prefix}_u{i}" for i in range(20)]
        now = datetime.now(UTC)
        sent: list[dict[str, Any]] = []
        pace = 10.0 / plan.events  # spread the stream over about ten seconds
        i = 0
        while i < plan.events:
            if sent and rng.random() < plan.duplicate_ratio:
                batch = [rng.choice(sent)]  # a duplicate delivery of an accepted event
            else:
                size = min(rng.randint(1, 20), plan.events - i)
                batch = [
                    {
                        "event_id": uuid.uuid4().hex,
                        "source": SOURCE,
                        "user_id": rng.choice(users),
                        "action": ACTION,
                        # out of order: times scattered over the past hour, in no order
                        "occurred_at": (now - timedelta(seconds=rng.uniform(0, 3600))).isoformat(),
                        "attributes": {},
                    }
                    for _ in range(size)
                ]
                i += size
            if rng.random() < 0.5:
                for event in batch:
                    await self._produce(producer, event)
            else:
                body = batch[0] if len(batch) == 1 else {"events": batch}
                await self._retry(
                    client,
                    "POST",
                    f"{self.stack.url('behavior_sensor')}/v1/events",
                    body,
                    ok=(202,),
                    headers=INGEST,
                )
            outcome.sends += len(batch)
            for event in batch:
                accepted[behavior_id(event["source"], event["event_id"])] = event["user_id"]
            sent.extend(batch)
            await asyncio.sleep(pace * len(batch))

    async def _produce(self, producer: AIOKafkaProducer, event: dict[str, Any]) -> None:
        while True:
            try:
                await producer.send_and_wait(
                    "upstream.events", json.dumps(event).encode(), key=event["user_id"].encode()
                )
                return
            except KafkaError:
                await asyncio.sleep(0.5)

    async def _redeem(
        self,
        client: httpx.AsyncClient,
        item: dict[str, Any],
        redeemers: list[str],
        redemption_ids: list[str],
    ) -> None:
        async def one(user: str) -> None:
            for _ in range(20):
                key = uuid.uuid4().hex  # one attempt; its retries reuse the key
                deadline = time.monotonic() + 120
                while True:
                    try:
                        r = await client.post(
                            f"{self.stack.url('exchange')}/v1/redemptions",
                            json={"user_id": user, "item_id": item["id"], "idempotency_key": key},
                            headers=ADMIN,
                        )
                        if r.status_code < 500:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError("redemption not answered within 120s")
                    await asyncio.sleep(0.3)
                body = r.json()
                if r.status_code in (201, 202):
                    redemption_ids.append(body["id"])
                elif body.get("error") in ("out_of_stock", "insufficient_points"):
                    return
                await asyncio.sleep(0.4)

        await asyncio.gather(*(one(u) for u in redeemers))

    # -- faults ---------------------------------------------------------------------------

    async def _apply_faults(self, faults: tuple[Fault, ...], rng: random.Random) -> None:
        start = time.monotonic()
        running: list[asyncio.Task[None]] = []
        for fault in faults:
            await asyncio.sleep(max(0.0, start + fault.at - time.monotonic()))
            running.append(asyncio.create_task(self._apply(fault, rng)))
        await asyncio.gather(*running)

    async def _apply(self, fault: Fault, rng: random.Random) -> None:
        if fault.kind == "kill":
            with self.supervisor.lock:
                proc = self.stack.processes.get(fault.target)
                self.supervisor.hold_until[fault.target] = time.monotonic() + fault.duration
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
        elif fault.kind == "pg_terminate":
            await self._terminate_connections(fault.target)
        elif fault.kind == "broker_pause":
            self.broker.signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(fault.duration)
            finally:
                self.broker.signal(signal.SIGCONT)
        elif fault.kind == "scale":
            replica = 1 + max(await self._replicas_once_running(fault.target))
            name = await asyncio.to_thread(self.supervisor.expect, fault.target, replica, "worker")
            await asyncio.sleep(fault.duration)
            sig = signal.SIGKILL if fault.hard else signal.SIGTERM
            await asyncio.to_thread(self.supervisor.retire, name, sig)
        elif fault.kind == "replay":
            await self._replay(fault.target)

    async def _replicas_once_running(self, service: str) -> list[int]:
        """The replica numbers of `service`, waiting while a replay has them all stopped."""
        deadline = time.monotonic() + 300
        while True:
            replicas = [
                spec[1] for spec in list(self.supervisor.expected.values()) if spec[0] == service
            ]
            if replicas or time.monotonic() > deadline:
                return replicas or [0]
            await asyncio.sleep(0.2)

    async def _terminate_connections(self, target: str) -> None:
        names = [f"jifen_{s}" for s in (SERVICES if target == "all" else (target,))]
        conn = await asyncpg.connect(**asyncpg_kwargs(database_url(self.database, "postgres")))
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = ANY($1::text[]) AND pid <> pg_backend_pid()",
                names,
            )
        finally:
            await conn.close()

    async def _replay(self, service: str) -> None:
        """Stop every process of the group, move its offsets to the start, start them again."""
        group = GROUP_OF[service]
        members = [
            (name, spec)
            for name, spec in list(self.supervisor.expected.items())
            if spec[0] == service
        ]
        for name, _ in members:
            await asyncio.to_thread(self.supervisor.retire, name, signal.SIGTERM)
        try:
            await reset_to_earliest(self.bootstrap, group, CONSUMER_GROUPS[group])
        finally:
            for _, (svc, replica, role) in members:
                await asyncio.to_thread(self.supervisor.expect, svc, replica, role)

    async def _heal(self) -> None:
        self.broker.signal(signal.SIGCONT)
        for name, spec in list(self.supervisor.expected.items()):
            if spec[1] > 0:
                await asyncio.to_thread(self.supervisor.retire, name, signal.SIGTERM)
        self.supervisor.hold_until.clear()
        deadline = time.monotonic() + 180
        while True:  # a failpoint may kill a service again while it starts; keep at it
            try:
                for service in SERVICES:
                    await asyncio.to_thread(self.supervisor.expect, service)
                await asyncio.to_thread(self.stack.wait_ready, 60, tuple(SERVICES))
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    # -- settle and check -----------------------------------------------------------------

    async def _settle(self, accepted: dict[str, str], item_id: str, orders: OrderFlow) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            await orders.release()  # what was credited pending since the last sweep
            if await orders.unsettled():
                await asyncio.sleep(0.5)
                continue
            credited = await self._credited(list(set(accepted.values())))
            unsettled = await self._scalar(
                "jifen_exchange",
                "SELECT count(*) FROM redemptions WHERE item_id = $1 "
                "AND status IN ('pending', 'cancelling')",
                item_id,
            )
            if set(accepted) <= set(credited) and unsettled == 0:
                break
            await asyncio.sleep(0.5)
        await drain(self.database, self.bootstrap, timeout=60)

    async def _check(
        self,
        accepted: dict[str, str],
        item: dict[str, Any],
        redemption_ids: list[str],
        outcome: Outcome,
    ) -> None:
        credited = await self._credited(list(set(accepted.values())))
        lost = [b for b in accepted if b not in credited]
        twice = {b: n for b, n in credited.items() if n > 1}
        strangers = [b for b in credited if b not in accepted]
        if lost:
            outcome.problems.append(f"{len(lost)} accepted events never credited, e.g. {lost[:3]}")
        if twice:
            outcome.problems.append(
                f"{len(twice)} events credited more than once: {list(twice.items())[:3]}"
            )
        if strangers:
            outcome.problems.append(f"{len(strangers)} credits for events never sent")
        negative = await self._scalar(
            "jifen_rewards_ledger",
            "SELECT (SELECT count(*) FROM accounts WHERE balance < 0) + "
            "(SELECT count(*) FROM lots WHERE remaining < 0 OR remaining > points)",
        )
        if negative:
            outcome.problems.append(f"{negative} negative balances or lots")
        rows = await self._rows(
            "jifen_exchange",
            "SELECT id, status, points, quantity, holds_stock FROM redemptions WHERE item_id = $1",
            item["id"],
        )
        stock = await self._scalar(
            "jifen_exchange", "SELECT stock FROM items WHERE id = $1", item["id"]
        )
        held = sum(r["quantity"] for r in rows if r["holds_stock"])
        completed = [r for r in rows if r["status"] == "completed"]
        outcome.redemptions = {}
        for r in rows:
            outcome.redemptions[r["status"]] = outcome.redemptions.get(r["status"], 0) + 1
        if stock + held != item["stock"] or stock < 0:
            outcome.problems.append(
                f"stock {stock} + held {held} != initial {item['stock']} (oversold or leaked)"
            )
        if sum(r["quantity"] for r in completed) > item["stock"]:
            outcome.problems.append("more completed than the initial stock: oversold")
        unsettled = [r["id"] for r in rows if r["status"] in ("pending", "cancelling")]
        if unsettled:
            outcome.problems.append(f"{len(unsettled)} redemptions never settled")
        missing = set(redemption_ids) - {r["id"] for r in rows}
        if missing:
            outcome.problems.append(f"{len(missing)} acknowledged redemptions not found")
        debits = {
            r["reference"]: (int(r["net"]), int(r["debits"]))
            for r in await self._rows(
                "jifen_rewards_ledger",
                "SELECT reference, -sum(amount) AS net, "
                "count(*) FILTER (WHERE kind = 'debit') AS debits FROM journal_entries "
                "WHERE kind IN ('debit', 'refund') AND reference = ANY($1::text[]) "
                "GROUP BY reference",
                [f"redemption:{r['id']}" for r in rows],
            )
        }
        for r in rows:
            net, count = debits.get(f"redemption:{r['id']}", (0, 0))
            want = r["points"] if r["status"] == "completed" else 0
            if net != want or count > 1:
                outcome.problems.append(
                    f"redemption {r['id']} ({r['status']}): net debit {net}, {count} debits; "
                    f"expected {want}"
                )
        async with httpx.AsyncClient(headers=ADMIN, timeout=60) as client:
            for service in ("rewards_ledger", "exchange"):
                report = (await client.get(f"{self.stack.url(service)}/v1/reconciliation")).json()
                if not report.get("ok"):
                    outcome.problems.append(
                        f"{service} reconciliation: {json.dumps(report['violations'])[:500]}"
                    )

    async def _credited(self, users: list[str]) -> dict[str, int]:
        rows = await self._rows(
            "jifen_rewards_ledger",
            "SELECT reference, count(*) AS n FROM journal_entries "
            "WHERE kind = 'credit' AND user_id = ANY($1::text[]) GROUP BY reference",
            users,
        )
        return {r["reference"]: int(r["n"]) for r in rows}

    async def _rows(self, db: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(**asyncpg_kwargs(database_url(self.database, db)))
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def _scalar(self, db: str, sql: str, *args: Any) -> int:
        rows = await self._rows(db, sql, *args)
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0


async def reset_to_earliest(
    bootstrap: str, group: str, topics: tuple[str, ...], attempts: int = 5
) -> None:
    """Move a consumer group's committed offsets to the start of its topics (its members are
    stopped): delete the group, then commit the beginning offsets into it, without joining.

    It used to join the group alone and commit as its only member, the way
    `kafka-consumer-groups --reset-offsets` wants an inactive group; in chaos run five
    (seed 582090) that join hit the embedded broker's stuck-group state (see
    `shared.messaging.embedded_broker.rebuild_group`) and never completed. Deleting needs no join, and clears
    that state. Real Kafka refuses to delete a group until its killed members' sessions have
    expired; attempts are retried.
    """
    for attempt in range(1, attempts + 1):
        try:
            async with asyncio.timeout(45):
                async with group_admin(bootstrap, group) as (admin, reader):
                    partitions = await topic_partitions(admin, topics)
                    with contextlib.suppress(GroupIdNotFound):
                        await delete_group(admin, group)
                    reader.assign(partitions)
                    await reader.commit(await reader.beginning_offsets(partitions))
            return
        except (TimeoutError, KafkaError) as exc:
            if attempt == attempts:
                raise TimeoutError(f"could not reset {group}: {exc!r}") from exc
            await asyncio.sleep(5)


def run_cycles(env: Environment, plans: list[Plan], on_result: Any = None) -> list[Outcome]:
    outcomes = []
    for plan in plans:
        outcome = asyncio.run(env.cycle(plan))
        outcomes.append(outcome)
        if on_result is not None:
            on_result(outcome, env)
    return outcomes


def scratch_environment(scratch: Path, base_port: int) -> tuple[Environment, Any]:
    """A fresh embedded PostgreSQL, broker and stack under `scratch`; returns (env, cleanup)."""
    from services.devstack import free_port, start_embedded_postgres, stop_embedded_postgres

    database = start_embedded_postgres(scratch / "postgres")
    broker = EmbeddedBroker(port=free_port())
    bootstrap = broker.start(log_path=scratch / "broker.log")
    stack = Stack(
        database_url=database,
        kafka_bootstrap=bootstrap,
        base_port=base_port,
        env={**CHAOS_ENV, "JIFEN_LOG_PATH": str(scratch / "notifications.log")},
        log_dir=scratch / "logs",
    )
    env = Environment(database, broker, stack)

    def cleanup() -> None:
        with contextlib.suppress(Exception):
            env.stop()
        broker.signal(signal.SIGCONT)
        broker.stop()
        stop_embedded_postgres(scratch / "postgres")  # only this one (a test session's stays)

    return env, cleanup


__all__ = ["CONSUMERS", "Environment", "Outcome", "run_cycles", "scratch_environment"]
