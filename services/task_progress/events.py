"""What task_progress writes for a decision: grant rows (its own record), rewards.grants
commands for the ledger (grants, and clawbacks of refunded orders) and progress.events for the
services that follow a user's progress, all through the outbox of the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from services.task_progress import repository as repo
from services.task_progress.domain import Clawback, Rule, TierBook, multiplied
from services.task_progress.metrics import CLAWBACKS, GRANTS_ISSUED
from services.task_progress.models import messaging
from shared.events import (
    DEFAULT_ASSET,
    PROGRESS_EVENTS,
    REWARDS_GRANTS,
    ClawbackCommand,
    GrantCommand,
    ProgressEvent,
    RewardAmount,
    stable_id,
)
from shared.messaging import OutgoingEvent, add_to_outbox
from shared.validity import DEFAULT_TZ, expires_at_for

# The progress.events types task_progress publishes (ProgressEvent.type's values).
ProgressType = Literal["task.completed", "checkin.recorded", "streak.broken"]


@dataclass
class Output:
    """A batch's writes, gathered and then written with one statement per table."""

    grant_rows: list[dict[str, Any]] = field(default_factory=list)
    outgoing: list[OutgoingEvent] = field(default_factory=list)
    tiers: TierBook = field(default_factory=TierBook)  # points are multiplied by the tier held
    tz: tzinfo = DEFAULT_TZ  # the business timezone: a month's or a year's end is in it

    def grant(
        self,
        rule: Rule,
        user_id: str,
        *,
        grant_id: str,
        asset: str,
        points: int,
        period_key: str,
        completion: int,
        cause: str,
        occurred_at: datetime,
        available_at: datetime | None,
        what: str,
    ) -> None:
        """One grant of one asset; the ledger entry's reason names the rule version. Points
        are multiplied by the member tier the user held when the behavior happened. A rule
        with its own validity sends it with the instant it gives (kept in the grant row too);
        without one the ledger applies the asset's default."""
        validity = rule.validity
        expires_at = expires_at_for(occurred_at, validity, self.tz) if validity else None
        if asset == DEFAULT_ASSET:
            multiplier = self.tiers.multiplier(user_id, occurred_at)
            if multiplier != 1.0:
                points = multiplied(points, multiplier)
                what = f"{what}, tier x{multiplier:g}"
        command = GrantCommand(
            grant_id=grant_id,
            user_id=user_id,
            asset=asset,
            points=points,
            expires_at=expires_at,
            validity=validity,
            available_at=available_at,
            task_id=rule.id,
            period_key=period_key,
            completion=completion,
            causation_event_id=cause,
            occurred_at=occurred_at,
            reason=f"task {rule.id} v{rule.version}: {what}",
        )
        self.grant_rows.append(
            {
                "grant_id": grant_id,
                "user_id": user_id,
                "task_id": rule.id,
                "period_key": period_key,
                "completion": completion,
                "points": points,
                "expires_at": expires_at,
                "causation_event_id": cause,
                "asset": asset,
                "available_at": available_at,
                "rule_version": rule.version,
            }
        )
        self.outgoing.append(OutgoingEvent(REWARDS_GRANTS, user_id, command.model_dump_json()))
        GRANTS_ISSUED.labels(rule.id).inc()

    def progress(
        self,
        event_type: ProgressType,
        rule: Rule,
        user_id: str,
        identity: tuple[object, ...],
        occurred_at: datetime,
        rewards: list[tuple[str, int]] | None = None,
        **fields: Any,
    ) -> None:
        """One progress.events message; `identity` makes its event_id (the same decision
        replayed publishes the same id)."""
        event = ProgressEvent(
            type=event_type,
            event_id=stable_id("progress", event_type, *identity),
            user_id=user_id,
            task_id=rule.id,
            rule_version=rule.version,
            rewards=[RewardAmount(asset=a, amount=n) for a, n in rewards or []],
            occurred_at=occurred_at,
            **fields,
        )
        self.outgoing.append(OutgoingEvent(PROGRESS_EVENTS, user_id, event.model_dump_json()))

    async def write(self, session: AsyncSession) -> int:
        await repo.insert_grants(session, self.grant_rows)
        await add_to_outbox(session, messaging.outbox, self.outgoing)
        return len(self.grant_rows)


def clawback_events(
    user_id: str,
    clawbacks: Sequence[Clawback],
    reference: str,
    reason: str,
    occurred_at: datetime,
) -> list[OutgoingEvent]:
    """One ClawbackCommand per clawed grant of one order (rewards.grants, by user)."""
    outgoing = []
    for c in clawbacks:
        command = ClawbackCommand(
            clawback_id=c.clawback_id,
            grant_id=c.grant_id,
            user_id=user_id,
            asset=c.asset,
            clawed_total=c.clawed_total,
            reference=reference,
            reason=reason,
            occurred_at=occurred_at,
        )
        outgoing.append(OutgoingEvent(REWARDS_GRANTS, user_id, command.model_dump_json()))
        CLAWBACKS.labels(c.asset).inc()
    return outgoing


def day_key(day: date) -> str:
    return day.isoformat()


async def tier_book(session: AsyncSession, user_ids: set[str]) -> TierBook:
    """The tier changes known for these users."""
    book = TierBook()
    for r in await repo.tier_changes_of(session, sorted(user_ids)):
        book.add(r.user_id, r.effective_at, r.sequence, float(r.multiplier))
    return book
