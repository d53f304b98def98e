"""Rule administration (operations): create, read, change a rule and list its versions."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger.client import LedgerClient
from services.task_progress import repository as repo
from services.task_progress.domain import BUILTIN_ASSETS, REWARD_FIELDS
from services.task_progress.schemas import TaskCreate, TaskPatch, check_rule, sync_validity
from shared.errors import InvalidInput, NotFound
from shared.validity import validity_of


def _row_to_dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


async def require_assets(ledger: LedgerClient, codes: Iterable[str]) -> None:
    """A rule may only pay in assets the ledger knows: InvalidInput (422) names every code it
    does not. Asked before the request's transaction takes a connection, so nothing of the
    database waits on the ledger; no answer is `ledger_unavailable` (503)."""
    unknown = [
        code for code in sorted(set(codes) - BUILTIN_ASSETS) if not await ledger.asset_exists(code)
    ]
    if unknown:
        raise InvalidInput(
            f"unknown reward asset {', '.join(unknown)}: create it in rewards_ledger first",
            unknown_assets=unknown,
        )


def rule_snapshot(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of a rule that decide what it pays, as JSON (a version's record)."""
    return {
        f: fields[f].astimezone(UTC).isoformat()
        if isinstance(fields.get(f), datetime)
        else fields.get(f)
        for f in REWARD_FIELDS
    }


async def create_task(
    session: AsyncSession, body: TaskCreate, task_id: str | None = None
) -> dict[str, Any]:
    task_id = task_id or str(uuid.uuid4())
    values = body.model_dump(mode="python")
    await repo.insert_task(session, {"id": task_id, **values})
    await repo.insert_version(session, task_id, 1, rule_snapshot(values))
    return await get_task(session, task_id)


async def get_task(session: AsyncSession, task_id: str) -> dict[str, Any]:
    row = await repo.get_task(session, task_id)
    if row is None:
        raise NotFound("task", task_id)
    return _row_to_dict(row)


async def patch_task(session: AsyncSession, task_id: str, patch: TaskPatch) -> dict[str, Any]:
    """Change a rule. A change to what it pays makes a new version: behaviors from then on
    are paid by it, and progress already made in the current period counts toward it."""
    row = await repo.get_task(session, task_id, for_update=True)
    if row is None:
        raise NotFound("task", task_id)
    changes = patch.model_dump(exclude_unset=True, mode="python")
    try:
        sync_validity(changes, validity_of(row.validity, row.points_validity_days))
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    merged = {**_row_to_dict(row), **changes}
    if merged["kind"] == "checkin" and merged.get("ladder") and not merged.get("cycle_days"):
        changes["cycle_days"] = merged["cycle_days"] = merged["ladder"][-1]["day"]
    try:
        check_rule(merged)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    before = rule_snapshot(_row_to_dict(row))
    after = rule_snapshot(merged)
    if after != before:
        changes["version"] = row.version + 1
    if changes:
        await repo.update_task(session, task_id, changes)
    if after != before:
        await repo.insert_version(session, task_id, row.version + 1, after)
    return await get_task(session, task_id)


async def task_versions(session: AsyncSession, task_id: str) -> dict[str, Any]:
    await get_task(session, task_id)
    rows = await repo.versions_of(session, task_id)
    return {
        "task_id": task_id,
        "items": [{"version": r.version, "rule": r.rule, "created_at": r.created_at} for r in rows],
    }
