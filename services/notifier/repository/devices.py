"""Devices: the active ones a notification goes to, registering, removing, deactivating."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.models import devices

_ACTIVE_DEVICES = text(
    "SELECT token, user_id, platform FROM devices "
    "WHERE user_id = ANY(CAST(:users AS text[])) AND active ORDER BY user_id, created_at"
)

_DEACTIVATE = text(
    "UPDATE devices SET active = false, deactivated_reason = :reason, updated_at = now() "
    "WHERE token = ANY(CAST(:tokens AS text[])) AND active"
)


async def active_devices(session: AsyncSession, users: Iterable[str]) -> list[Row[Any]]:
    return list(await session.execute(_ACTIVE_DEVICES, {"users": sorted(set(users))}))


async def deactivate(session: AsyncSession, tokens: Sequence[str], reason: str) -> None:
    if tokens:
        await session.execute(_DEACTIVATE, {"tokens": list(tokens), "reason": reason})


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
    # A DELETE's result is a CursorResult (the one that counts the rows it changed).
    result = cast(
        CursorResult[Any],
        await session.execute(
            devices.delete().where(devices.c.token == token, devices.c.user_id == user_id)
        ),
    )
    return bool(result.rowcount)


async def devices_of(session: AsyncSession, user_id: str) -> list[Row[Any]]:
    rows = await session.execute(
        devices.select().where(devices.c.user_id == user_id).order_by(devices.c.created_at)
    )
    return list(rows)
