"""The console over plain HTTP, as an attacker or a careless client would use it: sessions,
CSRF and origin checks, idempotent adjustments, and no credential ever sent to a browser."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from console.settings import DEV_CONSOLE_PASSWORD
from shared.settings import DEV_ADMIN_TOKEN, dev_service_token
from tests.conftest import unique
from tests.integration.helpers import balance, create_item

pytestmark = pytest.mark.integration
PASSWORD = DEV_CONSOLE_PASSWORD


@pytest.fixture
async def console(stack) -> AsyncIterator[httpx.AsyncClient]:
    url = stack.url("console")
    async with httpx.AsyncClient(base_url=url, headers={"Origin": url}, timeout=30) as client:
        yield client


async def _sign_in(client: httpx.AsyncClient, name: str) -> str:
    """Signs the client in; returns the session's CSRF token."""
    response = await client.post("/", data={"name": name, "password": PASSWORD})
    assert response.status_code == 303, response.text
    page = await client.get("/dashboard")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    return token.group(1)


async def test_pages_need_a_session_and_sign_in_sets_a_strict_cookie(console) -> None:
    assert (await console.get("/dashboard")).status_code == 303
    wrong = await console.post("/", data={"name": "admin", "password": "guess"})
    assert wrong.status_code == 401 and "用户名或密码错误" in wrong.text
    unknown = await console.post("/", data={"name": "nobody", "password": PASSWORD})
    assert unknown.status_code == 401
    no_origin = await console.post(
        "/",
        data={"name": "admin", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert no_origin.status_code == 403 and "jifen_console" not in no_origin.headers.get(
        "set-cookie", ""
    )

    response = await console.post("/", data={"name": "admin", "password": PASSWORD})
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=28800" in cookie
    page = await console.get("/dashboard")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


async def test_guessing_passwords_is_throttled_per_name(console) -> None:
    """Five wrong passwords for a name, then sign-in for that name answers 429 with
    Retry-After before any password is checked (the right one included); the other
    operators, from the same address, are not held up. An unknown name is throttled the same
    way, so the answer says nothing about which names exist."""
    guessed = unique("guessed")
    for _ in range(5):
        wrong = await console.post("/", data={"name": guessed, "password": "guess"})
        assert wrong.status_code == 401
    held = await console.post("/", data={"name": guessed, "password": PASSWORD})
    assert held.status_code == 429 and int(held.headers["retry-after"]) >= 1
    assert "密码错误次数过多" in held.text and "jifen_console" not in held.headers.get(
        "set-cookie", ""
    )
    assert (
        await console.post("/", data={"name": "operator", "password": PASSWORD})
    ).status_code == 303


async def test_a_write_needs_the_csrf_token_and_the_consoles_origin(console, http) -> None:
    token = await _sign_in(console, "operator")
    user, ledger = unique("csrf"), http("rewards_ledger")
    form = {
        "direction": "credit",
        "points": "12",
        "reason": "goodwill",
        "idempotency_key": uuid.uuid4().hex,
    }

    missing = await console.post(f"/users/{user}/adjust", data=form)
    assert missing.status_code == 403 and "security token" in missing.text
    forged = await console.post(f"/users/{user}/adjust", data={**form, "csrf_token": "x" * 43})
    assert forged.status_code == 403
    cross_site = await console.post(
        f"/users/{user}/adjust",
        data={**form, "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert cross_site.status_code == 403
    assert await balance(ledger, user) == 0

    done = await console.post(f"/users/{user}/adjust", data={**form, "csrf_token": token})
    assert done.status_code == 303
    # the same form sent again (a double click, a reload): the same adjustment, once
    again = await console.post(f"/users/{user}/adjust", data={**form, "csrf_token": token})
    assert again.status_code == 303
    assert await balance(ledger, user) == 12


async def test_bad_input_is_a_clear_4xx_and_changes_nothing(console, http) -> None:
    token = await _sign_in(console, "operator")
    user = unique("bad")
    bad = await console.post(
        f"/users/{user}/adjust",
        data={
            "csrf_token": token,
            "direction": "credit",
            "points": "lots",
            "reason": "x",
            "idempotency_key": "k",
        },
    )
    assert bad.status_code == 422 and "points" in bad.text
    weird_user = await console.get("/users/..%2Fadmin")
    assert weird_user.status_code in (404, 422)
    unknown_rule = await console.get(f"/rules/{uuid.uuid4()}")
    assert unknown_rule.status_code == 404 and "not_found" in unknown_rule.text
    ship_nothing = await console.post(
        f"/fulfilment/{uuid.uuid4()}/ship",
        data={"csrf_token": token, "carrier": "SF", "tracking_number": "1"},
    )
    assert ship_nothing.status_code == 404
    assert await balance(http("rewards_ledger"), user) == 0


async def test_no_page_carries_a_service_credential_and_assets_are_local(console) -> None:
    await _sign_in(console, "admin")
    for path in (
        "/dashboard",
        "/rules",
        "/catalog",
        "/users/alice",
        "/fulfilment",
        "/antifarming",
        "/engagement",
        "/growth",
        "/audit",
    ):
        page = await console.get(path)
        assert page.status_code == 200, path
        assert DEV_ADMIN_TOKEN not in page.text and "Bearer" not in page.text
        assert dev_service_token("console") not in page.text
        assets = re.findall(r'(?:src|rel="stylesheet" href)="([^"]+)"', page.text)
        assert assets and all(a.startswith("/static/") for a in assets), assets  # no CDN
    htmx = await console.get("/static/vendor/htmx-2.0.11.min.js")
    assert htmx.status_code == 200 and 'version:"2.0.11"' in htmx.text.replace(" ", "")
    assert (await console.get("/static/vendor/chart-4.6.1.umd.min.js")).status_code == 200
    assert (await console.get("/static/vendor/pico-2.1.1.classless.min.css")).status_code == 200


async def test_rebuilding_a_board_needs_the_admin_role(stack, http) -> None:
    code = unique("rb").lower()
    created = await http("engagement").post(
        "/v1/leaderboards",
        json={"code": code, "name": "rebuild me", "metric": "points_earned", "window": "all_time"},
        headers={"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"},
    )
    assert created.status_code == 201, created.text
    url = stack.url("console")
    for role, expected in (("operator", 403), ("admin", 303)):
        async with httpx.AsyncClient(base_url=url, headers={"Origin": url}, timeout=30) as client:
            token = await _sign_in(client, role)
            answer = await client.post(f"/engagement/{code}/rebuild", data={"csrf_token": token})
            assert answer.status_code == expected, (role, answer.text[:300])


async def test_an_item_taken_off_sale_stays_on_the_catalog_page_to_be_edited(console, http) -> None:
    """The console reads the whole catalog (its credential's exchange:catalog), not only
    what is on sale: an operator must find an inactive item to put it back on sale."""
    category = unique("offsale")
    item = await create_item(http("exchange"), category=category, active=False)
    await _sign_in(console, "viewer")
    page = await console.get("/catalog", params={"category": category})
    assert page.status_code == 200 and item["name"] in page.text, page.text[-2000:]
