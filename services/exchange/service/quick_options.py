"""Quick options (一键兑换): up to three items for the user's balance, chosen by the recommender
and the catalog under the rules of `services.exchange.quick_options`, or for a user who
cannot afford anything yet, the tasks that would get them there fastest.

Only the ledger is needed: the recommender (insights) and the task rules (task_progress) are
asked with a short timeout, and without them the options come from the catalog alone."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from services.exchange import domain
from services.exchange import quick_options as rules
from services.exchange import repository as repo
from services.exchange.repository import Item
from services.exchange.schemas import ItemOut
from services.exchange.settings import Settings
from services.insights.client import InsightsClient
from services.rewards_ledger.client import LedgerClient
from services.task_progress.client import TaskClient
from shared.client import Done
from shared.errors import DomainError

log = logging.getLogger(__name__)

CANDIDATES = 30  # catalog items weighed per request
RECOMMENDED = 20  # items asked of the recommender
COUNTS_TTL_S = 60.0  # a minute-old exchange_count ranks as well as a fresh one
COUNT_DAYS = 7


class QuickOptions:
    """The quick options' collaborators and caches: the recent redemption counts per item and
    a copy of the task rules (refreshed every `task_rules_refresh_s`)."""

    def __init__(
        self,
        settings: Settings,
        ledger: LedgerClient,
        insights: InsightsClient,
        tasks: TaskClient,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.insights = insights
        self.tasks = tasks
        self._rules: list[dict[str, Any]] = []
        self._rules_at = float("-inf")
        self._counts: dict[str, tuple[int, float]] = {}

    async def close(self) -> None:
        await self.insights.close()
        await self.tasks.close()

    async def for_user(self, session: AsyncSession, user_id: str) -> dict[str, Any]:
        """The quick options of a user. The ledger is asked first: `session` (read only)
        takes its connection only at the first query after that."""
        account = await self._account(user_id)
        balance = int(account["balance"])
        expiring = int(account.get("expiring_within_7_days", 0))
        days = self.settings.quick_options_warning_days
        now = datetime.now(UTC)
        band = rules.price_band(balance)
        answer: dict[str, Any] = {"recommender": None}
        recommended: list[dict[str, Any]] = []
        catalog: list[dict[str, Any]] = []
        tasks: list[dict[str, Any]] = []
        if band is not None:
            answer, ids = await self._recommended(user_id, band)
            found = await repo.get_items(session, ids)
            catalog_rows = await repo.band_candidates(
                session, now, *band, rules.AIM * balance, CANDIDATES
            )
            allowed = await _allowed(
                session, self.settings, user_id, [*found.values(), *catalog_rows], now
            )
            recommended = [allowed[i] for i in ids if i in allowed]
            catalog = [allowed[r.id] for r in catalog_rows if r.id in allowed]
        counts = await self._exchange_counts(session, [i["id"] for i in recommended + catalog])
        offers = rules.choose(recommended, catalog, balance, counts)
        needed = 0  # with tasks: only for a user with nothing to redeem
        if not offers:
            cheapest = await _allowed(
                session,
                self.settings,
                user_id,
                await repo.cheapest_candidates(session, now, CANDIDATES),
                now,
            )
            needed = rules.points_needed(balance, (i["points_price"] for i in cheapest.values()))
            if needed > 0:
                tasks = rules.fastest_tasks(await self._task_rules(), needed, now)
        return {
            "user_id": user_id,
            "balance": balance,
            "expiring_within_7_days": expiring,
            "first_expiry_at": _first_expiry(account, days),
            "recommender": answer.get("recommender"),
            "options": [
                {
                    "item": o.item,
                    "balance_after": o.balance_after,
                    "source": o.source,
                    "warning": rules.expiry_warning(expiring, o.item["points_price"], days),
                }
                for o in offers
            ],
            "points_needed": needed,
            "tasks": tasks,
        }

    async def _account(self, user_id: str) -> dict[str, Any]:
        outcome = await self.ledger.account(user_id)
        if not isinstance(outcome, Done):
            raise DomainError(
                "ledger_unavailable",
                "the points balance is unavailable right now; try again shortly",
                status=503,
            )
        return cast(dict[str, Any], outcome.body)

    async def _recommended(
        self, user_id: str, band: tuple[int, int]
    ) -> tuple[dict[str, Any], list[str]]:
        """The recommender's answer and its item ids in the band; none when it cannot answer
        (the catalog then stands in)."""
        try:
            answer = await self.insights.recommendations(user_id, RECOMMENDED, *band)
        except DomainError as exc:
            log.info("quick options without the recommender", extra={"error": str(exc)})
            return {"recommender": None}, []
        return answer, [str(i["item_id"]) for i in answer.get("items", [])]

    async def _exchange_counts(self, session: AsyncSession, item_ids: list[str]) -> dict[str, int]:
        """Each item's completed redemptions of the last 7 days, at most a minute old."""
        now = time.monotonic()
        stale = [
            i for i in item_ids if i not in self._counts or now - self._counts[i][1] >= COUNTS_TTL_S
        ]
        if stale:
            since = datetime.now(UTC) - timedelta(days=COUNT_DAYS)
            fresh = await repo.exchange_counts(session, stale, since)
            if len(self._counts) > 10_000:  # items that left the catalog
                self._counts.clear()
            for item_id in stale:
                self._counts[item_id] = (fresh.get(item_id, 0), now)
        return {i: self._counts[i][0] for i in item_ids}

    async def _task_rules(self) -> list[dict[str, Any]]:
        """The task rules, from a copy at most `task_rules_refresh_s` old (the last copy, or
        none, while task_progress does not answer)."""
        if time.monotonic() - self._rules_at >= self.settings.task_rules_refresh_s:
            try:
                self._rules = await self.tasks.rules()
            except DomainError as exc:
                log.info("quick options without task rules", extra={"error": str(exc)})
            self._rules_at = time.monotonic()  # retried at the next refresh, not every request
        return self._rules


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


async def _allowed(
    session: AsyncSession,
    settings: Settings,
    user_id: str,
    candidates: Sequence[Item],
    now: datetime,
) -> dict[str, dict[str, Any]]:
    """The candidates the user may redeem now, as response dicts by id: on sale, in stock,
    the user's tier at or above the item's (the rule a redemption applies: an item of a tier
    this service has not heard of admits nobody), the per-user limit not reached."""
    candidates = [
        c
        for c in candidates
        if c.stock > 0 and domain.unavailable_reason(c.active, c.starts_at, c.ends_at, now) is None
    ]
    tiered = [c.min_tier for c in candidates if c.min_tier]
    if tiered:
        members, required = await repo.tier_levels(session, [user_id], tiered)
        level = members.get(user_id, 0)
        candidates = [
            c
            for c in candidates
            if domain.tier_refusal(c, level, required.get(c.min_tier or "")) is None
        ]
    keys = [
        (c.id, domain.limit_period_key(c.limit_period, now, settings.tz))
        for c in candidates
        if c.limit_period
    ]
    used = await repo.used_quantities(session, user_id, keys)
    limit_keys = dict(keys)
    # An item with a limit period always has its quantity (the schema sets both or neither).
    return {
        c.id: ItemOut.model_validate(c).model_dump()
        for c in candidates
        if not c.limit_period or used.get((c.id, limit_keys[c.id]), 0) < cast(int, c.limit_quantity)
    }
