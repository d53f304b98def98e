"""The floor of the redemption saga: moving redemptions out of `pending` or `cancelling`
once each (`Finish`, `Finishing.finish_many`), giving back stock and limits, extending
memberships. The saga (`saga.py`) and cancellation (`cancellation.py`) stand on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange import domain
from services.exchange import repository as repo
from services.exchange.events import RedemptionEventType, emit
from services.exchange.metrics import REDEMPTIONS
from services.exchange.repository import Item, Redemption
from services.exchange.schemas import RedemptionOut
from services.exchange.settings import Settings
from services.rewards_ledger.client import LedgerClient
from shared.db import Database

# What a use case answers: the redemption's view and how the request ended (api.py maps
# the outcome to an HTTP status).
Answer = tuple[RedemptionOut, domain.Outcome]


def debit_key(redemption_id: str) -> str:
    """The ledger idempotency key of a redemption's debit (its refund is keyed by the same)."""
    return f"exchange:{redemption_id}"


@dataclass(frozen=True)
class Finish:
    """Move one redemption out of `expected`: write `values`, emit `event_type`, count it
    under `outcome`; `release` gives back what it holds, `reward` issues the reward.
    `row` is the redemption as its finisher last read it (for what never changes: user,
    item, quantity, address); whether it is still `expected` is decided under its lock."""

    row: Redemption
    expected: str
    event_type: RedemptionEventType
    outcome: str
    values: dict[str, Any]
    release: bool = False
    reward: bool = False

    @property
    def redemption_id(self) -> str:
        return str(self.row.id)

    @classmethod
    def completed(cls, row: Redemption, debit: dict[str, Any]) -> Finish:
        """A pending redemption whose debit the ledger made: completed, with its reward."""
        values = {
            "status": "completed",
            "ledger_entry_id": debit["entry_id"],
            "balance_after": debit["balance_after"],
        }
        return cls(row, "pending", "redemption.completed", "completed", values, reward=True)

    @classmethod
    def failed(cls, row: Redemption, code: str, message: str, compensated: bool) -> Finish:
        """A pending redemption that failed: it gives back what it holds."""
        values = {
            "status": "failed",
            "failure_code": code,
            "failure_message": message,
            "compensated": compensated,
        }
        return cls(row, "pending", "redemption.failed", code, values, release=True)


class Finishing:
    """What every step of the saga shares: settings, database, ledger client, the lease, and
    finishing redemptions (each step opens its own transactions, see `service/__init__.py`)."""

    def __init__(self, settings: Settings, db: Database, ledger: LedgerClient) -> None:
        self.settings = settings
        self.db = db
        self.ledger = ledger
        # A request's own ledger call must finish before the recovery loop may touch it.
        self.lease = timedelta(seconds=settings.ledger_timeout_s * 2 + settings.recovery_interval_s)

    async def finish_many(
        self, finishes: list[Finish], items: Mapping[str, Item] | None = None
    ) -> dict[str, Redemption]:
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
            moves = [self._move(f, rewards) for f in finishes]
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

    @staticmethod
    def _move(finish: Finish, rewards: Mapping[str, Any]) -> dict[str, Any]:
        """One row of `repo.finish_redemptions`: the values, and the reward if it has one."""
        move = {**finish.values, "id": finish.redemption_id, "expected": finish.expected}
        move["release"] = finish.release
        if finish.reward and (reward := rewards.get(finish.redemption_id)) is not None:
            move["reward"] = reward
            if finish.row.item_type == "physical":
                move["fulfilment_status"] = "pending"
        return move

    async def _finish(self, finish: Finish) -> Redemption:
        return (await self.finish_many([finish]))[finish.redemption_id]

    async def _release_many(self, session: AsyncSession, rows: list[Redemption]) -> None:
        """Give back the units (and per-user limit counts) these redemptions held: counters
        first, then items, each in a fixed order, as reserving takes them."""
        await self._release_limits(session, rows)
        units: dict[str, int] = {}
        for row in rows:
            units[row.item_id] = units.get(row.item_id, 0) + row.quantity
        for item_id in sorted(units):
            await repo.release_stock(session, item_id, units[item_id])

    @staticmethod
    async def _release_limits(session: AsyncSession, rows: list[Redemption]) -> None:
        counted = [(r, key) for r in rows if (key := r.limit_period_key) is not None]
        for row, key in sorted(counted, key=lambda c: (c[0].user_id, c[0].item_id, c[1], c[0].id)):
            await repo.release_limit(session, row.user_id, row.item_id, key, row.quantity)

    async def _extend_memberships(
        self,
        session: AsyncSession,
        rows: list[Redemption],
        items: Mapping[str, Item],
        now: datetime,
    ) -> dict[str, Redemption]:
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
