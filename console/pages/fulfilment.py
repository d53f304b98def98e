"""Fulfilment: physical redemptions to ship, then to mark delivered."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, Response

from console.services import page_status
from console.web import Signed

router = APIRouter()
RedemptionId = Path(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9-]+$")


async def _queue(
    page: Signed, user_id: str | None = None, error: str | None = None, status: int = 200
) -> Response:
    s = page.services
    replies = await s.gather(
        to_ship=s.get("exchange", "/v1/fulfilments", status="pending", user_id=user_id, limit=50),
        to_deliver=s.get(
            "exchange", "/v1/fulfilments", status="shipped", user_id=user_id, limit=50
        ),
    )
    return page.render(
        "fulfilment.html", status, nav="fulfilment", error=error, user_id=user_id or "", **replies
    )


@router.get("/fulfilment", response_class=HTMLResponse)
async def queue(page: Signed, user_id: str | None = Query(None, max_length=64)) -> Response:
    return await _queue(page, user_id.strip() if user_id and user_id.strip() else None)


@router.post("/fulfilment/{redemption_id}/ship", response_class=HTMLResponse)
async def ship(page: Signed, redemption_id: str = RedemptionId) -> Response:
    form = await page.request.form()
    body = {
        "carrier": str(form.get("carrier", "")).strip(),
        "tracking_number": str(form.get("tracking_number", "")).strip(),
    }
    return await _advance(page, redemption_id, "ship", body)


@router.post("/fulfilment/{redemption_id}/deliver", response_class=HTMLResponse)
async def deliver(page: Signed, redemption_id: str = RedemptionId) -> Response:
    return await _advance(page, redemption_id, "deliver", {})


async def _advance(page: Signed, redemption_id: str, step: str, body: dict[str, str]) -> Response:
    before = await page.services.get("exchange", f"/v1/redemptions/{redemption_id}")
    reply = await page.write(
        "operator",
        f"redemption.{step}",
        f"redemption:{redemption_id}",
        page.services.post("exchange", f"/v1/redemptions/{redemption_id}/{step}", body),
        request=body,
        before=(before.data or {}).get("fulfilment"),
    )
    if not reply.ok:
        return await _queue(page, None, reply.describe(), page_status(reply))
    user = (before.data or {}).get("user_id")
    return page.done(f"/fulfilment?user_id={user}" if user else "/fulfilment", page.t("Done"))
