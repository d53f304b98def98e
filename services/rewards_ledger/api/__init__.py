"""The ledger's HTTP routes: `router` (assets, accounts and the movements on them, holds) and
`reports_router` (liability, reconciliation, and the pages other services read)."""

from __future__ import annotations

from fastapi import APIRouter

from services.rewards_ledger.api import accounts, assets, holds, reports

router = APIRouter()
router.include_router(assets.router)
router.include_router(accounts.router)
router.include_router(holds.router)
reports_router = reports.router

__all__ = ["reports_router", "router"]
