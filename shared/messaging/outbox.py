"""Outbox writes: events queued in the transaction that caused them (one row per call, holding
them all), and the statements that send them (the on-commit publisher and the relay share
those)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared import tracing


@dataclass(frozen=True)
class OutgoingEvent:
    topic: str
    key: str | None
    payload: dict[str, Any] | str  # a dict, or JSON text already (model_dump_json is faster)
    # the trace it continues, when the code that built it knows better than its key does
    # (shared/tracing.py: by default, the current request's, or the batch's record with its key)
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class QueuedRow:
    """One message a transaction queued, kept so that it can be published once that commits.
    `id` is the outbox row holding it (with the transaction's other messages of that call)."""

    id: int
    topic: str
    key: str | None
    payload: str
    traceparent: str | None = None  # sent as the message's `traceparent` header


# session.info key under which add_to_outbox lists the messages the transaction wrote
QUEUED_ROWS = "jifen.outbox.queued"


def queued_rows(session: AsyncSession) -> list[QueuedRow]:
    rows: list[QueuedRow] = session.info.get(QUEUED_ROWS, [])
    return rows


def payload_text(event: OutgoingEvent) -> str:
    return event.payload if isinstance(event.payload, str) else json.dumps(event.payload)


async def add_to_outbox(
    session: AsyncSession, outbox: Table, events: Iterable[OutgoingEvent]
) -> int:
    """Queue events for publishing, in order: one outbox row holds them all.

    A row per event was inserted, and deleted once sent, at every hop: at 1,000 events a batch
    that was thousands of rows, index entries and JSON parses per transaction where one row of
    three arrays does (docs/BENCHMARKS.md, issue 30). The payloads are kept as the JSON text
    they are sent as. The messages are also listed in the session (see `queued_rows`) so that
    the service can publish them as soon as the transaction commits; the relay sweeps whatever
    that misses, a whole row at a time.

    Each message's traceparent (shared/tracing.py) is kept in a fourth array, left NULL when
    no message of the row has one: then nothing more is written or read.
    """
    topics: list[str] = []
    keys: list[str | None] = []
    payloads: list[str] = []
    named: list[str | None] = []
    for e in events:
        topics.append(e.topic)
        keys.append(e.key)
        payloads.append(payload_text(e))
        named.append(e.traceparent)
    if not topics:
        return 0
    traceparents = tracing.outgoing(keys, named)
    queued = session.info.setdefault(QUEUED_ROWS, [])
    if traceparents is None:
        row_id = (
            await session.execute(
                text(_INSERT.format(table=outbox.name)),
                {"topics": topics, "keys": keys, "payloads": payloads},
            )
        ).scalar_one()
        queued.extend(
            QueuedRow(row_id, t, k, p) for t, k, p in zip(topics, keys, payloads, strict=True)
        )
    else:
        row_id = (
            await session.execute(
                text(_INSERT_TRACED.format(table=outbox.name)),
                {"topics": topics, "keys": keys, "payloads": payloads, "traces": traceparents},
            )
        ).scalar_one()
        queued.extend(
            QueuedRow(row_id, t, k, p, tp)
            for t, k, p, tp in zip(topics, keys, payloads, traceparents, strict=True)
        )
    return len(topics)


_INSERT = (
    "INSERT INTO {table} (topics, keys, payloads) VALUES ("
    "CAST(:topics AS text[]), CAST(:keys AS text[]), CAST(:payloads AS text[])"
    ") RETURNING id"
)
_INSERT_TRACED = (
    "INSERT INTO {table} (topics, keys, payloads, traceparents) VALUES ("
    "CAST(:topics AS text[]), CAST(:keys AS text[]), CAST(:payloads AS text[]), "
    "CAST(:traces AS text[])) RETURNING id"
)


# The outbox holds only what has not been sent: a row is deleted once the broker has
# acknowledged every message in it, which is its mark as sent (the topic is the record of
# what went out). Deleting writes no new row version and no index entry, where marking a
# `published_at` wrote both, and nothing is left to purge. (docs/BENCHMARKS.md, eighth round)
#
# The messages of each row in order, oldest row first. Rows younger than :min_age_s are left
# to the publisher that runs after their commit; :limit counts rows (transactions).
# (A NULL traceparents array unnests as NULLs: unnest pads the shorter arrays.)
MESSAGES = (
    "SELECT o.id, m.topic, m.key, m.payload, m.traceparent FROM ({rows}) AS o "
    "CROSS JOIN LATERAL unnest(o.topics, o.keys, o.payloads, o.traceparents) WITH ORDINALITY "
    "AS m(topic, key, payload, traceparent, n) ORDER BY o.id, m.n"
)
LOCK_UNPUBLISHED = text(
    MESSAGES.format(
        rows="SELECT id, topics, keys, payloads, traceparents FROM outbox WHERE created_at <= "
        "now() - make_interval(secs => CAST(:min_age_s AS double precision)) "
        "ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
    )
)
# Every unsent message (tests and tools read the outbox through this).
UNSENT_MESSAGES = MESSAGES.format(
    rows="SELECT id, topics, keys, payloads, traceparents FROM outbox"
)
# Messages the publisher has not sent and the relay is due to (the backlog gauge and its alert).
COUNT_OVERDUE = text(
    "SELECT coalesce(sum(cardinality(topics)), 0) FROM outbox "
    "WHERE created_at <= now() - make_interval(secs => CAST(:min_age_s AS double precision))"
)
# Messages waiting in the outbox, sent or not yet swept (the dev stack's backlog).
COUNT_UNSENT = "SELECT coalesce(sum(cardinality(topics)), 0) FROM outbox"
DELETE_PUBLISHED = text("DELETE FROM outbox WHERE id = ANY(:ids)")
