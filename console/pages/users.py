"""Users: everything about one user, and the operator's adjustments and redemptions."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from console.forms import FormError, adjustment
from console.services import Reply, page_status
from console.web import Signed

router = APIRouter()
# no "/", "?", "#", "%" or a leading dot: the id goes into the services' URL paths
UserId = Path(min_length=1, max_length=64, pattern=r"^[^/\x00?#%.][^/\x00?#%]*$")


@router.get("/users", response_class=HTMLResponse)
async def lookup(page: Signed, user_id: str | None = Query(None, max_length=64)) -> Response:
    if user_id and user_id.strip():
        return RedirectResponse(f"/users/{user_id.strip()}", status_code=303)
    return page.render("users.html", nav="users")


async def _user(
    page: Signed, user_id: str, asset: str, error: str | None = None, status: int = 200
) -> Response:
    s = page.services
    boards = await s.get_cached("engagement", "/v1/leaderboards")
    board_codes = [b["code"] for b in (boards.data or {}).get("items", [])][:10]
    calls = {
        "balances": s.get("rewards_ledger", f"/v1/accounts/{user_id}/balances"),
        "account": s.get("rewards_ledger", f"/v1/accounts/{user_id}", asset=asset),
        "entries": s.get(
            "rewards_ledger", f"/v1/accounts/{user_id}/entries", asset=asset, limit=30
        ),
        "tasks": s.get("task_progress", f"/v1/users/{user_id}/tasks"),
        "checkins": s.get("task_progress", f"/v1/users/{user_id}/checkins"),
        "badges": s.get("engagement", f"/v1/users/{user_id}/badges"),
        "tier": s.get("engagement", f"/v1/users/{user_id}/tier"),
        "redemptions": s.get("exchange", f"/v1/users/{user_id}/redemptions", limit=20),
        "items": s.get_cached("exchange", "/v1/items", limit=100),
        **{
            f"rank:{code}": s.get(
                "engagement", f"/v1/leaderboards/{code}/users/{user_id}", around=0
            )
            for code in board_codes
        },
    }
    if s.available("notifier"):  # the page shows what exists, not placeholders
        calls["notifications"] = s.get("notifier", f"/v1/users/{user_id}/notifications", limit=20)
    replies = await s.gather(**calls)
    notifications = replies.pop("notifications", None)
    ranks = {code: replies[f"rank:{code}"] for code in board_codes}
    rule_names = {t["task_id"]: t["name"] for t in (replies["tasks"].data or {}).get("items", [])}
    return page.render(
        "user.html",
        status,
        nav="users",
        user_id=user_id,
        asset=asset,
        ranks=ranks,
        rule_names=rule_names,
        notifications=notifications,
        error=error,
        new_key=f"console-{uuid.uuid4().hex}",
        **replies,
    )


@router.get("/users/{user_id}", response_class=HTMLResponse)
async def user(
    page: Signed,
    user_id: str = UserId,
    asset: str = Query("points", pattern=r"^[a-z][a-z0-9_]{0,31}$"),
) -> Response:
    return await _user(page, user_id, asset)


@router.post("/users/{user_id}/adjust", response_class=HTMLResponse)
async def adjust(page: Signed, user_id: str = UserId) -> Response:
    """Add or deduct points with a reason; the form's idempotency key makes a resubmission
    (double click, reload) the same adjustment."""
    form = dict(await page.request.form())
    try:
        kind, body = adjustment(form)
    except FormError as exc:
        await page.console.gate.check_write(page.request, page.who, "operator")
        return await _user(page, user_id, "points", str(exc), 422)
    before = await page.services.get(
        "rewards_ledger", f"/v1/accounts/{user_id}", asset=body["asset"]
    )
    reply = await page.write(
        "operator",
        f"points.{kind[:-1]}",
        f"user:{user_id}",
        page.services.call("rewards_ledger", "POST", f"/v1/accounts/{user_id}/{kind}", json=body),
        request=body,
        before=_balance(before),
    )
    if not reply.ok:
        return await _user(page, user_id, body["asset"], reply.describe(), page_status(reply))
    return page.done(f"/users/{user_id}?asset={body['asset']}", page.t("Done"))


def _balance(account: Reply) -> dict[str, Any] | None:
    data = account.data
    if not data:
        return None
    return {k: data.get(k) for k in ("asset", "balance", "pending", "debt")}


@router.post("/users/{user_id}/redeem", response_class=HTMLResponse)
async def redeem(page: Signed, user_id: str = UserId) -> Response:
    """Redeem an item on the user's behalf (support, or a parcel sent by hand)."""
    form = dict(await page.request.form())
    body: dict[str, Any] = {
        "user_id": user_id,
        "item_id": str(form.get("item_id", "")).strip(),
        "quantity": 1,
        "idempotency_key": str(form.get("idempotency_key", "")).strip(),
    }
    address = str(form.get("shipping_address", "")).strip()
    if address:
        body["shipping_address"] = address
    before = await page.services.get("rewards_ledger", f"/v1/accounts/{user_id}")
    reply = await page.write(
        "operator",
        "redemption.create",
        f"user:{user_id}",
        page.services.call("exchange", "POST", "/v1/redemptions", json=body),
        request=body,
        before=_balance(before),
    )
    if not reply.ok:
        return await _user(page, user_id, "points", reply.describe(), page_status(reply))
    return page.done(f"/users/{user_id}", page.t("Done"))
