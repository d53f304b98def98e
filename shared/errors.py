"""One error family and one set of handlers: every failure answers {"error": code, "message": text,
"request_id": id}, the id being the request's trace id (shared/tracing.py) so that an operator
finds its log lines and its trace from what the caller reports."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import tracing

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


class Unavailable(DomainError):
    """Another service gave no definite answer (unreachable, timed out, 5xx): the request may
    or may not have been applied there. Transient: a consumer or worker retries its batch, an
    API caller gets 503 and may repeat its request with the same idempotency key."""

    status = 503

    def __init__(self, code: str, service: str, reason: str) -> None:
        super().__init__(code, f"{service} gave no definite answer ({reason}); try again later")


class Unauthorized(DomainError):
    """401. `code` says why when the caller can act on it (a user token refused as
    `token_expired`, `token_invalid_audience`, ...); `unauthorized` otherwise."""

    status = 401

    def __init__(
        self, message: str = "missing or invalid credentials", code: str = "unauthorized"
    ) -> None:
        super().__init__(code, message)


class Forbidden(DomainError):
    status = 403

    def __init__(self, message: str = "these credentials may not do that") -> None:
        super().__init__("forbidden", message)


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    """An error answer. `request_id`: the trace id of the request being answered (from its
    `traceparent`, or its span's with tracing on), else an id made up for this answer."""
    body: dict[str, Any] = {"error": code, "message": message, "request_id": tracing.request_id()}
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
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette answers this outside every middleware, so the request's traceparent is
        # read again here (tracing on, its span is still current)
        traceparent = tracing.current() or tracing.parse(request.headers.get(tracing.HEADER))
        request_id = tracing.trace_id_of(traceparent) if traceparent else tracing.request_id()
        trace = {"trace_id": request_id} if traceparent else {}
        log.exception("unhandled error", extra={"request_id": request_id, **trace})
        body = error_body("internal_error", "an unexpected error occurred")
        return JSONResponse(status_code=500, content={**body, "request_id": request_id})


# A JSON string spells NUL as \u0000; the backslash is an escape only when an even number of
# backslashes (zero included) precede it, otherwise the text is a literal backslash and "u0000".
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class RejectNulBytes:
    """ASGI middleware: a request with a NUL character in its path, its query string or a
    JSON string of its body is answered 422 before any route sees it. PostgreSQL cannot
    store NUL in text or jsonb, so such a value would otherwise reach the database and fail
    there as a 500. The body is read whole first (the services take small JSON bodies) and
    handed on unchanged; the common case costs one substring search. A body over
    `max_body_bytes` (declared or streamed) is answered 413 without being read further."""

    def __init__(self, app: Any, max_body_bytes: int = 8 * 1024 * 1024) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if "\x00" in scope.get("path", "") or b"\x00" in query or b"%00" in query:
            await self._refuse("a URL", scope, receive, send)
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        if self._declared_length(scope) > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message]), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if b"\\u0000" in body and _JSON_NUL.search(body):
            await self._refuse("a request body", scope, receive, send)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body}], receive), send)

    @staticmethod
    def _declared_length(scope: Any) -> int:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                return int(value) if value.isdigit() else 0
        return 0

    async def _too_large(self, scope: Any, receive: Any, send: Any) -> None:
        message = f"a request body may hold at most {self.max_body_bytes} bytes"
        body = error_body("payload_too_large", message)
        await JSONResponse(status_code=413, content=body)(scope, receive, send)

    @staticmethod
    async def _refuse(where: str, scope: Any, receive: Any, send: Any) -> None:
        body = error_body("validation_error", f"NUL characters are not allowed in {where}")
        await JSONResponse(status_code=422, content=body)(scope, receive, send)


def _replay(messages: list[dict[str, Any]], then: Any = None) -> Any:
    """A `receive` that hands out `messages` first, then defers to `then` (disconnects)."""
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        if then is None:
            return {"type": "http.disconnect"}
        message: dict[str, Any] = await then()
        return message

    return receive
