"""The operations console in a real browser: what an operator does, and what the suite then
holds (checked through the services' own APIs)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from playwright.async_api import Page, expect

from console.auth import COOKIE
from console.settings import DEV_CONSOLE_SECRET
from tests.browser.conftest import SignIn, csrf_token, screenshot
from tests.conftest import ADMIN, envelope, unique
from tests.integration.helpers import (
    balance,
    create_item,
    create_task,
    credit,
    send,
    wait_for_balance,
)

pytestmark = pytest.mark.integration


async def reload_until(
    page: Page, locator: str, text: str | re.Pattern[str], timeout: float = 30
) -> None:
    """Reload the page until `locator` shows `text` (the pipeline is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await expect(page.locator(locator)).to_contain_text(text, timeout=1000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await page.reload()


async def test_sign_in_shows_the_dashboard_in_chinese_then_english(sign_in: SignIn) -> None:
    page = await sign_in("admin")
    await expect(page.locator("h1")).to_have_text("总览")
    assert await page.get_attribute("html", "lang") == "zh-CN"
    # both reconciliations read and balanced, lag per topic listed
    await expect(page.locator("[data-reconciliation=ledger]")).to_contain_text(
        "账平", timeout=30_000
    )
    await expect(page.locator("[data-reconciliation=exchange]")).to_contain_text("账平")
    await expect(page.locator("#topics tbody tr").first).to_be_visible()
    # the CJK font is there, so Chinese renders as text, not boxes
    assert await page.evaluate("document.fonts.check('16px \"WenQuanYi Micro Hei\"')")

    await page.click("a[lang=en]")
    await expect(page.locator("h1")).to_have_text("Dashboard")
    await expect(page.locator("[data-nav=rules]")).to_have_text("Rules")


async def test_create_a_rule_dry_run_it_publish_it_and_activate_it(sign_in: SignIn, http) -> None:
    page = await sign_in("operator")
    await page.click("[data-nav=rules]")
    await page.click("#new-rule summary")
    name, action = f"点赞三次 {uuid.uuid4().hex[:6]}", unique("like_ui")
    await page.fill("#rule-form input[name=name]", name)
    await page.fill("#rule-form input[name=action]", action)
    await page.fill("#rule-form input[name=target_count]", "3")
    await page.fill("#rule-form input[name=reward_points]", "1")
    await page.fill("#rule-form input[name=max_per_period]", "20")
    await page.uncheck("#rule-form input[name=active]")  # published inactive, then activated
    await page.click("#dry-run-button")
    await expect(page.locator("#simulation")).to_contain_text("扫描行为数")
    await screenshot(page, "rules")
    await page.click("#publish")
    await page.wait_for_url(re.compile(r"/rules/[0-9a-f-]+"))
    await expect(page.locator("#rule-active")).to_have_text("停用")

    await page.click("#toggle-active")
    await expect(page.locator("#rule-active")).to_have_text("启用")
    await page.click("[data-nav=rules]")
    await expect(page.locator(f"tr[data-rule='{name}'] .rule-status")).to_have_text("启用")

    task_id = page.url  # the rule as task_progress holds it
    tasks = await http("task_progress").get("/v1/tasks", params={"limit": 500}, headers=ADMIN)
    mine = [t for t in tasks.json()["items"] if t["name"] == name]
    assert len(mine) == 1 and mine[0]["active"] and mine[0]["target_count"] == 3, task_id


async def test_a_rule_the_service_refuses_shows_why_and_creates_nothing(
    sign_in: SignIn, http
) -> None:
    page = await sign_in("operator")
    await page.goto("/rules")
    await page.click("#new-rule summary")
    name = f"bad {uuid.uuid4().hex[:6]}"
    await page.fill("#rule-form input[name=name]", name)
    await page.fill("#rule-form input[name=action]", unique("x"))
    await page.fill("#rule-form input[name=reward_points]", "1")
    await page.fill("#rule-form input[name=reward_type]", "no_such_asset")
    await page.click("#publish")
    await expect(page.locator("#error")).to_contain_text("no_such_asset")
    tasks = await http("task_progress").get("/v1/tasks", params={"limit": 500}, headers=ADMIN)
    assert not [t for t in tasks.json()["items"] if t["name"] == name]


async def test_behavior_sent_upstream_appears_as_balance_and_history(sign_in: SignIn, http) -> None:
    action, user = unique("share_ui"), unique("用户")
    await create_task(http("task_progress"), action=action, reward_points=7, name="分享得7分")
    await send(http("behavior_sensor"), [envelope(user, action, datetime.now(UTC).isoformat())])

    page = await sign_in("viewer")
    await page.click("[data-nav=users]")
    await page.fill("input[name=user_id]", user)
    await page.press("input[name=user_id]", "Enter")
    await expect(page.locator("#user-id")).to_have_text(user)
    await reload_until(page, "#balances tr[data-asset=points] .balance", "7")
    await expect(page.locator("#history")).to_contain_text("分享得7分")
    await expect(page.locator("#tasks")).to_contain_text("分享得7分")
    await screenshot(page, "user")


async def test_adjust_points_with_a_reason_and_see_it_in_the_audit_log(
    sign_in: SignIn, http
) -> None:
    user, ledger = unique("adj"), http("rewards_ledger")
    page = await sign_in("operator")
    await page.goto(f"/users/{user}")
    await page.select_option("#adjust-form select[name=direction]", "credit")
    await page.fill("#adjust-form input[name=points]", "25")
    await page.fill("#adjust-form input[name=reason]", "客服补偿")
    await page.click("#adjust-form button[type=submit]")
    await expect(page.locator("[role=status]")).to_be_visible()
    await expect(page.locator("#balances tr[data-asset=points] .balance")).to_have_text("25")
    assert await balance(ledger, user) == 25

    # more than the balance: refused with the ledger's reason, nothing moves
    await page.select_option("#adjust-form select[name=direction]", "debit")
    await page.fill("#adjust-form input[name=points]", "1000")
    await page.fill("#adjust-form input[name=reason]", "too much")
    await page.click("#adjust-form button[type=submit]")
    await expect(page.locator("#error")).to_contain_text("insufficient_points")
    assert await balance(ledger, user) == 25

    await page.goto(f"/audit?target=user:{user}")
    done = page.locator("#audit tr[data-action='points.credit'][data-outcome=done]")
    await expect(done).to_have_count(1)
    await expect(done.locator("pre.before")).to_contain_text('"balance": 0')
    await expect(done.locator("pre.after")).to_contain_text('"balance_after": 25')
    await expect(done).to_contain_text("operator")
    await expect(
        page.locator("#audit tr[data-action='points.debit'][data-outcome=insufficient_points]")
    ).to_have_count(1)
    await screenshot(page, "audit")


async def test_redeem_for_a_user_then_ship_and_deliver_the_parcel(sign_in: SignIn, http) -> None:
    exchange, user = http("exchange"), unique("parcel")
    item = await create_item(
        exchange,
        name=f"积分马克杯 {uuid.uuid4().hex[:4]}",
        type="physical",
        points_price=30,
        stock=5,
    )
    await credit(http("rewards_ledger"), user, 100)

    page = await sign_in("operator")
    await page.goto(f"/users/{user}")
    await page.fill("#redeem-form input[name=item_id]", item["id"])
    await page.fill("#redeem-form input[name=shipping_address]", "上海市浦东新区世纪大道1号")
    await page.click("#redeem-form button[type=submit]")
    await expect(page.locator("#redemptions")).to_contain_text("completed")
    await expect(page.locator("#balances tr[data-asset=points] .balance")).to_have_text("70")
    redemptions = await exchange.get(f"/v1/users/{user}/redemptions", headers=ADMIN)
    (redemption,) = redemptions.json()["items"]

    await page.click("[data-nav=fulfilment]")
    await page.fill("input[name=user_id]", user)  # the queue of this user's parcels
    await page.press("input[name=user_id]", "Enter")
    row = page.locator(f"#to-ship tr[data-redemption='{redemption['id']}']")
    await expect(row).to_contain_text("世纪大道")
    await screenshot(page, "fulfilment")
    await row.locator("input[name=carrier]").fill("顺丰")
    await row.locator("input[name=tracking_number]").fill("SF1234567890")
    await row.locator("button[type=submit]").click()
    shipped = page.locator(f"#to-deliver tr[data-redemption='{redemption['id']}']")
    await expect(shipped).to_contain_text("SF1234567890")
    await expect(page.locator(f"#to-ship tr[data-redemption='{redemption['id']}']")).to_have_count(
        0
    )
    await shipped.locator("button[type=submit]").click()
    await expect(shipped).to_have_count(0)

    found = await exchange.get(f"/v1/redemptions/{redemption['id']}", headers=ADMIN)
    assert found.json()["fulfilment"] == {
        "status": "delivered",
        "shipping_address": "上海市浦东新区世纪大道1号",
        "carrier": "顺丰",
        "tracking_number": "SF1234567890",
    }


async def test_release_a_diverted_behavior_and_it_is_credited(sign_in: SignIn, http) -> None:
    action = "farm_test_console"  # limited to 2 an hour in tests; this test's rule alone pays it
    user, ledger = unique("farm"), http("rewards_ledger")
    await create_task(http("task_progress"), action=action, reward_points=1, period="lifetime")
    start = datetime.now(UTC).replace(minute=0, second=1, microsecond=0)
    events = [envelope(user, action, start.replace(second=1 + i).isoformat()) for i in range(3)]
    await send(http("behavior_sensor"), events)

    page = await sign_in("operator")
    await page.goto(f"/antifarming?user_id={user}")
    await reload_until(page, "#diverted", events[2]["event_id"])
    await wait_for_balance(ledger, user, 2)  # the two within the limit
    await screenshot(page, "antifarming")
    await page.click(f"tr[data-event='{events[2]['event_id']}'] [data-decision=release]")
    await expect(page.locator("[role=status]")).to_be_visible()
    await expect(page.locator(f"tr[data-event='{events[2]['event_id']}']")).to_have_count(0)

    await wait_for_balance(ledger, user, 3)
    await asyncio.sleep(1)  # and only once
    assert await balance(ledger, user) == 3


async def test_a_viewer_sees_but_cannot_write(sign_in: SignIn, http, console_url: str) -> None:
    user, ledger = unique("view"), http("rewards_ledger")
    page = await sign_in("viewer")
    await page.goto(f"/users/{user}")
    await expect(page.locator("#adjust-form")).to_have_count(0)  # not offered...
    await expect(page.locator(".readonly")).to_be_visible()
    token = await csrf_token(page)  # (the sign-out form's)
    # ...and refused by the server when sent anyway, with a valid session, token and origin
    answer = await page.request.post(
        f"/users/{user}/adjust",
        form={
            "csrf_token": token,
            "direction": "credit",
            "points": "500",
            "reason": "viewer tries",
            "idempotency_key": uuid.uuid4().hex,
        },
        headers={"Origin": console_url},
    )
    assert answer.status == 403
    assert "operator" in await answer.text()
    assert await balance(ledger, user) == 0
    await page.goto(f"/audit?target=/users/{user}/adjust")
    await expect(page.locator("#audit tr[data-outcome=role_required]")).to_have_count(1)


async def test_a_stale_or_forged_session_is_refused(
    sign_in: SignIn, browser, console_url: str, http
) -> None:
    page = await sign_in("operator")
    cookie = next(c for c in await page.context.cookies() if c["name"] == COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    token = await csrf_token(page)

    async def with_cookie(value: str) -> Page:
        context = await browser.new_context(base_url=console_url)
        await context.add_cookies([{**cookie, "value": value}])
        return await context.new_page()

    # forged: a made-up value, and the real one with its signature altered
    for value in (
        "made-up",
        cookie["value"][:-2] + ("AA" if not cookie["value"].endswith("AA") else "BB"),
    ):
        forged = await with_cookie(value)
        await forged.goto("/dashboard")
        await expect(forged.locator("form[action='/'] input[name=password]")).to_be_visible()
        await forged.context.close()

    # signed by the right key but older than a session lives (8 h)
    class Old(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 9 * 3600

    old = URLSafeTimedSerializer(DEV_CONSOLE_SECRET, salt="jifen-console-session", signer=Old)
    aged = await with_cookie(old.dumps("whatever-token"))
    await aged.goto("/dashboard")
    await expect(aged.locator("input[name=password]")).to_be_visible()
    await aged.context.close()

    # stale: signed out, the old cookie no longer opens anything and cannot write
    await page.click("form[action='/signout'] button")
    await page.wait_for_url(re.compile(r"/$"))
    stale = await with_cookie(cookie["value"])
    await stale.goto("/dashboard")
    await expect(stale.locator("#session-ended")).to_be_visible()
    user = unique("stale")
    answer = await stale.request.post(
        f"/users/{user}/adjust",
        form={
            "csrf_token": token,
            "direction": "credit",
            "points": "9",
            "reason": "x",
            "idempotency_key": "k",
        },
        headers={"Origin": console_url},
    )
    assert answer.status == 401
    assert await balance(http("rewards_ledger"), user) == 0
    await stale.context.close()


async def test_catalog_and_engagement_pages(sign_in: SignIn, http) -> None:
    code = unique("board").lower()
    created = await http("engagement").post(
        "/v1/leaderboards",
        json={"code": code, "name": "总积分榜", "metric": "points_earned", "window": "all_time"},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    category = unique("coupons")
    item = await create_item(
        http("exchange"), name=f"五元优惠券 {uuid.uuid4().hex[:4]}", stock=40, category=category
    )

    page = await sign_in("operator")
    await page.click("[data-nav=catalog]")
    await page.fill("input[name=category]", category)
    await page.press("input[name=category]", "Enter")
    row = page.locator(f"tr[data-item='{item['name']}']")
    await expect(row.locator(".stock")).to_contain_text("40")
    await row.locator("summary").click()
    await row.locator("input[name=stock]").fill("35")
    await row.locator("button[type=submit]").click()
    await expect(page.locator(f"tr[data-item='{item['name']}'] .stock")).to_contain_text("35")
    async with httpx.AsyncClient(base_url=str(http("exchange").base_url)) as client:
        assert (await client.get(f"/v1/items/{item['id']}")).json()["stock"] == 35
    await screenshot(page, "catalog")

    await page.click("[data-nav=engagement]")
    await expect(page.locator(f"[data-board='{code}']")).to_contain_text("总积分榜")
    await screenshot(page, "engagement")

    # the dashboard once the other scenarios have moved points: read again now
    await page.click("[data-nav=dashboard]")
    await page.click("#status button[hx-post]")
    await expect(page.locator("[data-reconciliation=ledger]")).to_contain_text("账平")
    await screenshot(page, "dashboard")
