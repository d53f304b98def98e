"""The redemption saga backward: cancelling a redemption (refund at the ledger, then
`cancelled`), and compensating a debit that stayed unconfirmed (refund or void, then
`failed`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange import domain
from services.exchange import repository as repo
from services.exchange.metrics import REDEMPTIONS_UNCONFIRMED
from services.exchange.repository import Redemption
from services.exchange.schemas import RedemptionOut
from services.exchange.service.finishing import Answer, Finish, Finishing, debit_key
from shared.auth import Principal
from shared.client import Done, Outcome, Refused, Unreachable
from shared.errors import NotFound

log = logging.getLogger(__name__)


class Cancellation(Finishing):
    """Cancel and refund; compensation of unconfirmed debits."""

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
                return RedemptionOut.model_validate(row), step
            await self._revoke_reward(session, row, now)
            values = domain.cancel_values(
                row.item_type, row.fulfilment_status, reason, caller.is_admin
            )
            values["next_attempt_at"] = now + self.lease
            row = await repo.update_redemption(session, redemption_id, values)
        row = await self._settle_refund(row)
        return RedemptionOut.model_validate(row), domain.cancel_outcome(row.status)

    async def _revoke_reward(self, session: AsyncSession, row: Redemption, now: datetime) -> None:
        if row.item_type == "coupon":
            await repo.revoke_coupons(session, row.id)
        elif row.item_type == "vip":
            current = await repo.lock_membership(session, row.user_id)
            if (until := domain.vip_revoked(current, row.reward)) is not None:
                await repo.set_membership(session, row.user_id, until)

    async def _settle_refund(self, row: Redemption) -> Redemption:
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

    async def _finish_cancel(self, row: Redemption, refund_entry_id: int | None) -> Redemption:
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

    async def _compensate(self, row: Redemption) -> Redemption:
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
