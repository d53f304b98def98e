"""Every error a route can answer, in its OpenAPI document.

Routes raise the `shared.errors` family and the handlers answer `{"error", "message"}` (with
`details` for some); the rate limiter answers 429. FastAPI's generated document only knows
the success answer and its own 422 shape, so a client (or a fuzzer checking responses
against the document) would meet statuses it does not describe. `document_errors` adds, to
every `/v1` operation, 401, 403, 404, 409, 422, 429 and 503 with the one error schema (and
400 and 413 to those that take a body: bytes that are not JSON, or too many), and replaces
FastAPI's 422 schema with it (the handler rewrites validation errors into it). A write that
answers 201 also documents the 200 of its idempotent repeat.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "a stable code, e.g. insufficient_points"},
        "message": {"type": "string", "description": "what went wrong, for people"},
        "details": {"type": "object", "additionalProperties": True},
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
        ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path, operations in schema.get("paths", {}).items():
            if not path.startswith("/v1/"):
                continue
            for operation in operations.values():
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


def _referenced(schema: dict[str, Any], name: str) -> bool:
    return f'"#/components/schemas/{name}"' in json.dumps(schema.get("paths", {})) or any(
        f'"#/components/schemas/{name}"' in json.dumps(v)
        for k, v in schema.get("components", {}).get("schemas", {}).items()
        if k != name
    )
