"""The kit's service client over real HTTP: every answer ends as Done, Refused or Unreachable,
only calls that may be repeated are retried, and the value-or-raise form keeps the service's
own error code."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from services.devstack import free_port
from shared.client import Done, Refused, ServiceClient, Unreachable
from shared.errors import DomainError, Unavailable
from shared.retry import is_transient


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, dict[str, int]]]:
    calls: dict[str, int] = {}

    async def answer(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        calls[name] = calls.get(name, 0) + 1
        if name == "ok":
            assert request.headers["Authorization"] == "Bearer secret"
            return web.json_response({"echo": dict(request.query)})
        if name == "refused":
            body = {"error": "insufficient_points", "message": "not enough", "details": {"n": 1}}
            return web.json_response(body, status=409)
        if name == "flaky" and calls[name] == 1:
            return web.json_response({"error": "internal_error", "message": "x"}, status=500)
        if name == "flaky":
            return web.json_response({"second": True})
        if name == "html":
            return web.Response(text="<html>", content_type="text/html")
        return web.json_response({"error": "internal_error", "message": "x"}, status=503)

    app = web.Application()
    app.router.add_route("*", "/{name}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", calls
    finally:
        await runner.cleanup()


async def test_every_answer_is_one_of_three_outcomes(server: tuple[str, dict[str, int]]) -> None:
    url, _ = server
    client = ServiceClient("demo", url, "secret", 2.0)
    try:
        done = await client.get("/ok", a=1, skipped=None)
        assert isinstance(done, Done) and done.ok and done.data == {"echo": {"a": "1"}}
        refused = await client.post("/refused", {"x": 1})
        assert isinstance(refused, Refused) and not refused.ok
        assert (refused.status, refused.code, refused.details) == (
            409,
            "insufficient_points",
            {"n": 1},
        )
        assert refused.describe() == "demo: insufficient_points — not enough"
        down = await client.get("/down")
        assert isinstance(down, Unreachable) and down.status == 503 and down.data is None
        html = await client.get("/html")
        assert isinstance(html, Unreachable) and "without JSON" in html.reason
    finally:
        await client.close()
    nobody = ServiceClient("demo", f"http://127.0.0.1:{free_port()}", "secret", 1.0)
    try:
        gone = await nobody.get("/ok")
        assert isinstance(gone, Unreachable) and gone.error == "unreachable"
    finally:
        await nobody.close()


async def test_only_repeatable_calls_are_retried(server: tuple[str, dict[str, int]]) -> None:
    url, calls = server
    client = ServiceClient("demo", url, "secret", 2.0, retries=2)
    try:
        assert isinstance(await client.post("/flaky", {}), Unreachable)  # a plain POST: once
        assert calls["flaky"] == 1
        calls.clear()
        again = await client.post("/flaky", {}, idempotent=True)  # keyed: asked again
        assert isinstance(again, Done) and again.body == {"second": True} and calls["flaky"] == 2
        assert isinstance(await client.post("/refused", {}, idempotent=True), Refused)
        assert calls["refused"] == 1  # a definite no is never asked again
    finally:
        await client.close()


async def test_fetch_raises_the_services_error_or_a_transient_unavailable(
    server: tuple[str, dict[str, int]],
) -> None:
    url, _ = server
    client = ServiceClient("demo", url, "secret", 2.0, unavailable_code="demo_unavailable")
    try:
        assert await client.fetch("/ok") == {"echo": {}}
        with pytest.raises(DomainError) as refused:
            client.value(await client.post("/refused", {}))
        assert (refused.value.code, refused.value.status) == ("insufficient_points", 409)
        assert refused.value.details == {"n": 1} and not is_transient(refused.value)
        with pytest.raises(Unavailable) as down:
            await client.fetch("/down")
        assert (down.value.code, down.value.status) == ("demo_unavailable", 503)
        assert is_transient(down.value)
    finally:
        await client.close()
