"""The request guard every service (and the console) mounts: NUL characters anywhere a route
would read text, and bodies over the size limit, are answered before a route runs; every
other body reaches the route byte for byte."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request

from shared.errors import RejectNulBytes, install_error_handlers


def make_app(limit: int = 1024) -> tuple[FastAPI, list[bytes]]:
    seen: list[bytes] = []
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RejectNulBytes, max_body_bytes=limit)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        seen.append(await request.body())
        return {"bytes": len(seen[-1])}

    @app.get("/echo")
    async def query(q: str = "") -> dict[str, str]:
        return {"q": q}

    return app, seen


async def call(app: FastAPI, method: str, url: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.request(method, url, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "x\\u0000"}',  # the JSON escape of NUL
        b'{"a": {"b": ["\\u0000"]}}',  # nested anywhere
        b'{"a": "\\\\\\u0000"}',  # an escaped backslash, then a real NUL escape
    ],
)
async def test_a_nul_in_a_json_string_is_refused(body: bytes) -> None:
    app, seen = make_app()
    answer = await call(app, "POST", "/echo", content=body)
    assert answer.status_code == 422 and answer.json()["error"] == "validation_error"
    assert seen == []


@pytest.mark.parametrize(
    "body",
    [b'{"a": "C:\\\\u0000"}', b'{"a": "\\\\\\\\u0000"}', b'{"a": "u0000"}', b"{}", b""],
)
async def test_text_that_only_looks_like_a_nul_reaches_the_route_unchanged(body: bytes) -> None:
    app, seen = make_app()
    answer = await call(app, "POST", "/echo", content=body)
    assert answer.status_code == 200 and seen == [body]


@pytest.mark.parametrize("url", ["/echo?q=a%00b", "/echo?q=%00", "/ec%00ho"])
async def test_a_nul_in_the_url_is_refused(url: str) -> None:
    app, _ = make_app()
    answer = await call(app, "GET", url)
    assert answer.status_code == 422 and "NUL" in answer.json()["message"]


async def test_bodies_over_the_limit_are_refused_declared_or_streamed() -> None:
    app, seen = make_app(limit=1024)
    assert (await call(app, "POST", "/echo", content=b"x" * 1024)).status_code == 200
    declared = await call(app, "POST", "/echo", content=b"x" * 1025)
    assert declared.status_code == 413 and declared.json()["error"] == "payload_too_large"

    async def chunks():  # no Content-Length: the guard counts as the body streams in
        for _ in range(5):
            yield b"y" * 300

    streamed = await call(app, "POST", "/echo", content=chunks())
    assert streamed.status_code == 413
    assert seen == [b"x" * 1024]
