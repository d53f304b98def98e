"""The audit log: who changed what, when, before and after."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from console import audit
from console.web import Signed

router = APIRouter()


@router.get("/audit", response_class=HTMLResponse)
async def audit_log(
    page: Signed,
    target: str | None = Query(None, max_length=300),
    operator: str | None = Query(None, max_length=64),
) -> Response:
    rows = await audit.recent(page.console.db, 100, target or None, operator or None)
    return page.render(
        "audit.html", nav="audit", rows=rows, target=target or "", operator=operator or ""
    )
