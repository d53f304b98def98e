"""KPI targets: the seed's defaults, as operators have changed them (stored, each change
recorded with who, old, new and when)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.insights import repository as repo
from services.insights.domain import TARGET_OF, TARGETS, Target
from shared.errors import InvalidInput, NotFound

HISTORY_LIMIT = 200


def _merged(stored: dict[str, repo.StoredTarget]) -> list[Target]:
    """The stored values over the seed's (a KPI added after the migration that seeded the
    table keeps the seed's until it is set)."""
    return [replace(t, target=stored[t.kpi].target) if t.kpi in stored else t for t in TARGETS]


async def current_targets(session: AsyncSession) -> list[Target]:
    return _merged(await repo.stored_targets(session))


def _known(kpi: str) -> Target:
    if kpi not in TARGET_OF:
        raise NotFound("KPI target", kpi)
    return TARGET_OF[kpi]


async def list_targets(session: AsyncSession) -> list[dict[str, Any]]:
    stored = await repo.stored_targets(session)
    return [_view(t, stored.get(t.kpi)) for t in _merged(stored)]


def _view(t: Target, stored: repo.StoredTarget | None) -> dict[str, Any]:
    return {
        "kpi": t.kpi,
        "target": t.target,
        "comparison": t.comparison,
        "description": t.description,
        "default": TARGET_OF[t.kpi].target,
        "updated_by": stored.updated_by if stored else None,
        "updated_at": stored.updated_at if stored else None,
    }


async def set_target(
    session: AsyncSession,
    kpi: str,
    target: float,
    by: str,
    operator: str | None,
    reason: str,
) -> dict[str, Any]:
    """Store a KPI's target and record the change (setting the same value records nothing)."""
    seed = _known(kpi)
    if not seed.low <= target <= seed.high:
        raise InvalidInput(f"the target of {kpi} is between {seed.low:g} and {seed.high:g}")
    old = await repo.lock_target(session, kpi)
    old = seed.target if old is None else old
    if old == target:
        stored = (await repo.stored_targets(session)).get(kpi)
        return _view(replace(seed, target=old), stored)
    saved = await repo.save_target(session, kpi, old, target, by, operator, reason)
    await session.flush()
    return _view(replace(seed, target=saved.target), saved)


async def target_history(session: AsyncSession, kpi: str) -> list[repo.TargetChange]:
    _known(kpi)
    return await repo.target_history(session, kpi, HISTORY_LIMIT)
