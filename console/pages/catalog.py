"""Catalog: items, stock, limits, activation, tier restrictions."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, Response

from console.forms import FormError, item_body
from console.services import page_status
from console.web import Signed

router = APIRouter()
ItemId = Path(min_length=1, max_length=36)
PAGE = 50


async def _list(
    page: Signed,
    error: str | None = None,
    status: int = 200,
    form: Any = None,
    offset: int = 0,
    category: str | None = None,
) -> Response:
    replies = await page.services.gather(
        items=page.services.get(
            "exchange",
            "/v1/items",
            include_unavailable="true",  # the items taken off sale too, to edit them
            category=category,
            limit=PAGE,
            offset=offset,
        ),
        tiers=page.services.get("engagement", "/v1/tiers"),
    )
    return page.render(
        "catalog.html",
        status,
        nav="catalog",
        items=replies["items"],
        tiers=replies["tiers"],
        error=error,
        form=form or {},
        offset=offset,
        size=PAGE,
        category=category or "",
    )


@router.get("/catalog", response_class=HTMLResponse)
async def catalog(
    page: Signed,
    offset: int = Query(0, ge=0, le=1_000_000),
    category: str | None = Query(None, max_length=64),
) -> Response:
    return await _list(page, offset=offset, category=category.strip() if category else None)


@router.post("/catalog", response_class=HTMLResponse)
async def create_item(page: Signed) -> Response:
    form = dict(await page.request.form())
    try:
        body = item_body(form)
    except FormError as exc:
        await page.console.gate.check_write(page.request, page.who, "operator")
        return await _list(page, str(exc), 422, form)
    reply = await page.write(
        "operator",
        "item.create",
        f"item:{body.get('name', '')}",
        page.services.call("exchange", "POST", "/v1/items", json=body),
        request=body,
    )
    if not reply.ok:
        return await _list(page, reply.describe(), page_status(reply), form)
    return page.done("/catalog", page.t("Done"))


@router.post("/catalog/{item_id}", response_class=HTMLResponse)
async def update_item(page: Signed, item_id: str = ItemId) -> Response:
    form = dict(await page.request.form())
    try:
        body = item_body(form, for_patch=True)
        if "active" in form:
            body["active"] = form["active"] == "true"
    except FormError as exc:
        await page.console.gate.check_write(page.request, page.who, "operator")
        return await _list(page, str(exc), 422)
    before = await page.services.get("exchange", f"/v1/items/{item_id}")
    reply = await page.write(
        "operator",
        "item.update",
        f"item:{item_id}",
        page.services.patch("exchange", f"/v1/items/{item_id}", body),
        request=body,
        before=before.data,
    )
    if not reply.ok:
        return await _list(page, reply.describe(), page_status(reply))
    category = (before.data or {}).get("category")
    back = f"/catalog?{urlencode({'category': category})}" if category else "/catalog"
    return page.done(back, page.t("Done"))
