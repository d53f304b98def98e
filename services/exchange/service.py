"""Exchange use cases: the redemption saga, cancel and refund, fulfilment, recovery, reads.

The catalog is `catalog.py`; the rules these apply are `domain.py` (pure), the responses
`views.py`, the messages `events.py`, the SQL `repository.py`. Use cases answer with an
outcome (`domain.Outcome`), never an HTTP status: `api.py` maps one to the other.

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

This is the one place where use cases commit in steps instead of in the request's unit of
work: the saga (`Exchange.redeem`, `Exchange.cancel`, the recovery loop) opens one
transaction per step itself, because the ledger call between two steps must never be made
while a row lock is held, and each step's record must be committed before the next starts.
Everything else here takes the caller's session and only flushes.
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
from services.exchange.events import emit
from services.exchange.ledger_client import Done, LedgerClient, Outcome, Refused, Unreachable
from services.exchange.metrics import REDEMPTION_BATCH_SIZE, REDEMPTIONS, REDEMPTIONS_UNCONFIRMED
from services.exchange.settings import Settings
from services.exchange.views import item_view, redemption_view
from shared.auth import Principal
from shared.batching import GroupCommit
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


# What a use case answers: the redemption's view and how the request ended (api.py maps
# the outcome to an HTTP status).
Answer = tuple[dict[str, Any], domain.Outcome]
# A redemption request's answer, or the error to raise for that caller.
RedeemAnswer = Answer | DomainError


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

    @classmethod
    def completed(cls, row: Any, debit: dict[str, Any]) -> Finish:
        """A pending redemption whose debit the ledger made: completed, with its reward."""
        values = {
            "status": "completed",
            "ledger_entry_id": debit["entry_id"],
            "balance_after": debit["balance_after"],
        }
        return cls(row, "pending", "redemption.completed", "completed", values, reward=True)

    @classmethod
    def failed(cls, row: Any, code: str, message: str, compensated: bool) -> Finish:
        """A pending redemption that failed: it gives back what it holds."""
        values = {
            "status": "failed",
            "failure_code": code,
            "failure_message": message,
            "compensated": compensated,
        }
        return cls(row, "pending", "redemption.failed", code, values, release=True)


def debit_key(redemption_id: str) -> str:
    """The ledger idempotency key of a redemption's debit (its refund is keyed by the same)."""
    return f"exchange:{redemption_id}"


async def get_redemption(
    session: AsyncSession, redemption_id: str, caller: Principal
) -> dict[str, Any]:
    """One redemption, for its owner, the admin or the console (exchange:read)."""
    row = await repo.get_redemption(session, redemption_id)
    if row is None:
        raise NotFound("redemption", redemption_id)
    caller.require_user_or_scope(row.user_id, "exchange:read")
    return redemption_view(row)


async def user_redemptions(
    session: AsyncSession, user_id: str, status: str | None, limit: int, offset: int
) -> dict[str, Any]:
    """A page of a user's redemptions, newest first."""
    rows = await repo.user_redemptions(session, user_id, status, limit + 1, offset)
    return {
        "items": [redemption_view(r) for r in rows[:limit]],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if len(rows) > limit else None,
    }


async def fulfilment_queue(
    session: AsyncSession, fulfilment_status: str, user_id: str | None, limit: int, offset: int
) -> dict[str, Any]:
    """A page of the physical redemptions waiting at a fulfilment step, oldest first."""
    rows = await repo.fulfilment_queue(session, fulfilment_status, user_id, limit + 1, offset)
    return {
        "items": [redemption_view(r) for r in rows[:limit]],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if len(rows) > limit else None,
    }


async def advance_fulfilment(
    session: AsyncSession,
    redemption_id: str,
    action: str,
    carrier: str | None = None,
    tracking_number: str | None = None,
) -> dict[str, Any]:
    """Ship or deliver a completed physical redemption (idempotent per step)."""
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
    await emit(session, [(row, f"redemption.{target}")])
    return redemption_view(row)


async def reconcile(session: AsyncSession, pending_deadline_s: float) -> dict[str, Any]:
    """Every unit of stock accounted for; limits, rewards and debits consistent (run it in
    one snapshot)."""
    stuck_before = datetime.now(UTC) - timedelta(seconds=pending_deadline_s * 2 + 600)
    counts, failures = await repo.run_reconciliation(session, stuck_before)
    return {
        "ok": not failures,
        "redemptions": counts,
        "checks": [*repo.RECONCILIATION_CHECKS, "nothing_unfinished_for_long"],
        "violations": [{"check": k, "rows": v} for k, v in failures.items()],
        "checked_at": datetime.now(UTC),
    }


class Exchange:
    """Redemption saga, cancellation and the recovery loop's step."""

    def __init__(self, settings: Settings, db: Database, ledger: LedgerClient) -> None:
        self.settings = settings
        self.db = db
        self.ledger = ledger
        # A request's own ledger call must finish before the recovery loop may touch it.
        self.lease = timedelta(seconds=settings.ledger_timeout_s * 2 + settings.recovery_interval_s)
        self.batcher: GroupCommit[RedeemRequest, Answer] = GroupCommit(
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
            if first[(r.user_id, r.key)] != i:
                if (reused := domain.key_reused(row, r.item_id, r.quantity)) is not None:
                    answers.append(reused)
                    continue
                replayed = True
            answers.append(self._answer(row, replayed))
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
                reused = domain.key_reused(done, requests[i].item_id, requests[i].quantity)
                out[i] = (done, True) if reused is None else reused
            elif i not in new:
                out[i] = NotFound("item", requests[i].item_id)
            else:
                raise RuntimeError(f"redemption key {keys[i]} neither inserted nor found")
        rows = [inserted[row["id"]] for row in new.values() if row["id"] in inserted]

        failures: dict[str, tuple[str, str]] = {}
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
                failures[row.id] = domain.limit_reached(item)
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
        await emit(session, [(row, "redemption.failed") for row in refused.values()])
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

    @staticmethod
    def _answer(row: Any, replayed: bool) -> RedeemAnswer:
        outcome = domain.redeem_outcome(row.status, replayed)
        if outcome is None:
            return domain.refused(row)
        return redemption_view(row), outcome

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

    async def finish_many(
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
            rewards, coupons = domain.draw_rewards(
                rewarding, known, now, self.settings.coupon_validity_days
            )
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
            await emit(session, [(written[f.redemption_id], f.event_type) for f, _ in due])
            # The ones another finisher got to first, as they are now.
            current = await repo.redemptions_by_ids(
                session, [f.redemption_id for f in finishes if f.redemption_id not in written]
            )
        for f, _ in due:
            REDEMPTIONS.labels(f.outcome).inc()
        return {**current, **written}

    async def _finish(self, finish: Finish) -> Any:
        return (await self.finish_many([finish]))[finish.redemption_id]

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

    async def _extend_memberships(
        self, session: AsyncSession, rows: list[Any], items: Mapping[str, Any], now: datetime
    ) -> dict[str, Any]:
        """Extend the memberships of completed VIP redemptions (locked in user order) and
        write their rewards; returns those redemptions by id."""
        rewards: dict[str, dict[str, Any]] = {}
        for row in sorted(rows, key=lambda r: (r.user_id, r.id)):
            current = await repo.lock_membership(session, row.user_id)
            until, rewards[row.id] = domain.vip_reward(
                current, now, items[row.item_id].vip_days, row.quantity
            )
            await repo.set_membership(session, row.user_id, until)
        return await repo.set_rewards(session, rewards)

    # -- cancel -----------------------------------------------------------------------

    async def cancel(self, redemption_id: str, caller: Principal, reason: str) -> Answer:
        """Returns (redemption, outcome: cancelling until the refund is confirmed, then
        cancelled); idempotent."""
        now = datetime.now(UTC)
        async with self.db.transaction() as session:
            row = await repo.get_redemption(session, redemption_id, lock=True)
            if row is None:
                raise NotFound("redemption", redemption_id)
            caller.require_user(row.user_id)
            step = domain.cancel_step(
                row.status, row.item_type, row.fulfilment_status, caller.is_admin
            )
            if step is not None:
                return redemption_view(row), step
            await self._revoke_reward(session, row, now)
            values = domain.cancel_values(
                row.item_type, row.fulfilment_status, reason, caller.is_admin
            )
            values["next_attempt_at"] = now + self.lease
            row = await repo.update_redemption(session, redemption_id, values)
        row = await self._settle_refund(row)
        return redemption_view(row), domain.cancel_outcome(row.status)

    async def _revoke_reward(self, session: AsyncSession, row: Any, now: datetime) -> None:
        if row.item_type == "coupon":
            await repo.revoke_coupons(session, row.id)
        elif row.item_type == "vip":
            current = await repo.lock_membership(session, row.user_id)
            if (until := domain.vip_revoked(current, row.reward)) is not None:
                await repo.set_membership(session, row.user_id, until)

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
                Finish.failed(
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

    async def quick_options(self, session: AsyncSession, user_id: str) -> dict[str, Any]:
        """Up to three items the user can afford. The ledger is asked first: `session` (read
        only) takes its connection only at the first query after that."""
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
