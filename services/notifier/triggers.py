"""Daily triggers and campaign expansion: scans that queue notifications a page at a time.

A run of a daily trigger is keyed by (trigger, timezone, local day) and keeps a cursor: each
page's notifications and the cursor after it commit together, so a run that dies resumes
where it stopped, and notification ids derived from (trigger, user, day) make a page queued
twice harmless. Reading the ledger happens before the transaction that records the page (no
remote call while the run's row is locked); the page is recorded only if the cursor is still
the one it was read after (another replica may have moved on meanwhile).

Campaigns expand the same way: audience pages in user-id order, the campaign's cursor moving
with each committed chunk.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier import domain, service
from services.notifier import repository as repo
from services.notifier.service import Planned
from services.notifier.settings import Settings
from services.rewards_ledger.client import LedgerClient
from shared.db import Database

TRIGGERS = ("points_expiring", "streak_at_risk", "tasks_unfinished")
PageFn = Callable[[str | None], Awaitable[tuple[list[Any], str | None, bool]]]


def trigger_time(settings: Settings, trigger: str) -> str:
    return {
        "points_expiring": settings.expiry_reminder_at,
        "streak_at_risk": settings.streak_reminder_at,
        "tasks_unfinished": settings.tasks_reminder_at,
    }[trigger]


def due_at(
    settings: Settings, trigger: str, day: date, tz: str, now: datetime, immediate: bool
) -> datetime:
    if immediate:
        return now
    at = domain.local_instant(day, domain.parse_hhmm(trigger_time(settings, trigger)), ZoneInfo(tz))
    return max(now, at)


def _ledger_cursor(cursor: str | None) -> tuple[str, str] | None:
    """The ledger's keyset cursor (user, expires_at) a run's stored cursor holds."""
    if not cursor:
        return None
    user_id, expires_at = json.loads(cursor)
    return str(user_id), str(expires_at)


class Scanner:
    """Runs daily triggers and expands campaigns (shared by the workers and the admin API)."""

    def __init__(self, settings: Settings, db: Database, ledger: LedgerClient) -> None:
        self.settings = settings
        self.db = db
        self.ledger = ledger

    # -- daily triggers ----------------------------------------------------------------

    async def run(
        self,
        trigger: str,
        tz: str,
        day: date,
        now: datetime,
        *,
        immediate: bool = False,
        restart: bool = False,
    ) -> dict[str, Any]:
        """Run (or resume) one trigger for one timezone and day. `restart` scans from the
        beginning even if the run finished (what was queued already is not queued again);
        `immediate` makes what it queues due now instead of at the trigger's local time."""
        async with self.db.transaction() as session:
            run = await repo.start_run(session, trigger, tz, day)
            if run is None:
                return {
                    "trigger": trigger,
                    "timezone": tz,
                    "day": day,
                    "status": "busy",
                    "queued": 0,
                }
            if restart:
                await repo.restart_run(session, trigger, tz, day)
                cursor = None
            elif run.status == "done":
                return {
                    "trigger": trigger,
                    "timezone": tz,
                    "day": day,
                    "status": "done",
                    "queued": 0,
                }
            else:
                cursor = run.cursor
        when = due_at(self.settings, trigger, day, tz, now, immediate)
        queued = 0
        if trigger == "points_expiring":
            queued = await self._expiry(tz, day, when, cursor)
        else:
            queued = await self._local(trigger, tz, day, when, cursor)
        return {"trigger": trigger, "timezone": tz, "day": day, "status": "done", "queued": queued}

    async def _commit_page(
        self,
        trigger: str,
        tz: str,
        day: date,
        expected: str | None,
        cursor: str | None,
        planned: list[Planned],
        done: bool,
    ) -> int | None:
        """Queue a page and move the run's cursor, if the run is still where it was read.
        None: another replica holds or moved the run."""
        async with self.db.transaction() as session:
            run = await repo.start_run(session, trigger, tz, day)
            if run is None or run.cursor != expected or run.status == "done":
                return None
            new = await service.queue(session, self.settings, planned)
            await repo.advance_run(session, trigger, tz, day, cursor, new, done)
            return new

    async def _expiry(self, tz: str, day: date, when: datetime, cursor: str | None) -> int:
        zone = ZoneInfo(tz)
        horizons = self.settings.expiry_reminder_days
        start, end = domain.expiry_window(day, zone, horizons)
        fetch = _ledger_cursor(cursor)
        expected = cursor
        carry: list[tuple[str, datetime, int]] = []
        total = 0
        while True:
            rows, nxt = await self.ledger.expiring(
                start, end, fetch, self.settings.expiry_scan_page
            )
            rows = carry + rows
            if nxt is not None and rows:  # the last user may go on in the next page
                last = rows[-1][0]
                carry = [r for r in rows if r[0] == last]
                complete = [r for r in rows if r[0] != last]
            else:
                carry, complete = [], rows
            fetch = nxt
            if not complete and nxt is not None:
                continue  # one user filled the page: read on before deciding for them
            planned = await self._expiry_plans(complete, tz, zone, day, when)
            moved = (
                json.dumps([complete[-1][0], complete[-1][1].isoformat()]) if complete else expected
            )
            new = await self._commit_page(
                "points_expiring", tz, day, expected, moved, planned, nxt is None
            )
            if new is None:
                return total
            total += new
            expected = moved
            if nxt is None:
                return total

    async def _expiry_plans(
        self,
        rows: list[tuple[str, datetime, int]],
        tz: str,
        zone: ZoneInfo,
        day: date,
        when: datetime,
    ) -> list[Planned]:
        by_user: dict[str, domain.Expiring] = {}
        for user_id, expires_at, points in rows:
            by_user.setdefault(user_id, domain.Expiring(user_id)).lots.append((expires_at, points))
        zones = await self._zones(by_user)
        planned = []
        for user_id, expiring in by_user.items():
            if zones[user_id] != tz:
                continue  # their own timezone's run reminds them
            reminder = domain.expiry_reminder(
                day, zone, expiring, self.settings.expiry_reminder_days
            )
            if reminder is not None:
                planned.append(service.expiry_plan(self.settings, reminder, day, when))
        return planned

    async def _zones(self, users: Any) -> dict[str, str]:
        async with self.db.transaction() as session:
            prefs = await repo.prefs_of(session, users)
        return service.user_zones(self.settings, prefs, users)

    async def _local(
        self, trigger: str, tz: str, day: date, when: datetime, cursor: str | None
    ) -> int:
        """The streak and unfinished-task reminders, from the notifier's own read models."""
        total, expected = 0, cursor
        page_size = self.settings.campaign_chunk
        while True:
            async with self.db.transaction() as session:
                rows = await self._local_page(session, trigger, day, expected or "", page_size)
            zones = await self._zones([r[0] for r in rows])
            planned = [
                self._local_plan(trigger, user_id, value, day, when)
                for user_id, value in rows
                if zones[user_id] == tz
            ]
            done = len(rows) < page_size
            moved = rows[-1][0] if rows else expected
            new = await self._commit_page(trigger, tz, day, expected, moved, planned, done)
            if new is None:
                return total
            total += new
            expected = moved
            if done:
                return total

    async def _local_page(
        self, session: AsyncSession, trigger: str, day: date, after: str, limit: int
    ) -> list[tuple[str, int]]:
        if trigger == "streak_at_risk":
            return await repo.streaks_at_risk(
                session, day - timedelta(days=1), self.settings.streak_reminder_min, after, limit
            )
        else:
            since = day - timedelta(days=self.settings.tasks_reminder_lookback_days)
            return await repo.unfinished_tasks(session, since, day, after, limit)

    @staticmethod
    def _local_plan(trigger: str, user_id: str, value: int, day: date, when: datetime) -> Planned:
        variables = {"streak": value} if trigger == "streak_at_risk" else {"count": value}
        return Planned(
            id=domain.notification_id(trigger, user_id, day.isoformat()),
            user_id=user_id,
            trigger=trigger,
            due_at=when,
            template=trigger,
            variables=variables,
        )

    # -- campaigns -----------------------------------------------------------------------

    async def expand_one(self, now: datetime) -> bool:
        """Queue the next chunk of the next due campaign; False when none is due."""
        async with self.db.transaction() as session:
            campaign = await repo.due_campaign(session, now)
            if campaign is None:
                return False
            snapshot = (campaign.id, campaign.cursor, campaign.audience)
        campaign_id, cursor, audience = snapshot
        users, nxt = await self._audience_page(audience, cursor or "")
        async with self.db.transaction() as session:
            current = await repo.campaign(session, campaign_id, lock=True)
            if current is None or current.cursor != cursor or current.status == "done":
                return True  # another replica moved it: look again
            planned = service.campaign_plans(current, users, now)
            added = await service.queue(session, self.settings, planned)
            await repo.advance_campaign(session, campaign_id, nxt or cursor, added, nxt is None)
        return True

    async def _audience_page(
        self, audience: dict[str, Any], after: str
    ) -> tuple[list[str], str | None]:
        """A page of recipients after `after`, and the cursor past it (None: the last page)."""
        limit = self.settings.campaign_chunk
        if "user_ids" in audience:
            ids = sorted(set(audience["user_ids"]))
            page = [u for u in ids if u > after][:limit]
        elif "tier" in audience:
            async with self.db.transaction() as session:
                page = await repo.tier_members(session, audience["tier"], after, limit)
        else:
            page, _ = await self.ledger.holders(int(audience["min_balance"]), after, limit)
        return page, (page[-1] if len(page) == limit else None)
