"""Engagement: leaderboards and their top, badges, member tiers."""

from __future__ import annotations

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse, Response

from console.services import page_status
from console.web import Signed

router = APIRouter()


@router.get("/engagement", response_class=HTMLResponse)
async def engagement(page: Signed) -> Response:
    s = page.services
    head = await s.gather(
        boards=s.get("engagement", "/v1/leaderboards"),
        badges=s.get("engagement", "/v1/badges"),
        tiers=s.get("engagement", "/v1/tiers"),
    )
    codes = [b["code"] for b in (head["boards"].data or {}).get("items", [])][:12]
    tops = await s.gather(
        **{code: s.get("engagement", f"/v1/leaderboards/{code}/top", limit=10) for code in codes}
    )
    return page.render("engagement.html", 200, nav="engagement", tops=tops, **head)


@router.post("/engagement/{code}/rebuild", response_class=HTMLResponse)
async def rebuild(
    page: Signed, code: str = Path(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")
) -> Response:
    """Rebuild a board's index from PostgreSQL (admins: it loads the whole board)."""
    reply = await page.write(
        "admin",
        "leaderboard.rebuild",
        f"leaderboard:{code}",
        page.services.post("engagement", f"/v1/leaderboards/{code}/rebuild", {}),
    )
    if not reply.ok:
        status = page_status(reply)
        return page.render("error.html", status, error=reply.describe(), nav="engagement")
    return page.done("/engagement", page.t("Done"))
