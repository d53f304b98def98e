"""A user's devices: registering, removing and listing push tokens (a token is never shown,
only its digest)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier import repository as repo
from services.notifier.providers import device_digest
from shared.errors import NotFound


async def register_device(
    session: AsyncSession, user_id: str, platform: str, token: str
) -> tuple[dict[str, Any], bool]:
    created = await repo.upsert_device(session, user_id, platform, token)
    return {"user_id": user_id, "platform": platform, "token": token, "active": True}, created


async def remove_device(session: AsyncSession, user_id: str, token: str) -> None:
    if not await repo.remove_device(session, user_id, token):
        raise NotFound("device", f"{device_digest(token)} of user {user_id}")


async def list_devices(session: AsyncSession, user_id: str) -> list[dict[str, Any]]:
    return [
        {
            "platform": d.platform,
            "device": device_digest(d.token),
            "active": d.active,
            "deactivated_reason": d.deactivated_reason,
            "created_at": d.created_at,
            "updated_at": d.updated_at,
        }
        for d in await repo.devices_of(session, user_id)
    ]
