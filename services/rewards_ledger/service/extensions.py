"""Extensions (积分延期): the expiry of points expiring soon pushed back, for a fee."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger import repository as repo
from services.rewards_ledger.domain import (
    DEFAULT_ASSET,
    IdempotencyKeyReused,
    NothingToExtend,
    extension_journal_key,
    plan_extension,
)
from services.rewards_ledger.repository.rows import LotExtension
from services.rewards_ledger.service.accounts import append, entry_row, expire_due_lots
from services.rewards_ledger.service.assets import require_spendable


def _extended_lots_view(extended: list[LotExtension]) -> list[dict[str, Any]]:
    return [
        {
            "lot_id": r.lot_id,
            "old_expires_at": r.old_expires_at,
            "new_expires_at": r.new_expires_at,
        }
        for r in extended
    ]


async def extended_lots(session: AsyncSession, entry_id: int) -> list[dict[str, Any]]:
    """The lots an extension entry pushed back, with their old and new expiry."""
    return _extended_lots_view(await repo.extensions_of(session, entry_id))


async def _extension_view(session: AsyncSession, e: Mapping[str, Any]) -> dict[str, Any]:
    """An extension as the API shows it, from its journal entry (as written, or stored)."""
    extended = await repo.extensions_of(session, e["id"])
    allocs = (await repo.allocations_of(session, [e["id"]])).get(e["id"], [])
    return {
        "entry_id": e["id"],
        "user_id": e["user_id"],
        "asset": e["asset"],
        "days": (extended[0].new_expires_at - extended[0].old_expires_at).days if extended else 0,
        "fee": -e["amount"],
        "points_extended": sum(r.remaining for r in extended),
        "balance_after": e["balance_after"],
        "created_at": e["created_at"],
        "lots": _extended_lots_view(extended),
        "fee_allocations": allocs,
    }


async def extend(
    session: AsyncSession,
    user_id: str,
    days: int,
    idempotency_key: str,
    *,
    asset: str = DEFAULT_ASSET,
    window_days: int,
    fee_percent: float,
    fee_minimum: int,
    now: datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """积分延期: push back by `days` the expiry of every lot expiring within `window_days`
    (each lot at most once), for a fee taken from the other lots, earliest-expiring first.
    Refused with nothing_to_extend or insufficient_points. Same key, same result."""
    now = now or datetime.now(UTC)
    await require_spendable(session, asset)
    account = (user_id, asset)
    key = extension_journal_key(idempotency_key)
    totals = await repo.lock_accounts(session, [account], create=False)
    done = await repo.entry_by_key(session, key, asset)
    if done is not None:
        view = await _extension_view(session, asdict(done))
        if done.user_id != user_id or view["days"] != days:
            raise IdempotencyKeyReused(idempotency_key, "extension")
        return view, False
    if account not in totals:
        raise NothingToExtend(window_days)
    await expire_due_lots(session, totals, now)
    lots = await repo.extendable_lots(session, user_id, asset)
    plan = plan_extension(lots, now, window_days, days, fee_percent, fee_minimum)
    t = totals[account]
    t.balance -= plan.fee
    await repo.take_from_lots(session, plan.fee_taken)
    [entry] = await append(
        session,
        [
            entry_row(
                account,
                "extension",
                key,
                t,
                -plan.fee,
                reason=f"extended {len(plan.extended)} lots ({plan.points} points) by {days} days "
                f"for a fee of {plan.fee}",
            )
        ],
    )
    await repo.insert_allocations(session, [(entry["id"], lot, pts) for lot, pts in plan.fee_taken])
    await repo.extend_lots(session, entry["id"], plan.extended)
    await repo.set_totals(session, totals)
    return await _extension_view(session, entry), True
