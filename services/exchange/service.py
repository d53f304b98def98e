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
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange import domain
from services.exchange import repository as repo
from services.exchange.ledger_client import Done, LedgerClient, Outcome, Refused, Unreachable
from services.exchange.models import messaging
from services.exchange.settings import Settings
from shared.auth import Principal
from shared.db import Database
from shared.errors import DomainError, NotFound
from shared.events import EXCHANGE_EVENTS, ExchangeEvent
from shared.failpoints import failpoint
from shared.messaging import OutgoingEvent, add_to_outbox
from shared.metrics import REDEMPTIONS, REDEMPTIONS_UNCONFIRMED

log = logging.getLogger(__name__)


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


async def _emit(session: AsyncSession, row: Any, event_type: str) -> None:
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
        occurred_at=datetime.now(UTC),
    )
    await add_to_outbox(
        session,
        messaging.outbox,
        [OutgoingEvent(EXCHANGE_EVENTS, r["user_id"], event.model_dump_json())],
    )


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

    # -- redeem ---------------------------------------------------------------------

    async def redeem(
        self,
        user_id: str,
        item_id: str,
        quantity: int,
        key: str,
        shipping_address: str | None,
    ) -> tuple[dict[str, Any], int]:
        """Returns (redemption, HTTP status); raises RedemptionRefused for a clean no."""
        now = datetime.now(UTC)
        async with self.db.transaction() as session:
            row, replayed = await self._reserve(
                session, user_id, item_id, quantity, key, shipping_address, now
            )
        if not replayed and row.status == "pending":
            row = await self._settle_debit(row)
        return self._answer(row, replayed)

    async def _reserve(
        self,
        session: AsyncSession,
        user_id: str,
        item_id: str,
        quantity: int,
        key: str,
        shipping_address: str | None,
        now: datetime,
    ) -> tuple[Any, bool]:
        existing = await repo.redemption_by_key(session, user_id, key)
        if existing is not None:
            return self._same_request(existing, item_id, quantity), True
        item = await repo.get_item(session, item_id)
        if item is None:
            raise NotFound("item", item_id)
        redemption_id = str(uuid.uuid4())
        period_key = (
            domain.limit_period_key(item.limit_period, now, self.settings.tz)
            if item.limit_period
            else None
        )
        # Written as holding stock up front so that taking the stock is the transaction's last
        # statement: the item's row lock, which every redeemer of a hot item queues on, is
        # then held only until the commit. A refusal below flips it back before the commit.
        row = await repo.insert_redemption(
            session,
            {
                "id": redemption_id,
                "user_id": user_id,
                "idempotency_key": key,
                "item_id": item.id,
                "item_type": item.type,
                "item_name": item.name,
                "quantity": quantity,
                "points": item.points_price * quantity,
                "status": "pending",
                "holds_stock": True,
                "limit_period_key": period_key,
                "shipping_address": shipping_address,
                "next_attempt_at": now + self.lease,
            },
        )
        if row is None:  # a concurrent request with the same key won the insert
            existing = await repo.redemption_by_key(session, user_id, key)
            return self._same_request(existing, item_id, quantity), True
        failure = self._refusal(item, quantity, now)
        if failure is None and period_key is not None:
            if not await repo.count_against_limit(
                session, user_id, item.id, period_key, quantity, item.limit_quantity
            ):
                failure = self._limit_reached(item)
        if failure is None and not await repo.reserve_stock(session, item.id, quantity):
            if period_key is not None:
                await repo.release_limit(session, user_id, item.id, period_key, quantity)
            failure = ("out_of_stock", f"{item.name} has fewer than {quantity} left")
        if failure is not None:
            code, message = failure
            row = await repo.update_redemption(
                session,
                redemption_id,
                {
                    "status": "failed",
                    "holds_stock": False,
                    "failure_code": code,
                    "failure_message": message,
                    "next_attempt_at": None,
                },
            )
            await _emit(session, row, "redemption.failed")
            REDEMPTIONS.labels(code).inc()
        return row, False

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

    async def _settle_debit(self, row: Any) -> Any:
        outcome = await self.ledger.debit(
            row.user_id,
            row.points,
            debit_key(row.id),
            reason=f"redeemed {row.quantity} x {row.item_name}",
            reference=f"redemption:{row.id}",
        )
        failpoint("exchange.after_debit")
        if isinstance(outcome, Done):
            return await self._complete(row.id, outcome.body)
        if isinstance(outcome, Refused):
            if outcome.code == "debit_voided":
                # The recovery loop compensated this redemption; it will (or did) fail it.
                return await self._fail(row.id, "ledger_unavailable", outcome.message, True)
            return await self._fail(row.id, outcome.code, outcome.message, False)
        log.warning("debit of redemption %s unconfirmed: %s", row.id, outcome.reason)
        REDEMPTIONS_UNCONFIRMED.labels("debit").inc()
        return row

    async def _finish(
        self,
        redemption_id: str,
        expected: str,
        event_type: str,
        outcome: str,
        values: dict[str, Any],
        *,
        release: bool = False,
        reward: bool = False,
    ) -> Any:
        """Move a redemption out of `expected` (pending or cancelling), once.

        The request and the recovery loop may both try; the row lock and the status check
        let exactly one of them release the reservation or issue the reward.
        """
        async with self.db.transaction() as session:
            row = await repo.get_redemption(session, redemption_id, lock=True)
            if row.status != expected:
                return row
            values = {**values, "next_attempt_at": None}
            if release:
                await self._release(session, row)
                values["holds_stock"] = False
            if reward:
                values["reward"] = await self._issue_reward(session, row, datetime.now(UTC))
                values["fulfilment_status"] = "pending" if row.item_type == "physical" else None
            row = await repo.update_redemption(session, redemption_id, values)
            await _emit(session, row, event_type)
        REDEMPTIONS.labels(outcome).inc()
        return row

    async def _complete(self, redemption_id: str, debit: dict[str, Any]) -> Any:
        values = {
            "status": "completed",
            "ledger_entry_id": debit["entry_id"],
            "balance_after": debit["balance_after"],
        }
        return await self._finish(
            redemption_id, "pending", "redemption.completed", "completed", values, reward=True
        )

    async def _fail(self, redemption_id: str, code: str, message: str, compensated: bool) -> Any:
        values = {
            "status": "failed",
            "failure_code": code,
            "failure_message": message,
            "compensated": compensated,
        }
        return await self._finish(
            redemption_id, "pending", "redemption.failed", code, values, release=True
        )

    @staticmethod
    async def _release(session: AsyncSession, row: Any) -> None:
        if not row.holds_stock:
            return
        await repo.release_stock(session, row.item_id, row.quantity)
        if row.limit_period_key is not None:
            await repo.release_limit(
                session, row.user_id, row.item_id, row.limit_period_key, row.quantity
            )

    async def _issue_reward(self, session: AsyncSession, row: Any, now: datetime) -> dict[str, Any]:
        item = await repo.get_item(session, row.item_id)
        if row.item_type == "coupon":
            expires_at = now + timedelta(days=self.settings.coupon_validity_days)
            codes = [domain.new_coupon_code() for _ in range(row.quantity)]
            await repo.insert_coupons(
                session,
                [
                    {
                        "code": code,
                        "redemption_id": row.id,
                        "user_id": row.user_id,
                        "item_id": row.item_id,
                        "value_cents": item.coupon_value_cents,
                        "expires_at": expires_at,
                    }
                    for code in codes
                ],
            )
            return {
                "type": "coupon",
                "codes": codes,
                "value_cents": item.coupon_value_cents,
                "expires_at": expires_at.isoformat(),
            }
        if row.item_type == "vip":
            days = (item.vip_days or 0) * row.quantity
            current = await repo.lock_membership(session, row.user_id)
            until = domain.extended_vip(current, now, days)
            await repo.set_membership(session, row.user_id, until)
            return {"type": "vip", "days_added": days, "vip_until": until.isoformat()}
        if row.item_type == "physical":
            return {"type": "physical", "shipping_address": row.shipping_address}
        return {"type": "virtual"}

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
            return await self._finish_cancel(row.id, outcome.body.get("entry_id"))
        if isinstance(outcome, Refused):
            log.error("ledger refused the refund of redemption %s: %s", row.id, outcome)
        else:
            log.warning("refund of redemption %s unconfirmed: %s", row.id, outcome.reason)
            REDEMPTIONS_UNCONFIRMED.labels("refund").inc()
        return row

    async def _finish_cancel(self, redemption_id: str, refund_entry_id: int | None) -> Any:
        values = {"status": "cancelled", "refund_entry_id": refund_entry_id}
        return await self._finish(
            redemption_id, "cancelling", "redemption.cancelled", "cancelled", values, release=True
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
            await _emit(session, row, f"redemption.{target}")
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
                elif (now - row.created_at).total_seconds() >= self.settings.pending_deadline_s:
                    await self._compensate(row)
                else:
                    await self._settle_debit(row)

        await asyncio.gather(*(settle(row) for row in rows))
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
            return await self._fail(
                row.id,
                "ledger_unavailable",
                "the points service did not confirm the debit in time; nothing was charged",
                True,
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
