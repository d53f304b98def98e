"""Exchange use cases: the catalog, the redemption saga, cancel and refund, and recovery.

A redemption is a small saga over two services. Step one reserves stock (and the user's
per-user limit) in the exchange's database and records the redemption as `pending`. Step two
debits the ledger over HTTP with an idempotency key derived from the redemption id. Step
three issues the reward and marks the redemption `completed`, or releases the reservation
and marks it `failed`. Whoever finishes a redemption (the request itself or the recovery
loop) does so with a conditional update, so exactly one of them wins. When the ledger gives
no definite answer the redemption stays `pending`; the recovery loop asks again with the same
key and, past a deadline, compensates instead: it refunds or voids the debit at the ledger
and only then releases the stock. Cancellation is the mirror image (`cancelling` until the
ledger confirms the refund, then `cancelled`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange import domain
from services.exchange import repository as repo
from services.exchange.ledger_client import Done, LedgerClient, Outcome, Refused, Unreachable
from services.exchange.models import messaging
from services.exchange.settings import Settings
from shared.auth import Principal
from shared.batching import GroupCommit
from shared.db import Database
from shared.errors import DomainError, NotFound
from shared.events import EXCHANGE_EVENTS, ExchangeEvent
from shared.failpoints import failpoint
from shared.messaging import OutgoingEvent, add_to_outbox
from shared.metrics import REDEMPTION_BATCH_SIZE, REDEMPTIONS, REDEMPTIONS_UNCONFIRMED

log = logging.getLogger(__name__)

LEDGER_BATCH = 500  # debits per call to the ledger (its limit is 1000)


@dataclass(frozen=True)
class RedeemRequest:
    user_id: str
    item_id: str
    quantity: int
    key: str
    shipping_address: str | None


# (redemption view, HTTP status), or the error to raise for that caller.
RedeemAnswer = tuple[dict[str, Any], int] | DomainError


@dataclass(frozen=True)
class Finish:
    """Move one redemption out of `expected`: write `values`, emit `event_type`, count it
    under `outcome`; `release` gives back what it holds, `reward` issues the reward.
    `row` is the redemption as its finisher last read it (for what never changes: user,
    item, quantity, address); whether it is still `expected` is decided under its lock."""

    row: Any
    expected: str
    event_type: str
    outcome: str
    values: dict[str, Any]
    release: bool = False
    reward: bool = False

    @property
    def redemption_id(self) -> str:
        return str(self.row.id)


def debit_key(redemption_id: str) -> str:
    """The ledger idempotency key of a redemption's debit (its refund is keyed by the same)."""
    return f"exchange:{redemption_id}"


def item_view(row: Mapping[str, Any]) -> dict[str, Any]:
    item = dict(row)
    period, quantity = item.pop("limit_period"), item.pop("limit_quantity")
    item["per_user_limit"] = {"period": period, "quantity": quantity} if period else None
    item["available"] = (
        domain.unavailable_reason(
            item["active"], item["starts_at"], item["ends_at"], datetime.now(UTC)
        )
        is None
    )
    return item


def redemption_view(row: Any) -> dict[str, Any]:
    r = row._mapping
    return {
        "id": r["id"],
        "user_id": r["user_id"],
        "idempotency_key": r["idempotency_key"],
        "item_id": r["item_id"],
        "item_name": r["item_name"],
        "item_type": r["item_type"],
        "quantity": r["quantity"],
        "points": r["points"],
        "status": r["status"],
        "failure": (
            {"code": r["failure_code"], "message": r["failure_message"]}
            if r["failure_code"]
            else None
        ),
        "compensated": r["compensated"],
        "balance_after": r["balance_after"],
        "ledger_entry_id": r["ledger_entry_id"],
        "refund_entry_id": r["refund_entry_id"],
        "reward": r["reward"],
        "fulfilment": (
            {
                "status": r["fulfilment_status"],
                "shipping_address": r["shipping_address"],
                "carrier": r["carrier"],
                "tracking_number": r["tracking_number"],
            }
            if r["item_type"] == "physical"
            else None
        ),
        "cancel_reason": r["cancel_reason"],
        "cancelled_by": r["cancelled_by"],
        "created_at": r["created_at"],
        "updated_at": r["updated_at"],
    }


async def _emit_many(session: AsyncSession, rows: list[tuple[Any, str]]) -> None:
    """Queue one exchange.events message per (redemption row, event type)."""
    events = []
    now = datetime.now(UTC)
    for row, event_type in rows:
        r = row._mapping
        event = ExchangeEvent(
            type=event_type,  # type: ignore[arg-type]
            redemption_id=r["id"],
            user_id=r["user_id"],
            item_id=r["item_id"],
            item_type=r["item_type"],
            quantity=r["quantity"],
            points=r["points"],
            status=r["status"],
            failure_code=r["failure_code"],
            compensated=r["compensated"],
            fulfilment_status=r["fulfilment_status"],
            reward=r["reward"],
            occurred_at=now,
        )
        events.append(OutgoingEvent(EXCHANGE_EVENTS, r["user_id"], event.model_dump_json()))
    if events:
        await add_to_outbox(session, messaging.outbox, events)


# -- catalog ---------------------------------------------------------------------------


def _item_columns(fields: dict[str, Any]) -> dict[str, Any]:
    """Map the API's item fields onto columns (per_user_limit is two columns)."""
    values = dict(fields)
    if "per_user_limit" in values:
        limit = values.pop("per_user_limit")
        values["limit_period"] = limit["period"] if limit else None
        values["limit_quantity"] = limit["quantity"] if limit else None
    return values


async def create_item(session: AsyncSession, fields: dict[str, Any]) -> dict[str, Any]:
    values = _item_columns(fields)
    values["id"] = str(uuid.uuid4())
    values["stock_total"] = values["stock"]
    return item_view(await repo.insert_item(session, values))


async def update_item(
    session: AsyncSession, item_id: str, fields: dict[str, Any]
) -> dict[str, Any]:
    current = await repo.get_item(session, item_id, lock=True)
    if current is None:
        raise NotFound("item", item_id)
    values = _item_columns(fields)
    merged = {**dict(current._mapping), **values}
    if merged["type"] == "vip" and not merged["vip_days"]:
        raise DomainError("validation_error", "a vip item needs vip_days", status=422)
    if merged["starts_at"] and merged["ends_at"] and merged["ends_at"] <= merged["starts_at"]:
        raise DomainError("validation_error", "ends_at must be after starts_at", status=422)
    if "stock" in values:
        # Setting the shelf count supplies (or withdraws) units; the total follows the change.
        values["stock_total"] = current.stock_total + (values["stock"] - current.stock)
    return item_view((await repo.update_item(session, item_id, values))._mapping)


class Exchange:
    """Redemption saga, cancellation and the recovery loop's step."""

    def __init__(self, settings: Settings, db: Database, ledger: LedgerClient) -> None:
        self.settings = settings
        self.db = db
        self.ledger = ledger
        # A request's own ledger call must finish before the recovery loop may touch it.
        self.lease = timedelta(seconds=settings.ledger_timeout_s * 2 + settings.recovery_interval_s)
        self.batcher: GroupCommit[RedeemRequest, tuple[dict[str, Any], int]] = GroupCommit(
            self.redeem_many,
            max_size=settings.redeem_batch_max,
            in_flight=settings.redeem_batches_in_flight,
            linger=settings.redeem_batch_linger_ms / 1000,
        )

    # -- redeem ---------------------------------------------------------------------

    async def redeem(
        self,
        user_id: str,
        item_id: str,
        quantity: int,
        key: str,
        shipping_address: str | None,
    ) -> tuple[dict[str, Any], int]:
        """Returns (redemption, HTTP status); raises RedemptionRefused for a clean no.

        Concurrent requests are grouped (`shared/batching.py`): a lone request goes through at
        once; under load, everything that arrived meanwhile goes together through one
        reservation transaction, one batch debit at the ledger and one completion
        transaction, so a hot item's row lock is taken once per batch, not once per caller.
        """
        return await self.batcher.submit(
            RedeemRequest(user_id, item_id, quantity, key, shipping_address)
        )

    async def redeem_many(self, requests: list[RedeemRequest]) -> list[RedeemAnswer]:
        """The saga for a batch of requests; one answer (or error to raise) per request."""
        REDEMPTION_BATCH_SIZE.observe(len(requests))
        now = datetime.now(UTC)
        # The same (user, key) twice in one batch is worked once; the later copies replay it.
        first: dict[tuple[str, str], int] = {}
        for i, r in enumerate(requests):
            first.setdefault((r.user_id, r.key), i)
        unique = [r for i, r in enumerate(requests) if first[(r.user_id, r.key)] == i]
        async with self.db.transaction() as session:
            reserved, items = await self._reserve_many(session, unique, now)
        fresh = [
            row
            for row, replayed in (o for o in reserved if isinstance(o, tuple))
            if not replayed and row.status == "pending"
        ]
        settled = {row.id: row for row in await self._settle_debits(fresh, items)}
        final: dict[tuple[str, str], Any] = {}
        for r, outcome in zip(unique, reserved, strict=True):
            final[(r.user_id, r.key)] = (
                outcome
                if isinstance(outcome, DomainError)
                else (settled.get(outcome[0].id, outcome[0]), outcome[1])
            )
        answers: list[RedeemAnswer] = []
        for i, r in enumerate(requests):
            outcome = final[(r.user_id, r.key)]
            if isinstance(outcome, DomainError):
                answers.append(outcome)
                continue
            row, replayed = outcome
            try:
                if first[(r.user_id, r.key)] != i:
                    row, replayed = self._same_request(row, r.item_id, r.quantity), True
                answers.append(self._answer(row, replayed))
            except DomainError as refusal:
                answers.append(refusal)
        return answers

    async def _reserve_many(
        self, session: AsyncSession, requests: list[RedeemRequest], now: datetime
    ) -> tuple[list[tuple[Any, bool] | DomainError], dict[str, Any]]:
        """Step one for a batch: (redemption, replayed) or the error, per request, and the
        items as read.

        Every request for an item that exists is inserted as a new redemption holding stock;
        a key already used makes its insert a no-op, and that request replays the redemption
        the key belongs to. Then refused ones are flipped back. Taking the stock comes last
        (one conditional update per item, in item order), so the item's row lock, which every
        redeemer of a hot item queues on, is held only until the commit.
        """
        keys = [(r.user_id, r.key) for r in requests]
        items = await repo.get_items(session, [r.item_id for r in requests])
        out: list[tuple[Any, bool] | DomainError | None] = [None] * len(requests)
        new: dict[int, dict[str, Any]] = {}
        for i, r in enumerate(requests):
            if (item := items.get(r.item_id)) is not None:
                new[i] = self._new_redemption(r, item, now)
        inserted = await repo.insert_redemptions(session, list(new.values()))
        # The rest: keys used before (or by a concurrent request that won), or unknown items.
        others = [i for i in range(len(requests)) if i not in new or new[i]["id"] not in inserted]
        existing = await repo.redemptions_by_keys(session, [keys[i] for i in others])
        for i in others:
            if (done := existing.get(keys[i])) is not None:
                out[i] = self._replay_of(done, requests[i])
            elif i not in new:
                out[i] = NotFound("item", requests[i].item_id)
            else:
                raise RuntimeError(f"redemption key {keys[i]} neither inserted nor found")
        rows = [inserted[row["id"]] for row in new.values() if row["id"] in inserted]

        failures: dict[str, tuple[str, str]] = {}
        for row in rows:
            if (refusal := self._refusal(items[row.item_id], row.quantity, now)) is not None:
                failures[row.id] = refusal
        # Per-user limits, in a fixed order so that concurrent batches never deadlock on them.
        limited = sorted(
            (row for row in rows if row.limit_period_key and row.id not in failures),
            key=lambda row: (row.user_id, row.item_id, row.limit_period_key, row.id),
        )
        for row in limited:
            item = items[row.item_id]
            if not await repo.count_against_limit(
                session,
                row.user_id,
                row.item_id,
                row.limit_period_key,
                row.quantity,
                item.limit_quantity,
            ):
                failures[row.id] = self._limit_reached(item)
        by_item: dict[str, list[Any]] = {}
        for row in rows:
            if row.id not in failures:
                by_item.setdefault(row.item_id, []).append(row)
        sold_out: list[Any] = []
        for item_id in sorted(by_item):
            wanted = by_item[item_id]
            if await repo.reserve_stock(session, item_id, sum(r.quantity for r in wanted)):
                continue
            # Not enough for everyone: serve the batch in arrival order while units last.
            left = (await repo.get_item(session, item_id, lock=True)).stock
            served = 0
            for row in wanted:
                if row.quantity <= left:
                    left -= row.quantity
                    served += row.quantity
                else:
                    failures[row.id] = (
                        "out_of_stock",
                        f"{row.item_name} has fewer than {row.quantity} left",
                    )
                    sold_out.append(row)
            if served and not await repo.reserve_stock(session, item_id, served):
                raise RuntimeError(f"stock of {item_id} moved while locked")
        await self._release_limits(session, sold_out)
        # Refused before taking any stock: flipped to failed, no longer holding anything.
        refused = await repo.finish_redemptions(
            session,
            [
                {
                    "id": row.id,
                    "expected": "pending",
                    "status": "failed",
                    "release": True,
                    "failure_code": failures[row.id][0],
                    "failure_message": failures[row.id][1],
                }
                for row in rows
                if row.id in failures
            ],
        )
        await _emit_many(session, [(row, "redemption.failed") for row in refused.values()])
        for row in refused.values():
            REDEMPTIONS.labels(row.failure_code).inc()
        by_id = {row.id: refused.get(row.id, row) for row in rows}
        for i, row in new.items():
            if row["id"] in by_id:
                out[i] = (by_id[row["id"]], False)
        return [o for o in out if o is not None], items

    def _new_redemption(self, r: RedeemRequest, item: Any, now: datetime) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "user_id": r.user_id,
            "idempotency_key": r.key,
            "item_id": item.id,
            "item_type": item.type,
            "item_name": item.name,
            "quantity": r.quantity,
            "points": item.points_price * r.quantity,
            "status": "pending",
            "holds_stock": True,
            "limit_period_key": (
                domain.limit_period_key(item.limit_period, now, self.settings.tz)
                if item.limit_period
                else None
            ),
            "shipping_address": r.shipping_address,
            "next_attempt_at": now + self.lease,
        }

    def _replay_of(self, existing: Any, r: RedeemRequest) -> tuple[Any, bool] | DomainError:
        try:
            return self._same_request(existing, r.item_id, r.quantity), True
        except DomainError as reused:
            return reused

    @staticmethod
    def _same_request(existing: Any, item_id: str, quantity: int) -> Any:
        if existing.item_id != item_id or existing.quantity != quantity:
            raise DomainError(
                "idempotency_key_reused",
                "this idempotency_key was already used for a different redemption",
                redemption_id=existing.id,
            )
        return existing

    @staticmethod
    def _refusal(item: Any, quantity: int, now: datetime) -> tuple[str, str] | None:
        reason = domain.unavailable_reason(item.active, item.starts_at, item.ends_at, now)
        if reason is not None:
            return "item_inactive", reason
        if item.limit_quantity is not None and quantity > item.limit_quantity:
            return Exchange._limit_reached(item)
        return None

    @staticmethod
    def _limit_reached(item: Any) -> tuple[str, str]:
        per = {"day": "per day", "month": "per month", "lifetime": "in total"}[item.limit_period]
        return "limit_reached", f"{item.name} is limited to {item.limit_quantity} {per} per user"

    def _answer(self, row: Any, replayed: bool) -> tuple[dict[str, Any], int]:
        if row.status == "failed":
            raise domain.RedemptionRefused(
                row.failure_code,
                row.failure_message or row.failure_code,
                redemption_id=row.id,
                compensated=row.compensated,
            )
        status = {"pending": 202, "completed": 200 if replayed else 201}.get(row.status, 200)
        return redemption_view(row), status

    async def _settle_debits(
        self, rows: list[Any], items: Mapping[str, Any] | None = None
    ) -> list[Any]:
        """Step two for pending redemptions: debit each at the ledger (batched calls), then
        complete or fail them in one transaction. A debit without a definite answer leaves
        its redemption pending for the recovery loop. Returns the rows as they now are.
        `items` may hold their items as already read (for the rewards)."""
        if not rows:
            return []
        debits = [
            {
                "user_id": row.user_id,
                "points": row.points,
                "idempotency_key": debit_key(row.id),
                "reason": f"redeemed {row.quantity} x {row.item_name}",
                "reference": f"redemption:{row.id}",
            }
            for row in rows
        ]
        outcomes: list[Outcome] = []
        for start in range(0, len(debits), LEDGER_BATCH):
            outcomes += await self.ledger.debit_many(debits[start : start + LEDGER_BATCH])
        failpoint("exchange.after_debit")
        finishes = []
        for row, outcome in zip(rows, outcomes, strict=True):
            if isinstance(outcome, Done):
                finishes.append(self._completion(row, outcome.body))
            elif isinstance(outcome, Refused) and outcome.code == "debit_voided":
                # The recovery loop compensated this redemption; it will (or did) fail it.
                finishes.append(self._failure(row, "ledger_unavailable", outcome.message, True))
            elif isinstance(outcome, Refused):
                finishes.append(self._failure(row, outcome.code, outcome.message, False))
            else:
                log.warning("debit of redemption %s unconfirmed: %s", row.id, outcome.reason)
                REDEMPTIONS_UNCONFIRMED.labels("debit").inc()
        finished = await self._finish_many(finishes, items)
        return [finished.get(row.id, row) for row in rows]

    @staticmethod
    def _completion(row: Any, debit: dict[str, Any]) -> Finish:
        values = {
            "status": "completed",
            "ledger_entry_id": debit["entry_id"],
            "balance_after": debit["balance_after"],
        }
        return Finish(row, "pending", "redemption.completed", "completed", values, reward=True)

    @staticmethod
    def _failure(row: Any, code: str, message: str, compensated: bool) -> Finish:
        values = {
            "status": "failed",
            "failure_code": code,
            "failure_message": message,
            "compensated": compensated,
        }
        return Finish(row, "pending", "redemption.failed", code, values, release=True)

    async def _finish_many(
        self, finishes: list[Finish], items: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Move redemptions out of their `expected` state (pending or cancelling), once each,
        in one transaction; returns every named redemption as it now is, by id.

        The request and the recovery loop may both try. One statement locks the rows and
        moves only those still in the expected state, so exactly one finisher releases a
        reservation or issues a reward. Rewards are drawn up beforehand and kept only for
        the rows that moved (a membership is extended only then, under its own lock).
        """
        if not finishes:
            return {}
        now = datetime.now(UTC)
        rewarding = [f.row for f in finishes if f.reward]
        known = dict(items or {})
        async with self.db.transaction() as session:
            missing = {row.item_id for row in rewarding} - known.keys()
            known.update(await repo.get_items(session, list(missing)))
            rewards, coupons = self._draw_rewards(rewarding, known, now)
            moves = []
            for f in finishes:
                move = {**f.values, "id": f.redemption_id, "expected": f.expected}
                move["release"] = f.release
                if f.reward and (reward := rewards.get(f.redemption_id)) is not None:
                    move["reward"] = reward
                    if f.row.item_type == "physical":
                        move["fulfilment_status"] = "pending"
                moves.append(move)
            written = await repo.finish_redemptions(session, moves)
            due = [(f, written[f.redemption_id]) for f in finishes if f.redemption_id in written]
            await self._release_many(
                session, [row for f, row in due if f.release and row.held_stock]
            )
            written.update(
                await self._extend_memberships(
                    session,
                    [row for f, row in due if f.reward and row.item_type == "vip"],
                    known,
                    now,
                )
            )
            await repo.insert_coupons(
                session, [c for f, row in due if f.reward for c in coupons.get(row.id, [])]
            )
            await _emit_many(session, [(written[f.redemption_id], f.event_type) for f, _ in due])
            # The ones another finisher got to first, as they are now.
            current = await repo.redemptions_by_ids(
                session, [f.redemption_id for f in finishes if f.redemption_id not in written]
            )
        for f, _ in due:
            REDEMPTIONS.labels(f.outcome).inc()
        return {**current, **written}

    async def _finish(self, finish: Finish) -> Any:
        return (await self._finish_many([finish]))[finish.redemption_id]

    async def _release_many(self, session: AsyncSession, rows: list[Any]) -> None:
        """Give back the units (and per-user limit counts) these redemptions held: counters
        first, then items, each in a fixed order, as reserving takes them."""
        await self._release_limits(session, rows)
        units: dict[str, int] = {}
        for row in rows:
            units[row.item_id] = units.get(row.item_id, 0) + row.quantity
        for item_id in sorted(units):
            await repo.release_stock(session, item_id, units[item_id])

    @staticmethod
    async def _release_limits(session: AsyncSession, rows: list[Any]) -> None:
        for row in sorted(
            (r for r in rows if r.limit_period_key is not None),
            key=lambda r: (r.user_id, r.item_id, r.limit_period_key, r.id),
        ):
            await repo.release_limit(
                session, row.user_id, row.item_id, row.limit_period_key, row.quantity
            )

    def _draw_rewards(
        self, rows: list[Any], items: Mapping[str, Any], now: datetime
    ) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
        """The reward of each redemption about to complete, by redemption id, and the coupons
        to write for it. A membership's reward depends on the membership, so it is left to
        `_extend_memberships`."""
        rewards: dict[str, dict[str, Any]] = {}
        coupons: dict[str, list[dict[str, Any]]] = {}
        expires_at = now + timedelta(days=self.settings.coupon_validity_days)
        for row in rows:
            item = items[row.item_id]
            if row.item_type == "coupon":
                codes = [domain.new_coupon_code() for _ in range(row.quantity)]
                coupons[row.id] = [
                    {
                        "code": code,
                        "redemption_id": row.id,
                        "user_id": row.user_id,
                        "item_id": row.item_id,
                        "value_cents": item.coupon_value_cents,
                        "expires_at": expires_at,
                    }
                    for code in codes
                ]
                rewards[row.id] = {
                    "type": "coupon",
                    "codes": codes,
                    "value_cents": item.coupon_value_cents,
                    "expires_at": expires_at.isoformat(),
                }
            elif row.item_type == "physical":
                rewards[row.id] = {"type": "physical", "shipping_address": row.shipping_address}
            elif row.item_type != "vip":
                rewards[row.id] = {"type": "virtual"}
        return rewards, coupons

    async def _extend_memberships(
        self, session: AsyncSession, rows: list[Any], items: Mapping[str, Any], now: datetime
    ) -> dict[str, Any]:
        """Extend the memberships of completed VIP redemptions (locked in user order) and
        write their rewards; returns those redemptions by id."""
        rewards: dict[str, dict[str, Any]] = {}
        for row in sorted(rows, key=lambda r: (r.user_id, r.id)):
            days = (items[row.item_id].vip_days or 0) * row.quantity
            current = await repo.lock_membership(session, row.user_id)
            until = domain.extended_vip(current, now, days)
            await repo.set_membership(session, row.user_id, until)
            rewards[row.id] = {"type": "vip", "days_added": days, "vip_until": until.isoformat()}
        return await repo.set_rewards(session, rewards)

    # -- cancel -----------------------------------------------------------------------

    async def cancel(
        self, redemption_id: str, caller: Principal, reason: str
    ) -> tuple[dict[str, Any], int]:
        now = datetime.now(UTC)
        async with self.db.transaction() as session:
            row = await repo.get_redemption(session, redemption_id, lock=True)
            if row is None:
                raise NotFound("redemption", redemption_id)
            caller.require_user(row.user_id)
            if row.status in ("cancelling", "cancelled"):
                return redemption_view(row), 202 if row.status == "cancelling" else 200
            if row.status == "pending":
                raise DomainError(
                    "redemption_pending",
                    "this redemption is still being confirmed; try again in a moment",
                )
            if row.status == "failed":
                raise DomainError("not_cancellable", "a failed redemption has nothing to cancel")
            if not caller.is_admin and not (
                row.item_type == "physical" and row.fulfilment_status == "pending"
            ):
                raise DomainError(
                    "not_cancellable",
                    "you can cancel a physical item until it ships; for anything else ask support",
                )
            await self._revoke_reward(session, row, now)
            row = await repo.update_redemption(
                session,
                redemption_id,
                {
                    "status": "cancelling",
                    "cancel_reason": reason,
                    "cancelled_by": "admin" if caller.is_admin else "user",
                    "fulfilment_status": (
                        "cancelled" if row.item_type == "physical" else row.fulfilment_status
                    ),
                    "next_attempt_at": now + self.lease,
                },
            )
        row = await self._settle_refund(row)
        return redemption_view(row), 202 if row.status == "cancelling" else 200

    async def _revoke_reward(self, session: AsyncSession, row: Any, now: datetime) -> None:
        if row.item_type == "coupon":
            await repo.revoke_coupons(session, row.id)
        elif row.item_type == "vip":
            days = int((row.reward or {}).get("days_added", 0))
            current = await repo.lock_membership(session, row.user_id)
            if current is not None and days:
                await repo.set_membership(session, row.user_id, current - timedelta(days=days))

    async def _settle_refund(self, row: Any) -> Any:
        outcome = await self.ledger.refund(
            row.user_id,
            debit_key(row.id),
            reason=f"cancelled redemption of {row.quantity} x {row.item_name}",
            reference=f"redemption:{row.id}",
        )
        if isinstance(outcome, Done):
            return await self._finish_cancel(row, outcome.body.get("entry_id"))
        if isinstance(outcome, Refused):
            log.error("ledger refused the refund of redemption %s: %s", row.id, outcome)
        else:
            log.warning("refund of redemption %s unconfirmed: %s", row.id, outcome.reason)
            REDEMPTIONS_UNCONFIRMED.labels("refund").inc()
        return row

    async def _finish_cancel(self, row: Any, refund_entry_id: int | None) -> Any:
        values = {"status": "cancelled", "refund_entry_id": refund_entry_id}
        return await self._finish(
            Finish(
                row,
                "cancelling",
                "redemption.cancelled",
                "cancelled",
                values,
                release=True,
            )
        )

    # -- fulfilment -------------------------------------------------------------------

    async def advance_fulfilment(
        self,
        redemption_id: str,
        action: str,
        carrier: str | None = None,
        tracking_number: str | None = None,
    ) -> dict[str, Any]:
        async with self.db.transaction() as session:
            row = await repo.get_redemption(session, redemption_id, lock=True)
            if row is None:
                raise NotFound("redemption", redemption_id)
            if row.item_type != "physical" or row.status != "completed":
                done = "shipped" if action == "ship" else "delivered"
                raise DomainError(
                    "invalid_transition",
                    f"only a completed physical redemption can be {done}",
                    redemption_status=row.status,
                )
            target = domain.fulfilment_step(action, row.fulfilment_status)
            if target == row.fulfilment_status:
                return redemption_view(row)
            values: dict[str, Any] = {"fulfilment_status": target}
            if action == "ship":
                values.update(carrier=carrier, tracking_number=tracking_number)
            row = await repo.update_redemption(session, redemption_id, values)
            await _emit_many(session, [(row, f"redemption.{target}")])
        return redemption_view(row)

    # -- recovery ---------------------------------------------------------------------

    async def recover_once(self) -> int:
        """Finish every unfinished redemption that is due; returns how many were tried."""
        now = datetime.now(UTC)
        async with self.db.transaction() as session:
            rows = await repo.claim_unfinished(
                session, now, now + self.lease, self.settings.recovery_batch
            )
        if not rows:
            return 0
        gate = asyncio.Semaphore(16)

        async def settle(row: Any) -> None:
            async with gate:
                if row.status == "cancelling":
                    await self._settle_refund(row)
                else:
                    await self._compensate(row)

        overdue = (now - timedelta(seconds=self.settings.pending_deadline_s)).timestamp()
        retry = [r for r in rows if r.status == "pending" and r.created_at.timestamp() > overdue]
        others = [r for r in rows if r.status != "pending" or r.created_at.timestamp() <= overdue]
        await asyncio.gather(self._settle_debits(retry), *(settle(row) for row in others))
        return len(rows)

    async def _compensate(self, row: Any) -> Any:
        """Give up on a debit that stayed unconfirmed: refund it if it happened, void its key
        if it did not (so it can never land later), then release the reservation."""
        outcome: Outcome = await self.ledger.refund(
            row.user_id,
            debit_key(row.id),
            reason="redemption not confirmed in time; compensated",
            reference=f"redemption:{row.id}",
        )
        if isinstance(outcome, Done):
            log.warning("compensated redemption %s (%s)", row.id, outcome.body.get("status"))
            return await self._finish(
                self._failure(
                    row,
                    "ledger_unavailable",
                    "the points service did not confirm the debit in time; nothing was charged",
                    True,
                )
            )
        if isinstance(outcome, Unreachable):
            log.warning("cannot compensate redemption %s yet: %s", row.id, outcome.reason)
        else:
            log.error("ledger refused to compensate redemption %s: %s", row.id, outcome)
        return row

    # -- reads ------------------------------------------------------------------------

    async def quick_options(self, user_id: str) -> dict[str, Any]:
        outcome = await self.ledger.account(user_id)
        if not isinstance(outcome, Done):
            raise DomainError(
                "ledger_unavailable",
                "the points balance is unavailable right now; try again shortly",
                status=503,
            )
        account = outcome.body
        balance = int(account["balance"])
        expiring = int(account.get("expiring_within_7_days", 0))
        horizon = datetime.now(UTC) + timedelta(days=self.settings.quick_options_warning_days)
        first_expiry = next(
            (
                e["expires_at"]
                for e in account.get("expiring_soon", [])
                if datetime.fromisoformat(e["expires_at"]) <= horizon
            ),
            None,
        )
        now = datetime.now(UTC)
        async with self.db.transaction() as session:
            candidates = await repo.affordable_candidates(session, now, balance, 30)
            keys = [
                (c.id, domain.limit_period_key(c.limit_period, now, self.settings.tz))
                for c in candidates
                if c.limit_period
            ]
            used = await repo.used_quantities(session, user_id, keys)
        limit_keys = dict(keys)
        allowed = [
            item_view(c._mapping)
            for c in candidates
            if not c.limit_period or used.get((c.id, limit_keys[c.id]), 0) < c.limit_quantity
        ]
        options = []
        for offer in domain.quick_options(allowed, balance):
            warning = None
            if expiring:
                uses = min(expiring, offer.item["points_price"])
                warning = (
                    f"{expiring} of your points expire within "
                    f"{self.settings.quick_options_warning_days} days; "
                    f"redeeming this uses {uses} of them first"
                )
            options.append(
                {"item": offer.item, "balance_after": offer.balance_after, "warning": warning}
            )
        return {
            "user_id": user_id,
            "balance": balance,
            "expiring_within_7_days": expiring,
            "first_expiry_at": first_expiry,
            "options": options,
        }

    async def reconcile(self) -> dict[str, Any]:
        stuck_before = datetime.now(UTC) - timedelta(
            seconds=self.settings.pending_deadline_s * 2 + 600
        )
        async with self.db.snapshot() as session:
            counts, failures = await repo.run_reconciliation(session, stuck_before)
        return {
            "ok": not failures,
            "redemptions": counts,
            "checks": [*repo.RECONCILIATION_CHECKS, "nothing_unfinished_for_long"],
            "violations": [{"check": k, "rows": v} for k, v in failures.items()],
            "checked_at": datetime.now(UTC),
        }
