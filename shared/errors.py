"""One error family and one set of handlers: every failure answers {"error": code, "message": text}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class DomainError(Exception):
    """An expected business outcome the caller must handle; `code` is stable and documented."""

    status = 409

    def __init__(self, code: str, message: str, status: int | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        self.details = details


class NotFound(DomainError):
    status = 404

    def __init__(self, what: str, key: object) -> None:
        super().__init__("not_found", f"{what} {key} does not exist")


class InvalidInput(DomainError):
    status = 422

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__("validation_error", message, **details)


class Unauthorized(DomainError):
    status = 401

    def __init__(self, message: str = "missing or invalid credentials") -> None:
        super().__init__("unauthorized", message)


class Forbidden(DomainError):
    status = 403

    def __init__(self, message: str = "these credentials may not do that") -> None:
        super().__init__("forbidden", message)


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message}
    if details:
        body["details"] = details
    return body


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


def _summarize_validation(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def validation_response(errors: list[dict[str, Any]]) -> JSONResponse:
    clean = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors
    ]
    return JSONResponse(
        status_code=422,
        content=error_body("validation_error", _summarize_validation(errors), errors=clean),
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status, content=error_body(exc.code, exc.message, **exc.details)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(list(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            status_code=exc.status_code,
            content=error_body(code, str(exc.detail)),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            status_code=500, content=error_body("internal_error", "an unexpected error occurred")
        )


class RejectNulBytes:
    """ASGI middleware: a request with a NUL character in its path or query string is
    answered 422 before any route sees it. PostgreSQL cannot store NUL in text, so such a
    value would otherwise reach the database and fail there as a 500."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"")
            if "\x00" in scope.get("path", "") or b"\x00" in query or b"%00" in query:
                body = error_body("validation_error", "NUL characters are not allowed in a URL")
                await JSONResponse(status_code=422, content=body)(scope, receive, send)
                return
        await self.app(scope, receive, send)
