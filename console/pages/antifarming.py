"""Anti-farming: behaviors the limit diverted; release (credited once) or reject them."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from console.services import page_status
from console.web import Signed

router = APIRouter()


async def _list(
    page: Signed, user_id: str | None, error: str | None = None, status: int = 200
) -> Response:
    diverted = await page.services.get(
        "behavior_sensor", "/v1/diverted", user_id=user_id, limit=100
    )
    return page.render(
        "antifarming.html",
        status,
        nav="antifarming",
        diverted=diverted,
        user_id=user_id or "",
        error=error,
    )


@router.get("/antifarming", response_class=HTMLResponse)
async def diverted(page: Signed, user_id: str | None = Query(None, max_length=64)) -> Response:
    return await _list(page, user_id or None)


@router.post("/antifarming/{decision}", response_class=HTMLResponse)
async def decide(page: Signed, decision: str) -> Response:
    if decision not in ("release", "reject"):
        return page.render("error.html", 404, error=f"unknown decision {decision!r}")
    form = await page.request.form()
    body = {
        "source": str(form.get("source", "")),
        "event_id": str(form.get("event_id", "")),
        "note": str(form.get("note", ""))[:500],
        "by": f"console:{page.who.name}",
    }
    reply = await page.write(
        "operator",
        f"behavior.{decision}",
        f"behavior:{body['source']}/{body['event_id']}",
        page.services.post("behavior_sensor", f"/v1/diverted/{decision}", body),
        request=body,
        before={"status": "diverted"},
    )
    if not reply.ok:
        status = page_status(reply)
        return await _list(page, None, reply.describe(), status)
    return page.done("/antifarming", page.t("Done"))
