"""Check-ins (签到): streaks, the reward ladder, the calendar and make-ups (补签).

A check-in rule (`kind: checkin`) pays each business day by its position in the user's run
of consecutive days, through the rule's ladder. Days are stored per (user, rule) with their
position and what they have paid; a day that joins two runs (a make-up, or a check-in that
arrives late) moves the later days up, and each is paid only what its new position is worth
beyond what it already paid. Every change for one (user, rule) holds that pair's lock (its
progress row keyed `checkin`), taken in key order with the batch's other progress rows.

A make-up commits in steps, like the exchange's redemption saga: the request is recorded
(it counts toward the monthly limit at once), the ledger takes the cost with an idempotency
key of the (user, rule, day) — so concurrent retries are charged once — and then the day is
added. A ledger refusal drops the request; no answer leaves it pending, and the same request
again resumes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger.client import LedgerClient
from services.task_progress import repository as repo
from services.task_progress.domain import (
    CheckinDay,
    CheckinPlan,
    DayBook,
    Match,
    Rule,
    checkin_day,
    checkin_grant_id,
    current_streak,
    rule_from_row,
)
from services.task_progress.events import Output, day_key, tier_book
from shared.db import Database
from shared.errors import DomainError, NotFound

CHECKIN_KEY = "checkin"  # the period key of a (user, rule)'s lock row in progress


def lock_key(user_id: str, task_id: str) -> tuple[str, str, str]:
    return (user_id, task_id, CHECKIN_KEY)


async def load_books(
    session: AsyncSession, wanted: dict[tuple[str, str], date]
) -> dict[tuple[str, str], DayBook]:
    """The day books of (user, rule) pairs from each one's earliest day asked for (locked)."""
    days, last = await repo.checkin_days(session, [(u, t, d) for (u, t), d in wanted.items()])
    books = {key: DayBook() for key in wanted}
    for r in days:
        books[(r.user_id, r.task_id)].days[r.day] = CheckinDay(r.kind, r.streak, r.paid)
    for r in last:
        books[(r.user_id, r.task_id)].last_loaded = (r.day, r.streak)
    return books


def record(
    out: Output,
    rule: Rule,
    user_id: str,
    plan: CheckinPlan,
    cause: str,
    occurred_at: datetime,
) -> list[tuple[str, int]]:
    """The grants and progress events of one check-in's plan; returns what it paid."""
    assert rule.ladder is not None
    paid = []
    for change in plan.changes:
        if change.grant <= 0:
            continue
        out.grant(
            rule,
            user_id,
            grant_id=checkin_grant_id(user_id, rule.id, change.day, change.paid),
            asset=rule.reward_type,
            points=change.grant,
            period_key=day_key(change.day),
            completion=change.streak,
            cause=cause,
            occurred_at=occurred_at,
            available_at=occurred_at + timedelta(days=rule.pending_days)
            if rule.pending_days
            else None,
            what=f"check-in {change.day} ({change.kind}), streak day {change.streak}",
        )
        paid.append((rule.reward_type, change.grant))
    first = plan.changes[0]
    if plan.broken is not None:
        previous, last_day = plan.broken
        out.progress(
            "streak.broken",
            rule,
            user_id,
            (user_id, rule.id, first.day),
            occurred_at,
            day=first.day,
            previous_streak=previous,
            last_day=last_day,
        )
    out.progress(
        "checkin.recorded",
        rule,
        user_id,
        (user_id, rule.id, first.day),
        occurred_at,
        paid,
        day=first.day,
        kind=first.kind,
        streak=first.streak,
    )
    return paid


async def apply_checkins(
    session: AsyncSession, matches: Sequence[Match], out: Output, tz: ZoneInfo
) -> None:
    """Check-in behaviors of a batch, in order (the caller holds each (user, rule) lock)."""
    if not matches:
        return
    earliest: dict[tuple[str, str], date] = {}
    for event, rule, _ in matches:
        day = checkin_day(event.occurred_at, tz)
        key = (event.user_id, rule.id)
        earliest[key] = min(day, earliest.get(key, day))
    books = await load_books(session, earliest)
    for event, rule, _ in matches:
        assert rule.ladder is not None
        book = books[(event.user_id, rule.id)]
        plan = book.check_in(rule.ladder, checkin_day(event.occurred_at, tz), "normal")
        if plan is not None:
            record(out, rule, event.user_id, plan, event.behavior_id, event.occurred_at)
    await repo.save_checkins(session, changed_rows(books))


def changed_rows(books: dict[tuple[str, str], DayBook]) -> list[dict[str, Any]]:
    return [
        {
            "user_id": user_id,
            "task_id": task_id,
            "day": day,
            "kind": book.days[day].kind,
            "streak": book.days[day].streak,
            "paid": book.days[day].paid,
        }
        for (user_id, task_id), book in books.items()
        for day in sorted(book.changed)
    ]


# --- the calendar ------------------------------------------------------------------------------


def month_bounds(month: str) -> tuple[date, date]:
    first = date.fromisoformat(f"{month}-01")
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


async def checkin_rule(session: AsyncSession, task_id: str | None) -> Any:
    """The check-in rule asked for, or the first active one."""
    row = (
        await repo.get_task(session, task_id)
        if task_id is not None
        else await repo.first_checkin_task(session)
    )
    if row is None or row.kind != "checkin":
        raise NotFound("check-in rule", task_id or "(none active)")
    return rule_from_row(row)


async def calendar(
    session: AsyncSession,
    user_id: str,
    task_id: str | None,
    month: str | None,
    tz: ZoneInfo,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A month of check-ins, the current and longest streaks, and what today and tomorrow
    pay (tomorrow: if the user checks in today, when they have not yet)."""
    rule = await checkin_rule(session, task_id)
    assert rule.ladder is not None
    today = (now or datetime.now(UTC)).astimezone(tz).date()
    month = month or today.strftime("%Y-%m")
    first, last = month_bounds(month)
    shown = await repo.checkins_between(session, user_id, rule.id, first, last)
    recent = {
        r.day: r.streak
        for r in await repo.checkins_between(
            session, user_id, rule.id, today - timedelta(days=1), today
        )
    }
    streak = current_streak(recent, today)
    if today in recent:
        today_reward = next(
            (r.paid for r in shown if r.day == today),
            rule.ladder.amount(recent[today]),
        )
        through_today = recent[today]
    else:
        today_reward = rule.ladder.amount(streak + 1)
        through_today = streak + 1
    return {
        "user_id": user_id,
        "task_id": rule.id,
        "month": month,
        "reward_type": rule.reward_type,
        "days": [{"day": r.day, "kind": r.kind} for r in shown],
        "current_streak": streak,
        "longest_streak": await repo.longest_streak(session, user_id, rule.id),
        "today_reward": today_reward,
        "tomorrow_reward": rule.ladder.amount(through_today + 1),
    }


# --- make-ups ----------------------------------------------------------------------------------


def makeup_debit_key(user_id: str, task_id: str, day: date) -> str:
    """One debit per made-up day, whoever retries it and with whatever request key."""
    return f"checkin-makeup:{task_id}:{user_id}:{day.isoformat()}"


class MakeupRefused(DomainError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


async def makeup(
    db: Database,
    ledger: LedgerClient,
    user_id: str,
    task_id: str,
    day: date,
    idempotency_key: str,
    tz: ZoneInfo,
    now: datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """补签 `day` for `user_id` on the check-in rule `task_id`. Returns (answer, created)."""
    today = (now or datetime.now(UTC)).astimezone(tz).date()
    rule, cost, done = await _record_makeup(db, user_id, task_id, day, idempotency_key, today)
    if done is not None:
        return done, False
    await _pay_makeup(db, ledger, rule, user_id, day, cost)
    return await _add_makeup_day(db, rule, user_id, day, cost, tz)


async def _record_makeup(
    db: Database, user_id: str, task_id: str, day: date, idempotency_key: str, today: date
) -> tuple[Rule, int, dict[str, Any] | None]:
    """Step 1: the request is checked and recorded (it counts toward the limit from now on).
    Returns the rule, the cost, and the answer when the day was made up before."""
    async with db.transaction() as session:
        rule = await checkin_rule(session, task_id)
        await repo.lock_progress(session, [lock_key(user_id, rule.id)])
        found = await repo.makeup_of(session, user_id, rule.id, day)
        if found is not None and found.status == "done":
            return rule, found.cost_points, dict(found.result)
        if found is None:
            await _check_makeup(session, rule, user_id, day, today)
            await repo.insert_makeup(
                session,
                {
                    "user_id": user_id,
                    "task_id": rule.id,
                    "day": day,
                    "idempotency_key": idempotency_key,
                    "status": "pending",
                    "cost_points": rule.makeup.cost_points,
                },
            )
        cost = found.cost_points if found is not None else rule.makeup.cost_points
    return rule, cost, None


async def _pay_makeup(
    db: Database, ledger: LedgerClient, rule: Rule, user_id: str, day: date, cost: int
) -> None:
    """Step 2: the ledger takes the cost, no lock held meanwhile."""
    if cost > 0:
        try:
            await ledger.debit(
                user_id, cost, makeup_debit_key(user_id, rule.id, day), f"补签 make-up {day}"
            )
        except DomainError as exc:
            if exc.status >= 500:
                raise  # no definite answer: stays pending, the same request resumes it
            async with db.transaction() as session:
                await repo.drop_makeup(session, user_id, rule.id, day)
            raise


async def _add_makeup_day(
    db: Database, rule: Rule, user_id: str, day: date, cost: int, tz: ZoneInfo
) -> tuple[dict[str, Any], bool]:
    """Step 3: the day is added and paid, under the (user, rule) lock. Returns (answer,
    created): a concurrent request may have finished it first."""
    assert rule.ladder is not None  # a check-in rule's (checkin_rule)
    async with db.transaction() as session:
        await repo.lock_progress(session, [lock_key(user_id, rule.id)])
        found = await repo.makeup_of(session, user_id, rule.id, day)
        if found is not None and found.status == "done":
            return dict(found.result), False
        books = await load_books(session, {(user_id, rule.id): day})
        book = books[(user_id, rule.id)]
        out = Output(tiers=await tier_book(session, {user_id}), tz=tz)
        moment = datetime.combine(day, datetime.min.time(), tz)
        plan = book.check_in(rule.ladder, day, "makeup")
        paid = (
            record(out, rule, user_id, plan, f"makeup:{rule.id}:{user_id}:{day}", moment)
            if plan is not None
            else []
        )
        streak = book.days[day].streak
        await repo.save_checkins(session, changed_rows(books))
        await out.write(session)
        answer = {
            "user_id": user_id,
            "task_id": rule.id,
            "day": day.isoformat(),
            "kind": "makeup",
            "streak": streak,
            "cost_points": cost,
            "rewards": [{"asset": a, "amount": n} for a, n in paid],
        }
        await repo.finish_makeup(session, user_id, rule.id, day, answer)
    return answer, True


async def _check_makeup(
    session: AsyncSession, rule: Rule, user_id: str, day: date, today: date
) -> None:
    """Refuse a make-up the rule does not allow, of a day already checked in, or past the
    monthly limit (409)."""
    if rule.makeup is None or not rule.active:
        raise MakeupRefused("makeup_not_allowed", "this check-in rule offers no make-ups")
    if not (today - timedelta(days=rule.makeup.window_days) <= day < today):
        raise MakeupRefused(
            "makeup_not_allowed",
            f"only a missed day of the last {rule.makeup.window_days} days can be made up",
        )
    if await repo.checkins_between(session, user_id, rule.id, day, day):
        raise MakeupRefused("makeup_not_allowed", f"{day} is already checked in")
    first, last = month_bounds(day.strftime("%Y-%m"))
    if await repo.makeups_in_month(session, user_id, rule.id, first, last) >= (
        rule.makeup.max_per_month
    ):
        raise MakeupRefused(
            "makeup_limit_reached",
            f"at most {rule.makeup.max_per_month} make-ups per month",
        )
