"""Outbox writes: events queued in the transaction that caused them, and the statements that
send them (the on-commit publisher and the relay share those)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class OutgoingEvent:
    topic: str
    key: str | None
    payload: dict[str, Any] | str  # a dict, or JSON text already (model_dump_json is faster)


@dataclass(frozen=True, slots=True)
class QueuedRow:
    """An outbox row a transaction wrote, kept so that it can be published once that commits."""

    id: int
    topic: str
    key: str | None
    payload: str


# session.info key under which add_to_outbox lists the rows the transaction wrote
QUEUED_ROWS = "jifen.outbox.queued"


def queued_rows(session: AsyncSession) -> list[QueuedRow]:
    rows: list[QueuedRow] = session.info.get(QUEUED_ROWS, [])
    return rows


def payload_text(event: OutgoingEvent) -> str:
    return event.payload if isinstance(event.payload, str) else json.dumps(event.payload)


async def add_to_outbox(
    session: AsyncSession, outbox: Table, events: Iterable[OutgoingEvent]
) -> int:
    """Queue events for publishing, in order, with one set-based statement.

    The rows are also listed in the session (see `queued_rows`) so that the service can publish
    them as soon as the transaction commits; the relay sweeps whatever that misses.
    """
    topics: list[str] = []
    keys: list[str | None] = []
    payloads: list[str] = []
    for e in events:
        topics.append(e.topic)
        keys.append(e.key)
        payloads.append(payload_text(e))
    if topics:
        result = await session.execute(
            text(
                f"INSERT INTO {outbox.name} (topic, key, payload) "
                "SELECT t, k, CAST(p AS jsonb) FROM unnest("
                "CAST(:topics AS text[]), CAST(:keys AS text[]), CAST(:payloads AS text[])"
                ") WITH ORDINALITY AS x(t, k, p, n) ORDER BY n RETURNING id"
            ),
            {"topics": topics, "keys": keys, "payloads": payloads},
        )
        # Identity values are drawn row by row in insertion order, so ascending ids line up
        # with the events as given.
        ids = sorted(result.scalars())
        session.info.setdefault(QUEUED_ROWS, []).extend(map(QueuedRow, ids, topics, keys, payloads))
    return len(topics)


# The outbox holds only what has not been sent: a row is deleted once the broker has
# acknowledged it, which is its mark as sent (the topic is the record of what went out).
# Deleting writes no new row version and no index entry, where marking a `published_at`
# wrote both, and nothing is left to purge. (docs/BENCHMARKS.md, eighth round)
#
# payload::text hands the relay the JSON exactly as stored, with no decode and re-encode.
# Rows younger than :min_age_s are left to the publisher that runs after their commit.
LOCK_UNPUBLISHED = text(
    "SELECT id, topic, key, payload::text AS payload FROM outbox "
    "WHERE created_at <= now() - make_interval(secs => CAST(:min_age_s AS double precision)) "
    "ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
)
# What the publisher has not sent and the relay is due to (the backlog gauge and its alert).
COUNT_OVERDUE = text(
    "SELECT count(*) FROM outbox "
    "WHERE created_at <= now() - make_interval(secs => CAST(:min_age_s AS double precision))"
)
DELETE_PUBLISHED = text("DELETE FROM outbox WHERE id = ANY(:ids)")
