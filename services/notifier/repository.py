"""Every SQL statement of the notifier. Batches are set-based (one statement per batch,
arrays unnested) and the texts are fixed, so each is prepared once per connection."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.models import campaigns, devices, notifications, preferences, templates
from shared.bulk import Bulk, KeyedRows

NOTIFICATIONS = Bulk(
    "notifications",
    {
        "id": "text",
        "user_id": "text",
        "category": "text",
        "trigger": "text",
        "template": "text",
        "title": "text",
        "body": "text",
        "data": "jsonb",
        "campaign_id": "text",
        "experiment": "text",
        "variant": "text",
        "due_at": "timestamptz",
    },
)
_QUEUE = NOTIFICATIONS.insert("ON CONFLICT (id) DO NOTHING RETURNING id")

_DUE = text(
    """
    SELECT n.id, n.user_id, n.category, n.trigger, n.title, n.body, n.data, n.status,
           n.attempts, n.campaign_id, n.experiment, n.variant,
           p.reminders, p.marketing, p.quiet_enabled, p.quiet_start, p.quiet_end,
           p.timezone, p.locale
    FROM notifications n LEFT JOIN preferences p ON p.user_id = n.user_id
    WHERE n.status IN ('queued', 'deferred', 'claimed', 'sending') AND n.due_at <= :now
    ORDER BY n.due_at
    LIMIT :limit
    FOR UPDATE OF n SKIP LOCKED
    """
)

_ACTIVE_DEVICES = text(
    "SELECT token, user_id, platform FROM devices "
    "WHERE user_id = ANY(CAST(:users AS text[])) AND active ORDER BY user_id, created_at"
)

COUNTS = KeyedRows(
    Bulk("daily_counts", {"user_id": "text", "day": "date"}), "t.capped, t.marketing"
)
_SET_COUNTS = Bulk(
    "daily_counts", {"user_id": "text", "day": "date", "capped": "int", "marketing": "int"}
).update(["user_id", "day"], "capped = v.capped, marketing = v.marketing")

_DECIDED = Bulk(
    "notifications",
    {"id": "text", "status": "text", "reason": "text", "due_at": "timestamptz"},
).update(
    ["id"],
    "status = v.status, reason = v.reason, due_at = v.due_at, updated_at = now()",
)

_RECORDED = Bulk(
    "notifications",
    {
        "id": "text",
        "status": "text",
        "reason": "text",
        "due_at": "timestamptz",
        "attempts": "int",
        "provider": "text",
        "provider_message_id": "text",
        "sent_at": "timestamptz",
    },
).update(
    ["id"],
    "status = v.status, reason = v.reason, due_at = v.due_at, attempts = v.attempts, "
    "provider = v.provider, provider_message_id = v.provider_message_id, "
    "sent_at = v.sent_at, updated_at = now()",
    "AND notifications.status IN ('claimed', 'sending') RETURNING notifications.id",
)

ATTEMPTS = Bulk(
    "attempts",
    {
        "notification_id": "text",
        "device": "text",
        "provider": "text",
        "outcome": "text",
        "status_code": "smallint",
        "detail": "text",
        "provider_message_id": "text",
    },
)
_ATTEMPTS = ATTEMPTS.insert()

_SENDING = text(
    "UPDATE notifications SET status = 'sending', updated_at = now() "
    "WHERE id = ANY(CAST(:ids AS text[])) AND status = 'claimed'"
)

_DEACTIVATE = text(
    "UPDATE devices SET active = false, deactivated_reason = :reason, updated_at = now() "
    "WHERE token = ANY(CAST(:tokens AS text[])) AND active"
)

_PREFS_OF = text(
    "SELECT user_id, reminders, marketing, quiet_enabled, quiet_start, quiet_end, timezone, "
    "locale FROM preferences WHERE user_id = ANY(CAST(:users AS text[]))"
)


async def queue(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Insert notifications; an id already there (the same cause again) is left alone.
    Returns the ids that are new."""
    if not rows:
        return []
    result = await session.execute(_QUEUE, NOTIFICATIONS.params(rows))
    return [r[0] for r in result]


async def claim_due(session: AsyncSession, now: datetime, limit: int) -> list[Row[Any]]:
    return list(await session.execute(_DUE, {"now": now, "limit": limit}))


async def active_devices(session: AsyncSession, users: Iterable[str]) -> list[Row[Any]]:
    return list(await session.execute(_ACTIVE_DEVICES, {"users": sorted(set(users))}))


async def lock_counts(
    session: AsyncSession, keys: Iterable[tuple[str, date]]
) -> dict[tuple[Any, ...], Row[Any]]:
    return await COUNTS.lock(session, keys)


async def set_counts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_SET_COUNTS, _counts_params(rows))


def _counts_params(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    return {
        "b_user_id": [r["user_id"] for r in rows],
        "b_day": [r["day"] for r in rows],
        "b_capped": [r["capped"] for r in rows],
        "b_marketing": [r["marketing"] for r in rows],
    }


async def set_decided(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(
            _DECIDED,
            {
                "b_id": [r["id"] for r in rows],
                "b_status": [r["status"] for r in rows],
                "b_reason": [r["reason"] for r in rows],
                "b_due_at": [r["due_at"] for r in rows],
            },
        )


async def set_recorded(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Write the outcome of the sends; only rows still `claimed` or `sending` (not taken over
    by another replica after the lease) change. Returns the ids written."""
    if not rows:
        return set()
    result = await session.execute(
        _RECORDED,
        {
            f"b_{c}": [r[c] for r in rows]
            for c in (
                "id",
                "status",
                "reason",
                "due_at",
                "attempts",
                "provider",
                "provider_message_id",
                "sent_at",
            )
        },
    )
    return {r[0] for r in result}


async def mark_sending(session: AsyncSession, ids: Sequence[str]) -> None:
    """The next wave is about to go out: from here on its outcome is unknown until recorded."""
    if ids:
        await session.execute(_SENDING, {"ids": list(ids)})


async def insert_attempts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_ATTEMPTS, ATTEMPTS.params(rows))


async def deactivate(session: AsyncSession, tokens: Sequence[str], reason: str) -> None:
    if tokens:
        await session.execute(_DEACTIVATE, {"tokens": list(tokens), "reason": reason})


async def prefs_of(session: AsyncSession, users: Iterable[str]) -> dict[str, Row[Any]]:
    rows = await session.execute(_PREFS_OF, {"users": sorted(set(users))})
    return {r.user_id: r for r in rows}


# --- devices and preferences -------------------------------------------------------------


async def upsert_device(session: AsyncSession, user_id: str, platform: str, token: str) -> bool:
    """Register (or move, or reactivate) a device token; True when it is new."""
    result = await session.execute(
        text(
            "INSERT INTO devices (token, user_id, platform) VALUES (:token, :user_id, :platform) "
            "ON CONFLICT (token) DO UPDATE SET user_id = EXCLUDED.user_id, "
            "platform = EXCLUDED.platform, active = true, deactivated_reason = NULL, "
            "updated_at = now() RETURNING (xmax = 0) AS inserted"
        ),
        {"token": token, "user_id": user_id, "platform": platform},
    )
    return bool(result.scalar_one())


async def remove_device(session: AsyncSession, user_id: str, token: str) -> bool:
    result = await session.execute(
        devices.delete().where(devices.c.token == token, devices.c.user_id == user_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def devices_of(session: AsyncSession, user_id: str) -> list[Row[Any]]:
    rows = await session.execute(
        devices.select().where(devices.c.user_id == user_id).order_by(devices.c.created_at)
    )
    return list(rows)


async def preferences_of(session: AsyncSession, user_id: str) -> Row[Any] | None:
    rows = await session.execute(preferences.select().where(preferences.c.user_id == user_id))
    return rows.one_or_none()


async def put_preferences(session: AsyncSession, values: dict[str, Any]) -> None:
    columns = ", ".join(values)
    binds = ", ".join(f":{c}" for c in values)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in values if c != "user_id")
    await session.execute(
        text(
            f"INSERT INTO preferences ({columns}) VALUES ({binds}) "
            f"ON CONFLICT (user_id) DO UPDATE SET {sets}, updated_at = now()"
        ),
        values,
    )


async def timezones_in_use(session: AsyncSession) -> list[str]:
    rows = await session.execute(
        text("SELECT DISTINCT timezone FROM preferences WHERE timezone IS NOT NULL")
    )
    return [r[0] for r in rows]


# --- notifications -----------------------------------------------------------------------


async def notifications_of(
    session: AsyncSession, user_id: str, limit: int, before: datetime | None
) -> list[Row[Any]]:
    query = notifications.select().where(notifications.c.user_id == user_id)
    if before is not None:
        query = query.where(notifications.c.created_at < before)
    rows = await session.execute(
        query.order_by(notifications.c.created_at.desc(), notifications.c.id).limit(limit)
    )
    return list(rows)


async def notification(session: AsyncSession, notification_id: str, lock: bool = False) -> Any:
    query = notifications.select().where(notifications.c.id == notification_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).one_or_none()


async def mark_opened(session: AsyncSession, notification_id: str, at: datetime) -> None:
    await session.execute(
        notifications.update()
        .where(notifications.c.id == notification_id, notifications.c.opened_at.is_(None))
        .values(opened_at=at, updated_at=at)
    )


async def attempts_of(session: AsyncSession, notification_id: str) -> list[Row[Any]]:
    rows = await session.execute(
        text(
            "SELECT device, provider, outcome, status_code, detail, provider_message_id, "
            "created_at FROM attempts WHERE notification_id = :id ORDER BY id"
        ),
        {"id": notification_id},
    )
    return list(rows)


# --- templates ---------------------------------------------------------------------------


async def stored_templates(session: AsyncSession) -> dict[str, Row[Any]]:
    rows = await session.execute(templates.select())
    return {r.code: r for r in rows}


async def put_template(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(
        text(
            "INSERT INTO templates (code, category, texts, variables) "
            "VALUES (:code, :category, CAST(:texts AS jsonb), CAST(:variables AS jsonb)) "
            "ON CONFLICT (code) DO UPDATE SET category = EXCLUDED.category, "
            "texts = EXCLUDED.texts, variables = EXCLUDED.variables, updated_at = now()"
        ),
        values,
    )


# --- campaigns ---------------------------------------------------------------------------


async def insert_campaign(session: AsyncSession, values: dict[str, Any]) -> bool:
    result = await session.execute(
        text(
            "INSERT INTO campaigns (id, name, audience, category, template, title, body, "
            "variables, send_at) VALUES (:id, :name, CAST(:audience AS jsonb), :category, "
            ":template, :title, :body, CAST(:variables AS jsonb), :send_at) "
            "ON CONFLICT (id) DO NOTHING RETURNING id"
        ),
        values,
    )
    return result.scalar_one_or_none() is not None


async def campaign(session: AsyncSession, campaign_id: str, lock: bool = False) -> Any:
    query = campaigns.select().where(campaigns.c.id == campaign_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).one_or_none()


async def campaigns_page(session: AsyncSession, limit: int) -> list[Row[Any]]:
    rows = await session.execute(
        campaigns.select().order_by(campaigns.c.created_at.desc()).limit(limit)
    )
    return list(rows)


async def campaign_counts(session: AsyncSession, campaign_id: str) -> dict[str, int]:
    rows = await session.execute(
        text("SELECT status, count(*) FROM notifications WHERE campaign_id = :id GROUP BY status"),
        {"id": campaign_id},
    )
    return {r[0]: int(r[1]) for r in rows}


async def due_campaign(session: AsyncSession, now: datetime) -> Any:
    """The next campaign to expand, locked (another replica takes the next one)."""
    rows = await session.execute(
        text(
            "SELECT * FROM campaigns WHERE status IN ('scheduled', 'expanding') "
            "AND send_at <= :now ORDER BY send_at LIMIT 1 FOR UPDATE SKIP LOCKED"
        ),
        {"now": now},
    )
    return rows.one_or_none()


async def advance_campaign(
    session: AsyncSession, campaign_id: str, cursor: str | None, added: int, done: bool
) -> None:
    await session.execute(
        text(
            "UPDATE campaigns SET cursor = :cursor, recipients = recipients + :added, "
            "status = :status, expanded_at = CASE WHEN :done THEN now() END WHERE id = :id"
        ),
        {
            "id": campaign_id,
            "cursor": cursor,
            "added": added,
            "status": "done" if done else "expanding",
            "done": done,
        },
    )


async def tier_members(session: AsyncSession, tier: str, after: str, limit: int) -> list[str]:
    rows = await session.execute(
        text(
            "SELECT user_id FROM user_tiers WHERE tier = :tier AND user_id > :after "
            "ORDER BY user_id LIMIT :limit"
        ),
        {"tier": tier, "after": after, "limit": limit},
    )
    return [r[0] for r in rows]


async def set_tiers(session: AsyncSession, rows: Sequence[tuple[str, str | None, int]]) -> None:
    """(user, tier or None, sequence): the latest tier per user (a replayed older change
    does not win over a newer one)."""
    if not rows:
        return
    await session.execute(
        text(
            "INSERT INTO user_tiers (user_id, tier, sequence) "
            "SELECT * FROM unnest(CAST(:u AS text[]), CAST(:t AS text[]), CAST(:s AS bigint[])) "
            "ON CONFLICT (user_id) DO UPDATE SET tier = EXCLUDED.tier, "
            "sequence = EXCLUDED.sequence WHERE user_tiers.sequence < EXCLUDED.sequence"
        ),
        {"u": [r[0] for r in rows], "t": [r[1] for r in rows], "s": [r[2] for r in rows]},
    )


# --- the read models the daily triggers scan ---------------------------------------------


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
