"""What the ledger's routes share: the caller, the path and query parameters, the settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from services.rewards_ledger.settings import Settings
from shared.auth import Principal, principal
from shared.events import ASSET_PATTERN
from shared.service import Runtime, runtime_of

UserId = Annotated[str, Path(min_length=1, max_length=64)]
Caller = Annotated[Principal, Depends(principal)]
AssetCode = Annotated[str, Query(pattern=ASSET_PATTERN, description="asset code")]


def settings_of(request: Request) -> Settings:
    rt: Runtime[Settings, None] = runtime_of(request)
    return rt.settings
