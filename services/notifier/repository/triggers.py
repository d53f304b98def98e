"""The daily triggers: the read models they scan (check-ins, task days) and their runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession


async def record_checkins(session: AsyncSession, rows: Sequence[tuple[str, date, int]]) -> None:
    if rows:
        await session.execute(
            text(
                "INSERT INTO checkin_state (user_id, last_day, streak) "
                "SELECT * FROM unnest(CAST(:u AS text[]), CAST(:d AS date[]), "
                "CAST(:s AS int[])) "
                "ON CONFLICT (user_id) DO UPDATE SET last_day = EXCLUDED.last_day, "
                "streak = EXCLUDED.streak WHERE checkin_state.last_day <= EXCLUDED.last_day"
            ),
            {"u": [r[0] for r in rows], "d": [r[1] for r in rows], "s": [r[2] for r in rows]},
        )


async def record_task_days(session: AsyncSession, rows: Sequence[tuple[str, str, date]]) -> None:
    if rows:
        await session.execute(
            text(
                "INSERT INTO task_days (user_id, task_id, last_day) "
                "SELECT * FROM unnest(CAST(:u AS text[]), CAST(:t AS text[]), "
                "CAST(:d AS date[])) "
                "ON CONFLICT (user_id, task_id) DO UPDATE SET last_day = EXCLUDED.last_day "
                "WHERE task_days.last_day < EXCLUDED.last_day"
            ),
            {"u": [r[0] for r in rows], "t": [r[1] for r in rows], "d": [r[2] for r in rows]},
        )


async def streaks_at_risk(
    session: AsyncSession, yesterday: date, minimum: int, after: str, limit: int
) -> list[tuple[str, int]]:
    rows = await session.execute(
        text(
            "SELECT user_id, streak FROM checkin_state WHERE last_day = :d AND streak >= :m "
            "AND user_id > :after ORDER BY user_id LIMIT :limit"
        ),
        {"d": yesterday, "m": minimum, "after": after, "limit": limit},
    )
    return [(str(user_id), int(streak)) for user_id, streak in rows]


async def unfinished_tasks(
    session: AsyncSession, since: date, today: date, after: str, limit: int
) -> list[tuple[str, int]]:
    """Users with daily tasks done in [since, today) but not today, and how many."""
    rows = await session.execute(
        text(
            "SELECT user_id, count(*) AS open FROM task_days "
            "WHERE last_day >= :since AND last_day < :today AND user_id > :after "
            "GROUP BY user_id ORDER BY user_id LIMIT :limit"
        ),
        {"since": since, "today": today, "after": after, "limit": limit},
    )
    return [(str(user_id), int(count)) for user_id, count in rows]


async def start_run(session: AsyncSession, trigger: str, tz: str, day: date) -> Any:
    """The run of a daily trigger for one timezone and day, created when missing and locked
    (None when another replica holds it)."""
    await session.execute(
        text(
            "INSERT INTO trigger_runs (trigger, timezone, day) VALUES (:t, :z, :d) "
            "ON CONFLICT DO NOTHING"
        ),
        {"t": trigger, "z": tz, "d": day},
    )
    rows = await session.execute(
        text(
            "SELECT * FROM trigger_runs WHERE trigger = :t AND timezone = :z AND day = :d "
            "FOR UPDATE SKIP LOCKED"
        ),
        {"t": trigger, "z": tz, "d": day},
    )
    return rows.one_or_none()


async def advance_run(
    session: AsyncSession,
    trigger: str,
    tz: str,
    day: date,
    cursor: str | None,
    queued: int,
    done: bool,
) -> None:
    await session.execute(
        text(
            "UPDATE trigger_runs SET cursor = :c, queued = queued + :q, "
            "status = CASE WHEN :done THEN 'done' ELSE 'running' END, "
            "finished_at = CASE WHEN :done THEN now() END "
            "WHERE trigger = :t AND timezone = :z AND day = :d"
        ),
        {"t": trigger, "z": tz, "d": day, "c": cursor, "q": queued, "done": done},
    )


async def restart_run(session: AsyncSession, trigger: str, tz: str, day: date) -> None:
    await session.execute(
        text(
            "UPDATE trigger_runs SET status = 'running', cursor = NULL, finished_at = NULL "
            "WHERE trigger = :t AND timezone = :z AND day = :d"
        ),
        {"t": trigger, "z": tz, "d": day},
    )


async def runs(session: AsyncSession, limit: int) -> list[Row[Any]]:
    rows = await session.execute(
        text("SELECT * FROM trigger_runs ORDER BY day DESC, trigger, timezone LIMIT :limit"),
        {"limit": limit},
    )
    return list(rows)
