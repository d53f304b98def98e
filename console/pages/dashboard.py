"""Dashboard: both reconciliations, the points liability, consumer lag and dead letters."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from console.web import Signed

router = APIRouter()


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(page: Signed) -> Response:
    return page.render("dashboard.html", reading=page.console.status.reading, nav="dashboard")


@router.get("/dashboard/status", response_class=HTMLResponse)
async def status_fragment(page: Signed) -> Response:
    """The status panel alone (htmx refreshes it); reads it now if never read."""
    board = page.console.status
    reading = board.reading if board.reading.read_at is not None else await board.refresh()
    return page.render("_status.html", reading=reading)


@router.post("/dashboard/recheck", response_class=HTMLResponse)
async def recheck(page: Signed) -> Response:
    """Read reconciliation and lag again now (reads only: any signed-in operator)."""
    await page.console.gate.check_write(page.request, page.who, "viewer")
    return page.render("_status.html", reading=await page.console.status.refresh())
