"""Rules: list, create (after a dry run), edit, activate, version history, check-in ladders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, Response

from console.forms import FormError, ladder_text, rule_body
from console.services import Reply, page_status
from console.web import Signed

router = APIRouter()
TaskId = Path(min_length=1, max_length=36)
PAGE = 50


async def _list(
    page: Signed, error: str | None = None, status: int = 200, form: Any = None, offset: int = 0
) -> Response:
    tasks = await _newest_first(page, offset)
    return page.render(
        "rules.html",
        status,
        nav="rules",
        tasks=tasks,
        error=error,
        form=form or {},
        offset=offset,
        size=PAGE,
        more=offset + PAGE < (tasks.data or {}).get("total", 0),
    )


async def _newest_first(page: Signed, skip: int) -> Reply:
    """The PAGE newest rules after skipping `skip` of the newest (the API lists the oldest
    first): one read for the count, one for the page."""
    head = await page.services.get("task_progress", "/v1/tasks", limit=1)
    if not head.ok:
        return head
    total = int(head.body["total"])
    start = max(total - skip - PAGE, 0)
    size = max(min(PAGE, total - skip), 1)
    reply = await page.services.get("task_progress", "/v1/tasks", limit=size, offset=start)
    if reply.ok and total - skip > 0:
        reply.body["items"].reverse()
    elif reply.ok:
        reply.body["items"] = []
    return reply


@router.get("/rules", response_class=HTMLResponse)
async def rules(page: Signed, offset: int = Query(0, ge=0, le=1_000_000)) -> Response:
    return await _list(page, offset=offset)


@router.post("/rules", response_class=HTMLResponse)
async def create_rule(page: Signed) -> Response:
    form = dict(await page.request.form())
    try:
        body = rule_body(form)
    except FormError as exc:
        await page.console.gate.check_write(page.request, page.who, "operator")
        return await _list(page, str(exc), 422, form)
    reply = await page.write(
        "operator",
        "rule.create",
        f"rule:{body.get('name', '')}",
        page.services.call("task_progress", "POST", "/v1/tasks", json=body),
        request=body,
    )
    if not reply.ok:
        return await _list(page, reply.describe(), page_status(reply), form)
    return page.done(f"/rules/{reply.body['id']}", page.t("Done"))


@router.post("/rules/simulate", response_class=HTMLResponse)
async def dry_run(page: Signed) -> Response:
    """What the rule in the form would have paid over the last 7 days. Writes nothing."""
    await page.console.gate.check_write(page.request, page.who, "viewer")
    form = dict(await page.request.form())
    try:
        rule = rule_body(form)
    except FormError as exc:
        return page.render("_simulation.html", 422, error=str(exc))
    rule["active"] = True
    now = datetime.now(UTC)
    reply = await page.services.call(
        "task_progress",
        "POST",
        "/v1/tasks/simulate",
        json={"rule": rule, "from": (now - timedelta(days=7)).isoformat(), "to": now.isoformat()},
    )
    if not reply.ok:
        return page.render("_simulation.html", page_status(reply), error=reply.describe())
    return page.render("_simulation.html", result=reply.body)


async def _detail(
    page: Signed, task_id: str, error: str | None = None, status: int = 200
) -> Response:
    replies = await page.services.gather(
        task=page.services.get("task_progress", f"/v1/tasks/{task_id}"),
        versions=page.services.get("task_progress", f"/v1/tasks/{task_id}/versions"),
    )
    task = replies["task"]
    if not task.ok:
        return page.render("error.html", page_status(task), error=task.describe(), nav="rules")
    return page.render(
        "rule.html",
        status,
        nav="rules",
        task=task.body,
        versions=replies["versions"],
        ladder=ladder_text(task.body.get("ladder")),
        error=error,
    )


@router.get("/rules/{task_id}", response_class=HTMLResponse)
async def rule(page: Signed, task_id: str = TaskId) -> Response:
    return await _detail(page, task_id)


@router.post("/rules/{task_id}", response_class=HTMLResponse)
async def edit_rule(page: Signed, task_id: str = TaskId) -> Response:
    form = dict(await page.request.form())
    try:
        body = rule_body(form, for_patch=True)
    except FormError as exc:
        await page.console.gate.check_write(page.request, page.who, "operator")
        return await _detail(page, task_id, str(exc), 422)
    return await _patch(page, task_id, body, "rule.edit")


@router.post("/rules/{task_id}/active", response_class=HTMLResponse)
async def set_active(page: Signed, task_id: str = TaskId) -> Response:
    form = await page.request.form()
    active = form.get("active") == "true"
    return await _patch(
        page, task_id, {"active": active}, "rule.activate" if active else "rule.deactivate"
    )


async def _patch(page: Signed, task_id: str, body: dict[str, Any], action: str) -> Response:
    before = await page.services.get("task_progress", f"/v1/tasks/{task_id}")
    reply = await page.write(
        "operator",
        action,
        f"rule:{task_id}",
        page.services.patch("task_progress", f"/v1/tasks/{task_id}", body),
        request=body,
        before=before.data,
    )
    if not reply.ok:
        return await _detail(page, task_id, reply.describe(), page_status(reply))
    return page.done(f"/rules/{task_id}", page.t("Done"))
