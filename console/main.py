"""The operations console (port 8000): composition root.

A backend-for-frontend: pages are rendered here (Jinja2, htmx for the live parts), every
figure comes from a service's HTTP API called with credentials that stay on this server,
and the console's own database holds only operator sessions and the audit log.
`uvicorn console.main:app --port 8000`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from console.audit import record
from console.auth import Gate, NotSignedIn, Refused
from console.pages import (
    antifarming,
    audit,
    catalog,
    dashboard,
    engagement,
    fulfilment,
    growth,
    rules,
    signin,
    users,
)
from console.services import Services
from console.settings import Settings
from console.status import StatusBoard
from console.web import TEMPLATES, Console, console_of, render
from shared.errors import RejectNulBytes
from shared.metrics import install_metrics
from shared.service import health_router, open_database

log = logging.getLogger("jifen.console")
STATIC = Path(__file__).parent / "static"
make_settings: Callable[..., Settings] = Settings  # read from the environment at start-up

# Pages may load scripts, styles and images from the console only; no framing.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """Security headers on every answer, and its server time (Server-Timing)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")
        started = time.perf_counter()

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                # the page's server time (make bench reads it)
                elapsed_ms = (time.perf_counter() - started) * 1000
                headers.append((b"server-timing", f"app;dur={elapsed_ms:.1f}".encode()))
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, add_headers)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = make_settings()
    db = await open_database("console", settings)
    TEMPLATES.env.globals["tz"] = settings.tz
    services = Services(
        dict(settings.console_service_urls),
        settings.outbound_token,
        settings.console_service_timeout_s,
    )
    status = StatusBoard(services, settings.kafka_bootstrap, settings.console_status_interval_s)
    gate = Gate(settings, db)
    app.state.console = Console(settings, db, gate, services, status)
    status.start()
    log.info(
        "console ready",
        extra={
            "services": sorted(settings.console_service_urls),
            # "valkey": every replica counts wrong passwords together; "process": each its own
            "signin_throttle": "valkey" if gate.throttle.redis is not None else "process",
        },
    )
    try:
        yield
    finally:
        await status.stop()
        await gate.throttle.aclose()
        await services.aclose()
        await db.dispose()


async def _readiness(request: Request) -> tuple[bool, dict[str, Any]]:
    try:
        await console_of(request).db.ping()
    except Exception as exc:
        return False, {"status": "unavailable", "database": str(exc)}
    return True, {"status": "ok"}


def create_app() -> FastAPI:
    app = FastAPI(
        title="Jifen operations console",
        description="Operators sign in at /; pages call the services' HTTP APIs.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (
        signin,
        dashboard,
        rules,
        catalog,
        users,
        fulfilment,
        antifarming,
        engagement,
        growth,
        audit,
    ):
        app.include_router(module.router)

    app.include_router(health_router("console", _readiness), include_in_schema=False)

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, _: NotSignedIn) -> Response:
        if request.method == "GET" and "hx-request" not in request.headers:
            return RedirectResponse("/", status_code=303)
        return render(request, "signin.html", status=401, ended=True)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        console = console_of(request)
        who = None
        try:
            who = await console.gate.who(request)
        except NotSignedIn:
            pass
        await record(
            console.db,
            operator=who.name if who else "-",
            role=who.role if who else "-",
            action=f"{request.method} {request.url.path}"[:64],
            target=request.url.path,
            status=exc.status,
            outcome=exc.code,
            message=exc.message,
        )
        return render(request, "error.html", status=exc.status, error=exc.message, who=who)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()
        )
        return render(request, "error.html", status=422, error=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return render(request, "error.html", status=exc.status_code, error=str(exc.detail))

    app.add_middleware(SecurityHeaders)
    install_metrics(app, "console")
    app.add_middleware(RejectNulBytes)
    return app


app = create_app()
