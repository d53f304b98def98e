"""The redemption saga forward: reserve stock and limits (step one), debit the ledger (step
two), complete or fail the redemption (step three), for a whole batch of requests at once."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange import domain
from services.exchange import repository as repo
from services.exchange.events import emit
from services.exchange.metrics import REDEMPTION_BATCH_SIZE, REDEMPTIONS, REDEMPTIONS_UNCONFIRMED
from services.exchange.repository import Redemption
from services.exchange.schemas import RedemptionOut
from services.exchange.service.finishing import Answer, Finish, Finishing, debit_key
from services.exchange.settings import Settings
from services.rewards_ledger.client import LedgerClient
from shared.batching import GroupCommit
from shared.client import Done, Outcome, Refused
from shared.db import Database
from shared.errors import DomainError, NotFound
from shared.failpoints import failpoint

log = logging.getLogger(__name__)

LEDGER_BATCH = 500  # debits per call to the ledger (its limit is 1000)


@dataclass(frozen=True)
class RedeemRequest:
    user_id: str
    item_id: str
    quantity: int
    key: str
    shipping_address: str | None


# A redemption request's answer, or the error to raise for that caller.
RedeemAnswer = Answer | DomainError
# Step one's word on one request: (redemption, replayed?) or the error for its caller.
Reserved = tuple[Redemption, bool] | DomainError
# Why a redemption is refused before it takes any stock, by redemption id: (code, message).
Failures = dict[str, tuple[str, str]]
Key = tuple[str, str]  # (user_id, idempotency key)


class Saga(Finishing):
    """Redeeming: requests grouped into batches, each batch reserved, debited and finished."""

    def __init__(self, settings: Settings, db: Database, ledger: LedgerClient) -> None:
        super().__init__(settings, db, ledger)
        self.batcher: GroupCommit[RedeemRequest, Answer] = GroupCommit(
            self.redeem_many,
            max_size=settings.redeem_batch_max,
            in_flight=settings.redeem_batches_in_flight,
            linger=settings.redeem_batch_linger_ms / 1000,
        )

    async def redeem(
        self,
        user_id: str,
        item_id: str,
        quantity: int,
        key: str,
        shipping_address: str | None,
    ) -> Answer:
        """Returns (redemption, outcome: created, replayed or pending); raises
        RedemptionRefused for a clean no.

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
        first: dict[Key, int] = {}
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
        final: dict[Key, Reserved] = {}
        for r, outcome in zip(unique, reserved, strict=True):
            final[(r.user_id, r.key)] = (
                outcome
                if isinstance(outcome, DomainError)
                else (settled.get(outcome[0].id, outcome[0]), outcome[1])
            )
        return [
            self._answer_request(r, final, first[(r.user_id, r.key)] != i)
            for i, r in enumerate(requests)
        ]

    def _answer_request(
        self, request: RedeemRequest, final: Mapping[Key, Reserved], copy: bool
    ) -> RedeemAnswer:
        """The answer for one request of the batch; a `copy` of an earlier request with the
        same key replays it (or is refused if it asked for something else)."""
        outcome = final[(request.user_id, request.key)]
        if isinstance(outcome, DomainError):
            return outcome
        row, replayed = outcome
        if copy:
            if (reused := domain.key_reused(row, request.item_id, request.quantity)) is not None:
                return reused
            replayed = True
        return self._answer(row, replayed)

    @staticmethod
    def _answer(row: Redemption, replayed: bool) -> RedeemAnswer:
        outcome = domain.redeem_outcome(row.status, replayed)
        if outcome is None:
            return domain.refused(row)
        return RedemptionOut.model_validate(row), outcome

    # -- step one: reserve ----------------------------------------------------------------

    async def _reserve_many(
        self, session: AsyncSession, requests: list[RedeemRequest], now: datetime
    ) -> tuple[list[Reserved], dict[str, Any]]:
        """Step one for a batch: (redemption, replayed) or the error, per request, and the
        items as read.

        Every request for an item that exists is inserted as a new redemption holding stock;
        a key already used makes its insert a no-op, and that request replays the redemption
        the key belongs to. Then refused ones are flipped back. Taking the stock comes last
        (one conditional update per item, in item order), so the item's row lock, which every
        redeemer of a hot item queues on, is held only until the commit.
        """
        items = await repo.get_items(session, [r.item_id for r in requests])
        new: dict[int, dict[str, Any]] = {}
        for i, r in enumerate(requests):
            if (item := items.get(r.item_id)) is not None:
                new[i] = self._new_redemption(r, item, now)
        inserted = await repo.insert_redemptions(session, list(new.values()))
        out = await self._replays(session, requests, new, inserted)
        rows = [inserted[row["id"]] for row in new.values() if row["id"] in inserted]

        failures = await self._refusals(session, rows, items, now)
        await self._count_limits(session, rows, items, failures)
        sold_out = await self._take_stock(session, rows, failures)
        await self._release_limits(session, sold_out)
        refused = await self._fail_refused(session, rows, failures)
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

    @staticmethod
    async def _replays(
        session: AsyncSession,
        requests: list[RedeemRequest],
        new: Mapping[int, dict[str, Any]],
        inserted: Mapping[str, Redemption],
    ) -> list[Reserved | None]:
        """The answers of the requests not inserted: keys used before (or by a concurrent
        request that won) replay their redemption; unknown items are not found. The inserted
        ones are left None."""
        keys = [(r.user_id, r.key) for r in requests]
        out: list[Reserved | None] = [None] * len(requests)
        others = [i for i in range(len(requests)) if i not in new or new[i]["id"] not in inserted]
        existing = await repo.redemptions_by_keys(session, [keys[i] for i in others])
        for i in others:
            if (done := existing.get(keys[i])) is not None:
                reused = domain.key_reused(done, requests[i].item_id, requests[i].quantity)
                out[i] = (done, True) if reused is None else reused
            elif i not in new:
                out[i] = NotFound("item", requests[i].item_id)
            else:
                raise RuntimeError(f"redemption key {keys[i]} neither inserted nor found")
        return out

    @staticmethod
    async def _refusals(
        session: AsyncSession, rows: list[Redemption], items: Mapping[str, Any], now: datetime
    ) -> Failures:
        """The new redemptions the item's own rules refuse (inactive, price, tier)."""
        failures: Failures = {}
        for row in rows:
            if (refusal := domain.refusal(items[row.item_id], row.quantity, now)) is not None:
                failures[row.id] = refusal
        # Tier-only items: the member's tier from the local read model (no remote call).
        tiered = [r for r in rows if r.id not in failures and items[r.item_id].min_tier]
        if tiered:
            members, required = await repo.tier_levels(
                session,
                [r.user_id for r in tiered],
                [items[r.item_id].min_tier for r in tiered],
            )
            for row in tiered:
                item = items[row.item_id]
                refusal = domain.tier_refusal(
                    item, members.get(row.user_id, 0), required.get(item.min_tier)
                )
                if refusal is not None:
                    failures[row.id] = refusal
        return failures

    @staticmethod
    async def _count_limits(
        session: AsyncSession,
        rows: list[Redemption],
        items: Mapping[str, Any],
        failures: Failures,
    ) -> None:
        """Count each new redemption against its per-user limit; adds those over it to
        `failures`."""
        # Per-user limits, in a fixed order so that concurrent batches never deadlock on them.
        limited = sorted(
            ((r, key) for r in rows if (key := r.limit_period_key) and r.id not in failures),
            key=lambda c: (c[0].user_id, c[0].item_id, c[1], c[0].id),
        )
        for row, key in limited:
            item = items[row.item_id]
            if not await repo.count_against_limit(
                session, row.user_id, row.item_id, key, row.quantity, item.limit_quantity
            ):
                failures[row.id] = domain.limit_reached(item)

    @staticmethod
    async def _take_stock(
        session: AsyncSession, rows: list[Redemption], failures: Failures
    ) -> list[Redemption]:
        """Take the units of every redemption not refused, item by item in id order; adds
        those left without units to `failures` and returns them (their limits to give back)."""
        by_item: dict[str, list[Redemption]] = {}
        for row in rows:
            if row.id not in failures:
                by_item.setdefault(row.item_id, []).append(row)
        sold_out: list[Redemption] = []
        for item_id in sorted(by_item):
            wanted = by_item[item_id]
            if await repo.reserve_stock(session, item_id, sum(r.quantity for r in wanted)):
                continue
            # Not enough for everyone: serve the batch in arrival order while units last.
            locked = await repo.get_item(session, item_id, lock=True)
            if locked is None:  # its redemptions hold a key-share lock on it: cannot happen
                raise RuntimeError(f"item {item_id} vanished while reserving")
            left = locked.stock
            served = 0
            for row, fits in zip(
                wanted, domain.serve_in_order([r.quantity for r in wanted], left), strict=True
            ):
                if fits:
                    served += row.quantity
                else:
                    failures[row.id] = domain.out_of_stock(row.item_name, row.quantity)
                    sold_out.append(row)
            if served and not await repo.reserve_stock(session, item_id, served):
                raise RuntimeError(f"stock of {item_id} moved while locked")
        return sold_out

    @staticmethod
    async def _fail_refused(
        session: AsyncSession, rows: list[Redemption], failures: Failures
    ) -> dict[str, Redemption]:
        """Refused before taking any stock: flipped to failed, no longer holding anything;
        returns them by id, as they now are."""
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
        await emit(session, [(row, "redemption.failed") for row in refused.values()])
        for row in refused.values():
            REDEMPTIONS.labels(row.failure_code).inc()
        return refused

    # -- steps two and three: debit, then complete or fail ------------------------------------

    async def _settle_debits(
        self, rows: list[Redemption], items: Mapping[str, Any] | None = None
    ) -> list[Redemption]:
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
                finishes.append(Finish.completed(row, outcome.body))
            elif isinstance(outcome, Refused) and outcome.code == "debit_voided":
                # The recovery loop compensated this redemption; it will (or did) fail it.
                finishes.append(Finish.failed(row, "ledger_unavailable", outcome.message, True))
            elif isinstance(outcome, Refused):
                finishes.append(Finish.failed(row, outcome.code, outcome.message, False))
            else:
                log.warning("debit of redemption %s unconfirmed: %s", row.id, outcome.reason)
                REDEMPTIONS_UNCONFIRMED.labels("debit").inc()
        finished = await self.finish_many(finishes, items)
        return [finished.get(row.id, row) for row in rows]
