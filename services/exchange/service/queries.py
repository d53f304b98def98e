"""Reads: a redemption, a user's redemptions, the quick options, the reconciliation."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange import domain
from services.exchange import repository as repo
from services.exchange.schemas import ItemOut, RedemptionOut, RedemptionsPage
from services.exchange.settings import Settings
from services.rewards_ledger.client import LedgerClient
from shared.auth import Principal
from shared.client import Done
from shared.errors import DomainError, NotFound


async def get_redemption(
    session: AsyncSession, redemption_id: str, caller: Principal
) -> RedemptionOut:
    """One redemption, for its owner, the admin or the console (exchange:read)."""
    row = await repo.get_redemption(session, redemption_id)
    if row is None:
        raise NotFound("redemption", redemption_id)
    caller.require_user_or_scope(row.user_id, "exchange:read")
    return RedemptionOut.model_validate(row)


async def user_redemptions(
    session: AsyncSession, user_id: str, status: str | None, limit: int, offset: int
) -> RedemptionsPage:
    """A page of a user's redemptions, newest first."""
    rows = await repo.user_redemptions(session, user_id, status, limit + 1, offset)
    return RedemptionsPage(
        items=[RedemptionOut.model_validate(r) for r in rows[:limit]],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if len(rows) > limit else None,
    )


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


async def quick_options(
    session: AsyncSession, ledger: LedgerClient, settings: Settings, user_id: str
) -> dict[str, Any]:
    """Up to three items the user can afford. The ledger is asked first: `session` (read
    only) takes its connection only at the first query after that."""
    outcome = await ledger.account(user_id)
    if not isinstance(outcome, Done):
        raise DomainError(
            "ledger_unavailable",
            "the points balance is unavailable right now; try again shortly",
            status=503,
        )
    account = outcome.body
    balance = int(account["balance"])
    expiring = int(account.get("expiring_within_7_days", 0))
    first_expiry = _first_expiry(account, settings.quick_options_warning_days)
    allowed = await _allowed_items(session, settings, user_id, balance)
    options = []
    for offer in domain.quick_options(allowed, balance):
        warning = None
        if expiring:
            uses = min(expiring, offer.item["points_price"])
            warning = (
                f"{expiring} of your points expire within "
                f"{settings.quick_options_warning_days} days; "
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


def _first_expiry(account: Mapping[str, Any], warning_days: int) -> str | None:
    """When the first of the account's soon-expiring points expire, within the warning."""
    horizon = datetime.now(UTC) + timedelta(days=warning_days)
    return next(
        (
            e["expires_at"]
            for e in account.get("expiring_soon", [])
            if datetime.fromisoformat(e["expires_at"]) <= horizon
        ),
        None,
    )


async def _allowed_items(
    session: AsyncSession, settings: Settings, user_id: str, balance: int
) -> list[dict[str, Any]]:
    """Available in-stock items within `balance` the user has not reached the limit of."""
    now = datetime.now(UTC)
    candidates = await repo.affordable_candidates(session, now, balance, 30)
    keys = [
        (c.id, domain.limit_period_key(c.limit_period, now, settings.tz))
        for c in candidates
        if c.limit_period
    ]
    used = await repo.used_quantities(session, user_id, keys)
    limit_keys = dict(keys)
    # domain.quick_options weighs items as their response dicts. An item with a limit
    # period always has its quantity (the schema sets both or neither).
    return [
        ItemOut.model_validate(c).model_dump()
        for c in candidates
        if not c.limit_period or used.get((c.id, limit_keys[c.id]), 0) < cast(int, c.limit_quantity)
    ]
