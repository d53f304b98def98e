"""SQL of the behavior history: task_progress's inbox and what the dry run replays."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bulk import Bulk

HISTORY = Bulk(
    "behavior_history",
    {
        "behavior_id": "text",
        "user_id": "text",
        "action": "text",
        "occurred_at": "timestamptz",
        "attributes": "jsonb",
    },
)
_INSERT_HISTORY = HISTORY.insert("ON CONFLICT DO NOTHING RETURNING behavior_id")


async def insert_history(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    """Keep behaviors for the dry run; returns the ids not kept before.

    The behavior id is the key, so this is also task_progress's inbox: an id already kept (a
    re-read, a duplicate) is not returned, and a concurrent transaction inserting the same id
    blocks here until it commits or rolls back, as an inbox claim would."""
    if not rows:
        return set()
    result = await session.execute(_INSERT_HISTORY, HISTORY.params(rows))
    return set(result.scalars())


class StoredBehavior(NamedTuple):
    behavior_id: str
    user_id: str
    action: str
    occurred_at: datetime
    attributes: Any  # a dict, or None when the caller's rule never reads attributes


class StoredRow(asyncpg.Record):
    """A stored behavior as asyncpg decodes it (no attributes), readable by name like the
    live consumer's events: no Python object is made per row."""

    __slots__ = ()
    behavior_id = property(itemgetter(0))
    user_id = property(itemgetter(1))
    action = property(itemgetter(2))
    occurred_at = property(itemgetter(3))
    attributes = property(itemgetter(4))


async def stream_history(
    session: AsyncSession,
    action: str,
    start: datetime,
    end: datetime,
    *,
    with_attributes: bool = True,
    chunk: int = 20_000,
) -> AsyncIterator[Sequence[Any]]:
    """The stored behaviors of `action` in [start, end), in time order (as the index has
    them), `chunk` at a time through a server-side cursor of the session's own connection
    (its transaction and snapshot): memory stays flat however many there are. Read with
    asyncpg directly: SQLAlchemy's rows cost twice the time of the whole decision. Without
    attributes (for a rule that never reads them) each row's attributes are None."""
    attributes = "attributes::text" if with_attributes else "NULL"
    sql = (
        f"SELECT behavior_id, user_id, action, occurred_at, {attributes} FROM behavior_history "
        "WHERE action = $1 AND occurred_at >= $2 AND occurred_at < $3 ORDER BY occurred_at"
    )
    raw = (await (await session.connection()).get_raw_connection()).driver_connection
    assert raw is not None
    cursor = await raw.cursor(sql, action, start, end, record_class=StoredRow)
    while True:
        rows = await cursor.fetch(chunk)
        if not rows:
            return
        if with_attributes:
            yield [StoredBehavior(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]
        else:
            yield rows
