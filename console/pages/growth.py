"""Growth: the notifier's campaigns and the insights service's experiments with their
results. Each half shows only when its service is part of the suite."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from console.services import Reply
from console.web import Signed

router = APIRouter()


@router.get("/growth", response_class=HTMLResponse)
async def growth(page: Signed) -> Response:
    s = page.services
    calls = {}
    if s.available("notifier"):
        calls["campaigns"] = s.get("notifier", "/v1/campaigns", limit=20)
    if s.available("insights"):
        calls["experiments"] = s.get("insights", "/v1/experiments", limit=20)
    head = await s.gather(**calls)
    experiments = head.get("experiments")
    keys = [
        e["key"]
        for e in (experiments.data if experiments is not None and experiments.data else {}).get(
            "items", []
        )
        if e["status"] != "draft"
    ][:10]
    results: dict[str, Reply] = await s.gather(
        **{key: s.get("insights", f"/v1/experiments/{key}/results") for key in keys}
    )
    return page.render(
        "growth.html",
        200,
        nav="growth",
        campaigns=head.get("campaigns"),
        experiments=experiments,
        results=results,
    )
