"""The lean body/answer helpers behave like FastAPI's own handling for the API's callers."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, Field

from shared.errors import install_error_handlers
from shared.hotpath import json_body, json_body_schema, json_response


class Line(BaseModel):
    sku: str = Field(min_length=1)
    quantity: int = Field(ge=1)


class Order(BaseModel):
    lines: list[Line] = Field(min_length=1)
    note: str | None = None


def app() -> FastAPI:
    api = FastAPI()
    install_error_handlers(api)

    @api.post("/plain", response_model=Order, status_code=201)
    async def plain(body: Order) -> Order:
        return body

    @api.post("/lean", response_model=Order, openapi_extra=json_body_schema(Order))
    async def lean(request: Request) -> Response:
        return json_response(await json_body(request, Order), 201)

    return api


BAD = [
    {"lines": []},
    {"lines": [{"sku": "", "quantity": 0}]},
    {"note": "no lines"},
    {"lines": [{"sku": "a", "quantity": "many"}]},
]


@pytest.mark.parametrize("body", BAD)
async def test_a_bad_body_gets_the_same_422_as_fastapi_gives(body: dict) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app()), base_url="http://t") as c:
        plain = await c.post("/plain", json=body)
        lean = await c.post("/lean", json=body)
    assert lean.status_code == plain.status_code == 422
    mine, fastapis = lean.json(), plain.json()
    assert mine.pop("request_id") != fastapis.pop("request_id")  # each names its own request
    assert mine == fastapis


async def test_malformed_json_is_a_422_with_the_error_shape() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app()), base_url="http://t") as c:
        lean = await c.post("/lean", content=b"{", headers={"content-type": "application/json"})
    assert lean.status_code == 422
    assert lean.json()["error"] == "validation_error" and lean.json()["message"]


async def test_a_good_body_round_trips_with_the_status_given() -> None:
    body = {"lines": [{"sku": "a", "quantity": 2}], "note": None}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app()), base_url="http://t") as c:
        plain = await c.post("/plain", json=body)
        lean = await c.post("/lean", json=body)
    assert lean.status_code == plain.status_code == 201
    assert lean.headers["content-type"] == "application/json"
    assert lean.json() == plain.json() == body


def test_the_documented_body_is_the_models_schema_with_nothing_left_to_resolve() -> None:
    schema = app().openapi()
    documented = schema["paths"]["/lean"]["post"]["requestBody"]
    assert documented["required"] is True
    body = documented["content"]["application/json"]["schema"]
    assert "$ref" not in json.dumps(body)
    assert body["properties"]["lines"]["items"]["properties"]["sku"]["minLength"] == 1


class Node(BaseModel):
    children: list[Node] = []


def test_a_model_that_refers_to_itself_cannot_be_written_out_in_place() -> None:
    with pytest.raises(ValueError, match="refers to itself"):
        json_body_schema(Node)
