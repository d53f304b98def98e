"""Every error a route can answer, in its OpenAPI document.

Routes raise the `shared.errors` family and the handlers answer `{"error", "message",
"request_id"}` (with `details` for some); the rate limiter answers 429. FastAPI's generated
document only knows the success answer and its own 422 shape, so a client (or a fuzzer
checking responses against the document) would meet statuses it does not describe.
`document_errors` adds, to every `/v1` operation, 401, 403, 404, 409, 422, 429 and 503 with
the one error schema (and 400 and 413 to those that take a body: bytes that are not JSON, or
too many), and replaces FastAPI's 422 schema with it (the handler rewrites validation errors
into it). A write that answers 201 also documents the 200 of its idempotent repeat.

It also declares the credentials (`securitySchemes`: a user's JWT, the admin or a service's
bearer token, an ingest key) and which of them each operation takes, read from its
dependencies, so /docs has an Authorize button.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from shared.auth import optional_principal, principal

ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "a stable code, e.g. insufficient_points"},
        "message": {"type": "string", "description": "what went wrong, for people"},
        "details": {"type": "object", "additionalProperties": True},
        "request_id": {
            "type": "string",
            "description": "the request's trace id (from its traceparent, when it sent one): "
            "what to quote to an operator, who finds the request's log lines and trace by it",
        },
    },
}
ERRORS = {
    "401": "no credentials, or credentials that are not valid",
    "403": "valid credentials that may not do this",
    "404": "a resource named in the path does not exist",
    "409": "refused by a business rule (the error code says which)",
    "422": "the request is malformed or out of bounds",
    "429": "rate limited (see Retry-After)",
    "503": "a service this one depends on is unavailable; try again",
}
REPEAT = "the same request again: the resource it created before, unchanged"

# How a caller proves who it is (shared/auth.py), so that /docs offers an Authorize button.
SECURITY_SCHEMES = {
    "userToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "a user's token: from the identity provider (JIFEN_JWT_JWKS_URL; "
        "iss and aud checked when JIFEN_JWT_ISSUER / JIFEN_JWT_AUDIENCE are set) or, in "
        "development, HS256 with JIFEN_JWT_SECRET. A user sees only their own data; a "
        "refused token answers 401 with a reason code (token_expired, token_invalid_audience, ...)",
    },
    "operatorToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "the admin token (JIFEN_ADMIN_TOKEN) or a calling service's "
        "credential (JIFEN_SERVICE_CREDENTIALS, limited to its scopes)",
    },
    "ingestKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Api-Key",
        "description": "an upstream system's ingest key (JIFEN_INGEST_KEYS), for the sources "
        "it may publish",
    },
}
AUTHENTICATED: list[dict[str, list[str]]] = [{"userToken": []}, {"operatorToken": []}]
# a route that takes ingest keys says so with openapi_extra={"security": INGEST}
INGEST: list[dict[str, list[str]]] = [{"ingestKey": []}, {"operatorToken": []}]


def document_errors(app: FastAPI) -> None:
    """Install an OpenAPI generator that describes the error answers (built once, cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Error"] = ERROR_SCHEMA
        schema["components"]["securitySchemes"] = SECURITY_SCHEMES
        security = _security_by_operation(app)
        ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path, operations in schema.get("paths", {}).items():
            if not path.startswith("/v1/"):
                continue
            for method, operation in operations.items():
                if "security" not in operation and (path, method) in security:
                    operation["security"] = security[(path, method)]
                responses = operation.setdefault("responses", {})
                if "201" in responses and "200" not in responses:
                    # writes that create answer 200 with the existing resource when the same
                    # request comes again (an idempotency key or a natural key they name)
                    responses["200"] = {**responses["201"], "description": REPEAT}
                documented = dict(ERRORS)
                if "requestBody" in operation:
                    documented["400"] = "the body could not be read as JSON"
                    documented["413"] = "the body is larger than the service takes"
                for status, description in sorted(documented.items()):
                    answer = responses.setdefault(status, {"description": description})
                    answer["content"] = ref
                    if status == "429":
                        answer["headers"] = {
                            "Retry-After": {
                                "description": "seconds until a request would be admitted",
                                "schema": {"type": "integer"},
                            }
                        }
        for unused in ("HTTPValidationError", "ValidationError"):
            if not _referenced(schema, unused):
                components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _security_by_operation(app: FastAPI) -> dict[tuple[str, str], list[dict[str, list[str]]]]:
    """(path, method) -> the credentials each route's `principal` dependency takes; public
    routes that show more to a caller (`optional_principal`) take none as well."""
    found: dict[tuple[str, str], list[dict[str, list[str]]]] = {}
    for path, route in _api_routes(app):
        calls, pending = set(), [route.dependant]
        while pending:
            dependant = pending.pop()
            calls.add(dependant.call)
            pending.extend(dependant.dependencies)
        if optional_principal in calls:
            requirement = [{}, *AUTHENTICATED]
        elif principal in calls:
            requirement = list(AUTHENTICATED)
        else:
            continue
        for method in route.methods or ():
            found[(path, method.lower())] = requirement
    return found


def _api_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """Every API route with the path it is served at (FastAPI 0.165 keeps an included
    router's routes inside it, with the prefix applied only in the route's context)."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if contexts is None:
        for route in app.routes:
            if isinstance(route, APIRoute):
                yield route.path_format, route
        return
    for context in contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path_format:
            yield context.path_format, route


def _referenced(schema: dict[str, Any], name: str) -> bool:
    return f'"#/components/schemas/{name}"' in json.dumps(schema.get("paths", {})) or any(
        f'"#/components/schemas/{name}"' in json.dumps(v)
        for k, v in schema.get("components", {}).get("schemas", {}).items()
        if k != name
    )
