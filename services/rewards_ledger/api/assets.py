"""Asset routes: define an asset, list them, read one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from services.rewards_ledger import service
from services.rewards_ledger.api.deps import Caller
from services.rewards_ledger.schemas import AssetIn, AssetList, AssetOut
from shared.events import ASSET_PATTERN
from shared.unit_of_work import Reads, Writes

router = APIRouter(prefix="/v1", tags=["ledger"])


@router.post("/assets", response_model=AssetOut, status_code=201)
async def create_asset(
    body: AssetIn, response: Response, caller: Caller, session: Writes
) -> AssetOut:
    """Define an asset (a campaign currency such as `balloon`). `points` and `growth` are built
    in. The same definition again answers 200; another definition of a code is 409."""
    caller.require_admin()
    asset, created = await service.create_asset(session, body.model_dump())
    if not created:
        response.status_code = 200
    return AssetOut.model_validate(asset)


@router.get("/assets", response_model=AssetList)
async def list_assets(caller: Caller, session: Reads) -> AssetList:
    caller.require_admin()
    return AssetList(items=[AssetOut.model_validate(a) for a in await service.list_assets(session)])


@router.get("/assets/{code}", response_model=AssetOut)
async def get_asset(
    code: Annotated[str, Path(pattern=ASSET_PATTERN)], caller: Caller, session: Reads
) -> AssetOut:
    caller.require_scope("ledger:assets")
    return AssetOut.model_validate(await service.get_asset(session, code))
