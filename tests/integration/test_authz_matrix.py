"""The authorization matrix (issue 25): every route of every service's OpenAPI, called as
each of eight principals, answers what its policy in tests/authz_table.py says.

A route the services publish with no row fails `test_every_route_has_a_row`, and so does a
row whose route is gone. The console is not in the matrix: it publishes no OpenAPI (checked
here) and authenticates people by cookie session, covered by tests/console.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from shared.auth import issue_user_token
from shared.settings import DEV_ADMIN_TOKEN, DEV_JWT_SECRET, dev_service_token
from tests.authz_table import (
    ALLOWED,
    PRINCIPALS,
    ROUTES,
    SERVICE_CALLER,
    Context,
    Row,
    expectations,
    path_defaults,
)
from tests.conftest import ADMIN, OTHER_SOURCE_KEY, eventually, unique

pytestmark = pytest.mark.integration

METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}
USER_A = unique("authz_a")
USER_B = unique("authz_b")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def headers() -> dict[str, dict[str, str]]:
    """What each principal sends. The JWTs are minted when the module's tests start, not when
    it is collected (in a long run, that can be more than their hour before)."""
    sent = {
        "anonymous": {},
        "user_a": _bearer(issue_user_token(DEV_JWT_SECRET, USER_A)),
        "user_b": _bearer(issue_user_token(DEV_JWT_SECRET, USER_B)),
        "expired_jwt": _bearer(issue_user_token(DEV_JWT_SECRET, USER_A, ttl_seconds=-60)),
        "forged_jwt": _bearer(issue_user_token("not-" + DEV_JWT_SECRET, USER_A)),
        "ingest_other_source": {"X-Api-Key": OTHER_SOURCE_KEY},
        "service": _bearer(dev_service_token(SERVICE_CALLER)),
        "admin": _bearer(DEV_ADMIN_TOKEN),
    }
    assert list(sent) == list(PRINCIPALS)
    return sent


@pytest.fixture(scope="module")
async def published(stack, http) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every operation the running services publish: (service, METHOD, path) -> operation."""
    routes: dict[tuple[str, str, str], dict[str, Any]] = {}
    for service in stack.services:
        response = await http(service).get("/openapi.json")
        assert response.status_code == 200, f"{service}: {response.status_code}"
        for path, operations in response.json()["paths"].items():
            for method, operation in operations.items():
                if method in METHODS:
                    routes[(service, method.upper(), path)] = operation
    return routes


@pytest.fixture(scope="module")
async def context(http, headers) -> Context:
    """User A with a redemption and a notification of their own, so that user B asking for
    them meets the handler's ownership check rather than a 404."""
    exchange, notifier = http("exchange"), http("notifier")
    # An item priced beyond anyone's balance: user A's redemption is refused by the ledger
    # (insufficient points) and stays as a failed redemption of theirs; the item is then
    # retired, so it is never on sale to anyone else.
    response = await exchange.post(
        "/v1/items",
        json={
            "name": "authz probe (priced out)",
            "category": unique("authz"),
            "type": "virtual",
            "points_price": 1_000_000_000,
            "stock": 1,
        },
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    item_id = response.json()["id"]
    try:
        response = await exchange.post(
            "/v1/redemptions",
            json={"user_id": USER_A, "item_id": item_id, "idempotency_key": unique("authz")},
            headers=headers["user_a"],
        )
        # 409 insufficient_points, or 202 pending when the ledger is slow to answer (the
        # recovery loop fails it later): a redemption of user A's either way
        assert response.status_code in (202, 409), response.text
    finally:
        retired = await exchange.delete(f"/v1/items/{item_id}", headers=ADMIN)
        assert retired.status_code == 200, retired.text
    answer = response.json()
    redemption_id = (
        answer["id"] if response.status_code == 202 else answer["details"]["redemption_id"]
    )

    # A campaign to user A alone: one notification of theirs. Its fate (suppressed without a
    # device, deferred in quiet hours, sent once the matrix registers one) does not matter.
    response = await notifier.post(
        "/v1/campaigns",
        json={
            "idempotency_key": unique("authz"),
            "name": "authz probe",
            "audience": {"user_ids": [USER_A]},
            "category": "reminders",
            "title": "authz probe",
            "body": "authz probe",
        },
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text

    async def queued() -> str:
        response = await notifier.get(f"/v1/users/{USER_A}/notifications", headers=ADMIN)
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert items, "the campaign has not reached user A yet"
        return str(items[0]["id"])

    notification_id = await eventually(queued, timeout=60)
    return Context(USER_A, redemption_id, notification_id)


def _url(path: str, values: dict[str, str]) -> str:
    return path.format(**{name: quote(value, safe="") for name, value in values.items()})


async def test_every_route_has_a_row(published, stack) -> None:
    """The table and the published routes are the same set, and each row can be sent as is:
    its policy exists, its path parameters are known, required query parameters and a
    required body are given."""
    problems = [f"{' '.join(k)}: published, but has no row" for k in published if k not in ROUTES]
    problems += [f"{' '.join(k)}: a row, but no such route" for k in ROUTES if k not in published]
    defaults = path_defaults(Context("u", "r", "n"))
    for key, row in ROUTES.items():
        name = " ".join(key)
        try:
            expectations(row.policy)
        except KeyError as exc:
            problems.append(f"{name}: {exc}")
        operation = published.get(key, {})
        for parameter in operation.get("parameters", []):
            param, where = parameter["name"], parameter["in"]
            if where == "path" and param not in {**defaults, **row.path}:
                problems.append(f"{name}: no value for path parameter {param}")
            if where == "query" and parameter.get("required") and param not in row.query:
                problems.append(f"{name}: no value for required query parameter {param}")
        if operation.get("requestBody", {}).get("required") and row.body is None:
            problems.append(f"{name}: the route needs a body")
    assert not problems, "tests/authz_table.py ROUTES and the services disagree:\n" + "\n".join(
        problems
    )
    # The console would join the matrix the day it publishes an OpenAPI document.
    console = httpx.AsyncClient(base_url=stack.url("console"), timeout=10)
    async with console:
        response = await console.get("/openapi.json")
    assert response.status_code == 404, "the console publishes an OpenAPI: add its routes"


CELLS = [(key, principal) for key in ROUTES for principal in PRINCIPALS]


@pytest.mark.parametrize(
    ("key", "principal"),
    CELLS,
    ids=[f"{' '.join(key)} as {principal}" for key, principal in CELLS],
)
async def test_authorization(
    key: tuple[str, str, str], principal: str, context, headers, http
) -> None:
    service, method, path = key
    row: Row = ROUTES[key]
    expected = expectations(row.policy)[principal]
    url = _url(path, {**path_defaults(context), **row.path})
    body = row.body(context) if callable(row.body) else row.body
    response = await http(service).request(
        method,
        url,
        params=dict(row.query),
        headers=headers[principal],
        **({} if body is None else {"json": body}),
    )
    status = response.status_code
    where = f"{service} {method} {path} as {principal} (policy {row.policy})"
    assert status < 500 or status in row.may_answer, f"{where}: {status} {response.text[:300]}"
    if expected == ALLOWED:
        assert status not in (401, 403), f"{where}: expected allowed, got {status} {response.text}"
    else:
        assert status == expected, f"{where}: expected {expected}, got {status} {response.text}"
