"""behavior_sensor use cases: intake (Kafka) and processing (enrich, screen, publish).

HTTP intake (`intake.py`) only validates and records (source, event_id), so an upstream's
request is answered as soon as that commits; the processor then enriches, applies the anti-farming limit and publishes
through the outbox, in batches, in a worker that any number of replicas may run. Kafka intake
has no caller waiting, so it records and processes a batch in one transaction: one stage and
one hand-over fewer on the way to the points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.behavior_sensor import events
from services.behavior_sensor import repository as repo
from services.behavior_sensor.domain import FarmingLimits, window_start
from services.behavior_sensor.enrichment import Enricher
from services.behavior_sensor.intake import count_intake
from services.behavior_sensor.metrics import EVENTS_DIVERTED
from services.behavior_sensor.models import messaging
from services.behavior_sensor.repository import CounterKey
from shared import tracing
from shared.errors import DomainError, NotFound
from shared.events import BehaviorEnvelope
from shared.messaging import OutgoingEvent, add_to_outbox


async def intake_and_process(
    session: AsyncSession,
    envelopes: list[BehaviorEnvelope],
    channel: str,
    enrichments: Mapping[tuple[str, str], dict[str, Any]],
    limits: FarmingLimits,
    traceparents: list[str | None] | None = None,
) -> int:
    """Record new behaviors and process them in the same transaction; returns how many were new.

    `enrichments`: what the enricher said of each behavior, by (source, event_id), asked
    before the transaction (none when no remote enricher is configured). `traceparents`: the
    trace of each (None: none has one)."""
    rows = await repo.record_received(
        session, envelopes, channel, as_published=True, traceparents=traceparents
    )
    count_intake(envelopes, len(rows))
    return await process_rows(
        session, rows, [enrichments.get((r.source, r.event_id), {}) for r in rows], limits
    )


def enrichment_input(behavior: Any) -> dict[str, Any]:
    """What the enricher is sent of a behavior (a received row or an envelope)."""
    return {
        "event_id": behavior.event_id,
        "source": behavior.source,
        "user_id": behavior.user_id,
        "action": behavior.action,
        "occurred_at": behavior.occurred_at.isoformat(),
        "attributes": behavior.attributes,
    }


async def process_pending(session: AsyncSession, limits: FarmingLimits, batch_size: int) -> int:
    """Screen and publish one batch of received behaviors, without enrichment; returns how many."""
    rows = await repo.claim_pending(session, batch_size)
    return await process_rows(session, rows, [{} for _ in rows], limits)


async def waiting(session: AsyncSession, batch_size: int) -> list[Any]:
    """Received behaviors waiting for the processor, read without locking them."""
    return await repo.pending(session, batch_size)


async def enrich(enricher: Enricher, rows: list[Any]) -> dict[int, dict[str, Any]]:
    """Ask the enricher about received behaviors; its answers by row id. A remote call: make
    it outside any transaction."""
    answers = await enricher.enrich([enrichment_input(r) for r in rows])
    return {r.id: answer for r, answer in zip(rows, answers, strict=True)}


async def process_enriched(
    session: AsyncSession, enrichments: dict[int, dict[str, Any]], limits: FarmingLimits
) -> int:
    """Claim the enriched behaviors no other replica took meanwhile (SKIP LOCKED, still
    received) and screen and publish them with their enrichment; returns how many."""
    rows = await repo.claim_pending(session, len(enrichments), ids=list(enrichments))
    return await process_rows(session, rows, [enrichments[r.id] for r in rows], limits)


async def process_rows(
    session: AsyncSession,
    rows: list[Any],
    enrichments: list[dict[str, Any]],
    limits: FarmingLimits,
) -> int:
    """Screen and publish these received (and locked or just inserted) behaviors, with the
    enrichment already asked for each (in order).

    A row's outcome is written only where it differs from the row as it stands, so rows
    inserted as published (Kafka intake) are written again only when diverted or enriched.
    What a row publishes continues the trace it came in with (with tracing on, in a span
    per row).
    """
    if not rows:
        return 0
    keys = [(r.user_id, r.action, window_start(r.occurred_at, limits.window_seconds)) for r in rows]
    counts = await repo.lock_counters(
        session,
        [k for r, k in zip(rows, keys, strict=True) if limits.limit_for(r.action) is not None],
    )
    with tracing.spans_for([r.traceparent for r in rows], "behavior screen") as traceparents:
        outcomes, outgoing = _screen(rows, enrichments, limits, counts, traceparents)
        await repo.save_counters(session, {k: v for k, v in counts.items()})
        await repo.mark_processed(session, outcomes)
        await add_to_outbox(session, messaging.outbox, outgoing)
    return len(rows)


def _screen(
    rows: list[Any],
    enrichments: list[dict[str, Any]],
    limits: FarmingLimits,
    counts: dict[CounterKey, int],
    traceparents: Sequence[str | None],
) -> tuple[list[dict[str, Any]], list[OutgoingEvent]]:
    """Count each behavior in its anti-farming window (`counts`, updated in place): under
    the limit it is published, over it diverted. Returns the rows' outcomes to write and
    the messages to publish (each continuing its row's trace)."""
    outcomes: list[dict[str, Any]] = []
    outgoing: list[OutgoingEvent] = []
    now = datetime.now(UTC)
    for row, enrichment, traceparent in zip(rows, enrichments, traceparents, strict=True):
        event = events.behavior_event(row, enrichment, row.received_at or now)
        if limits.admit(counts, row.user_id, row.action, row.occurred_at):
            if row.status != "published" or row.enrichment != enrichment:
                outcomes.append(_outcome(row, "published", None, enrichment))
            outgoing.append(events.published(event, traceparent))
        else:
            reason = (
                f"over the limit of {limits.limit_for(row.action)} {row.action} per "
                f"{limits.window_seconds}s window"
            )
            outcomes.append(_outcome(row, "diverted", reason, enrichment))
            outgoing.append(events.diverted(event, reason, traceparent))
            EVENTS_DIVERTED.labels(row.action).inc()
    return outcomes, outgoing


def _outcome(
    row: Any, status: str, reason: str | None, enrichment: dict[str, Any]
) -> dict[str, Any]:
    return {"id": row.id, "status": status, "status_reason": reason, "enrichment": enrichment}


def diverted_view(row: Any) -> dict[str, Any]:
    return {
        "source": row.source,
        "event_id": row.event_id,
        "user_id": row.user_id,
        "action": row.action,
        "occurred_at": row.occurred_at.isoformat(),
        "status": row.status,
        "reason": row.status_reason,
    }


async def decide_diverted(
    session: AsyncSession, source: str, event_id: str, decision: str, note: str, by: str
) -> tuple[dict[str, Any], bool]:
    """Release (publish on behavior.events, so it is credited like any behavior) or reject
    (never published) a behavior the anti-farming limit diverted; returns (view, changed).

    A decision is final and taken once: the same decision again answers the same view and
    publishes nothing; the other one is refused (409 `invalid_transition`)."""
    status = {"release": "released", "reject": "rejected"}[decision]
    row = await repo.received(session, source, event_id)
    if row is None:
        raise NotFound("behavior", f"{source}/{event_id}")
    if row.status == status:
        return diverted_view(row), False
    if row.status != "diverted":
        raise DomainError(
            "invalid_transition",
            f"cannot {decision} a behavior that is {row.status}",
            status=409,
            behavior_status=row.status,
        )
    reason = f"{status} by {by}" + (f": {note}" if note else "")
    decided = await repo.decide_diverted(session, row.id, status, reason)
    if decided is None:  # cannot happen under the row lock; kept as a guard
        raise DomainError("invalid_transition", "the behavior was decided meanwhile", status=409)
    if status == "released":
        event = events.behavior_event(decided, decided.enrichment or {}, decided.received_at)
        # continues the trace the behavior came in with (else the operator's request's)
        published = events.published(event, decided.traceparent)
        await add_to_outbox(session, messaging.outbox, [published])
    return diverted_view(decided), True
