"""Lean request and response handling for the few endpoints that carry the load.

FastAPI parses a JSON body into Python objects, validates those into the model, then
validates the endpoint's returned dict into the response model before serializing it. For
the exchange's redemption endpoint that framework work was the largest part of a request's
CPU (docs/BENCHMARKS.md, seventh round). pydantic can validate the body straight from its
bytes and serialize a model straight to bytes; these helpers do that while keeping what the
API promises: the same 422 error body (locations under "body"), the same OpenAPI document.

    @router.post("/things", response_model=ThingOut, openapi_extra=json_body_schema(ThingIn))
    async def create(request: Request) -> Response:
        body = await json_body(request, ThingIn)
        ...
        return json_response(ThingOut.model_validate(view), 201)
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


async def json_body(request: Request, model: type[M]) -> M:
    """The request's JSON body validated as `model`, or a 422 like FastAPI's own."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def json_body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` that documents `model` as the required JSON request body (nested
    models written out in place: a `$ref` here would point into the document's root)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any, within: tuple[str, ...] = ()) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name in within:
                    raise ValueError(f"{model.__name__}: {name} refers to itself")
                return inline(defs[name], (*within, name))
            return {k: inline(v, within) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v, within) for v in node]
        return node

    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline(schema)}},
        }
    }


def json_response(model: BaseModel, status_code: int) -> Response:
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")
