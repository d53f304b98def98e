"""Assets: defining them, reading them, and which ones a movement may use."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards_ledger import repository as repo
from services.rewards_ledger.domain import DEFAULT_ASSET, AssetNotSpendable
from services.rewards_ledger.repository.rows import AssetRow
from shared.errors import DomainError, InvalidInput, NotFound


async def assets_of(session: AsyncSession, codes: Iterable[str]) -> dict[str, AssetRow]:
    """The assets named, each checked to exist (404 not_found otherwise)."""
    wanted = set(codes)
    found = await repo.assets_by_codes(session, wanted)
    for code in sorted(wanted - set(found)):
        raise NotFound("asset", code)
    return found


async def require_spendable(session: AsyncSession, asset: str) -> None:
    """Points always are; any other asset is looked up (404 unknown, 409 not spendable)."""
    if asset == DEFAULT_ASSET:
        return
    if not (await assets_of(session, [asset]))[asset].spendable:
        raise AssetNotSpendable(asset)


async def spending_refusals(session: AsyncSession, codes: Iterable[str]) -> dict[str, DomainError]:
    """Why debits of these assets are refused: unknown (404) or not spendable (409)."""
    wanted = {c for c in codes if c != DEFAULT_ASSET}
    if not wanted:
        return {}
    found = await repo.assets_by_codes(session, wanted)
    refusals: dict[str, DomainError] = {}
    for code in wanted:
        if code not in found:
            refusals[code] = NotFound("asset", code)
        elif not found[code].spendable:
            refusals[code] = AssetNotSpendable(code)
    return refusals


async def create_asset(session: AsyncSession, values: dict[str, Any]) -> tuple[AssetRow, bool]:
    """Define an asset. The same definition again replays it (created False); another one
    under an existing code is refused (409 asset_exists)."""
    if values["expires"] is False and (
        values.get("default_validity_days") is not None
        or values.get("default_validity") is not None
    ):
        raise InvalidInput("an asset that never expires has no default validity")
    created = await repo.insert_asset(session, values)
    row = await repo.asset_by_code(session, values["code"])
    assert row is not None  # inserted now, or there before
    if not created and any(getattr(row, k) != v for k, v in values.items()):
        raise DomainError(
            "asset_exists", f"asset {values['code']!r} exists with another definition"
        )
    return row, created


async def list_assets(session: AsyncSession) -> list[AssetRow]:
    return await repo.all_assets(session)


async def get_asset(session: AsyncSession, code: str) -> AssetRow:
    return (await assets_of(session, [code]))[code]
