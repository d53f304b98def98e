"""The notifier on the running suite, sending to fake APNs (HTTP/2 over TLS, ES256 provider
tokens) and FCM (a service-account key through google-auth, HTTP v1) servers started by the
fixtures: expiry reminders from the ledger's lots, quiet hours, caps, opt-outs, invalid tokens,
retries (a token endpoint outage too), a record per device, redemption confirmations,
campaigns sent at least once through a kill -9 (a resend carrying the same collapse id), open
tracking, bad input."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import jwt
import pytest

from services.notifier.providers import device_digest
from shared.events import EXCHANGE_EVENTS, NOTIFY_EVENTS
from shared.settings import DEV_JWT_SECRET
from tests.conftest import ADMIN, eventually, unique
from tests.integration.helpers import credit, read_topic
from tests.push_fakes import SLOW_S, PushFakes

pytestmark = pytest.mark.integration

SHANGHAI = ZoneInfo("Asia/Shanghai")


def as_user(user_id: str) -> dict[str, str]:
    token = jwt.encode(
        {"sub": user_id, "exp": int(time.time()) + 3600}, DEV_JWT_SECRET, algorithm="HS256"
    )
    return {"Authorization": f"Bearer {token}"}


async def device(
    notifier: httpx.AsyncClient, user: str, platform: str = "ios", token: str = ""
) -> str:
    token = token or f"tok{uuid.uuid4().hex}"
    response = await notifier.post(
        f"/v1/users/{user}/devices",
        json={"platform": platform, "token": token},
        headers=as_user(user),
    )
    assert response.status_code == 201, response.text
    return token


async def prefs(notifier: httpx.AsyncClient, user: str, **body: Any) -> dict[str, Any]:
    response = await notifier.put(f"/v1/users/{user}/preferences", json=body, headers=as_user(user))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def no_quiet_hours(notifier: httpx.AsyncClient, user: str) -> None:
    await prefs(notifier, user, quiet_hours={"enabled": False})


async def records(notifier: httpx.AsyncClient, user: str) -> list[dict[str, Any]]:
    response = await notifier.get(f"/v1/users/{user}/notifications", headers=as_user(user))
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def settled_records(
    notifier: httpx.AsyncClient, user: str, count: int, timeout: float = 30
) -> list[dict[str, Any]]:
    """Wait until the user has `count` notifications, none still on its way. Badges other
    tests defined may be awarded to this user too (for a credit, a check-in): not counted."""

    async def check() -> list[dict[str, Any]]:
        found = [n for n in await records(notifier, user) if n["trigger"] != "badge_awarded"]
        assert len(found) == count, found
        assert all(n["status"] in ("sent", "suppressed", "failed", "deferred") for n in found), (
            found
        )
        return found

    return await eventually(check, timeout=timeout, interval=0.3)


async def by_trigger(
    notifier: httpx.AsyncClient, user: str, *triggers: str, timeout: float = 30
) -> dict[str, dict[str, Any]]:
    """The user's settled notification of each trigger (exactly one each)."""

    async def check() -> dict[str, dict[str, Any]]:
        found = await records(notifier, user)
        mine = {t: [n for n in found if n["trigger"] == t] for t in triggers}
        assert all(len(v) == 1 for v in mine.values()), found
        assert all(v[0]["status"] in ("sent", "suppressed", "failed") for v in mine.values())
        return {t: v[0] for t, v in mine.items()}

    return await eventually(check, timeout=timeout, interval=0.3)


async def run_trigger(
    notifier: httpx.AsyncClient, trigger: str, day: date, tz: str = "Asia/Shanghai"
) -> list[dict[str, Any]]:
    response = await notifier.post(
        f"/v1/triggers/{trigger}/runs",
        json={"day": day.isoformat(), "timezone": tz},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def campaign(notifier: httpx.AsyncClient, users: list[str], **fields: Any) -> dict[str, Any]:
    body = {
        "idempotency_key": uuid.uuid4().hex,
        "name": "test campaign",
        "audience": {"user_ids": users},
        "category": "marketing",
        "title": "双十二",
        "body": "积分商城新品上架",
        **fields,
    }
    response = await notifier.post("/v1/campaigns", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return dict(response.json())


def local_noon(day: date, zone: ZoneInfo = SHANGHAI) -> datetime:
    return datetime(day.year, day.month, day.day, 12, 0, tzinfo=zone)


async def test_expiry_reminders_at_t7_t3_t1_with_the_total_and_the_first_date(
    http, push_fakes: PushFakes
) -> None:
    notifier, ledger = http("notifier"), http("rewards_ledger")
    user = unique("expiring")
    token = await device(notifier, user, "ios")
    await no_quiet_hours(notifier, user)
    today = datetime.now(SHANGHAI).date()
    x = today + timedelta(days=40)  # far from the scheduler's own daily run
    await credit(ledger, user, 100, expires_at=local_noon(x).isoformat())
    await credit(ledger, user, 50, expires_at=local_noon(x + timedelta(days=2)).isoformat())

    # T-7: only the first lot is within 7 days.
    await run_trigger(notifier, "points_expiring", x - timedelta(days=7))
    [first] = await settled_records(notifier, user, 1)
    assert first["trigger"] == "points_expiring" and first["status"] == "sent", first
    assert first["data"]["points"] == "100" and first["data"]["expiry_date"] == x.isoformat()
    assert first["data"]["days_left"] == "7"
    assert first["provider"] == "apns" and first["provider_message_id"]
    [shown] = first["deliveries"]
    assert (shown["platform"], shown["provider"], shown["status"]) == ("ios", "apns", "sent")
    assert shown["attempts"] == 1 and len(shown["device"]) == 16  # a digest, not the token
    assert "100" in first["body"]
    [delivered] = push_fakes.delivered(first["id"])
    assert delivered["provider"] == "apns" and delivered["token"] == token
    assert delivered["apns_id"] == first["id"] == delivered["collapse_id"]
    assert delivered["body"] == first["body"]

    # No reminder on a day that is none of T-7/T-3/T-1 for any lot ...
    await run_trigger(notifier, "points_expiring", x - timedelta(days=6))
    # ... and the same day again queues nothing new.
    await run_trigger(notifier, "points_expiring", x - timedelta(days=7))
    await asyncio.sleep(1)
    assert len([n for n in await records(notifier, user) if n["trigger"] != "badge_awarded"]) == 1

    # T-3 and T-1: both lots are within 7 days now: one message each day with the total.
    await run_trigger(notifier, "points_expiring", x - timedelta(days=3))
    await run_trigger(notifier, "points_expiring", x - timedelta(days=1))
    found = await settled_records(notifier, user, 3)
    later = sorted(found, key=lambda n: int(n["data"]["days_left"]))
    assert [n["data"]["days_left"] for n in later] == ["1", "3", "7"]
    for n in later[:2]:
        assert n["status"] == "sent" and n["data"]["points"] == "150", n
        assert n["data"]["expiry_date"] == x.isoformat()
    assert len({n["id"] for n in found}) == 3
    # The copy comes from the expiry-copy experiment: each user always gets the same arm.
    assert {n["variant"] for n in found} <= {"deadline", "value"}
    assert len({n["variant"] for n in found}) == 1
    assert {n["experiment"] for n in found} == {"expiry_reminder_copy"}


def zone_where_it_is(hour: int) -> ZoneInfo:
    """A fixed-offset zone whose local time now is `hour` o'clock."""
    utc_hour = datetime.now(UTC).hour
    offset = (hour - utc_hour) % 24
    if offset > 14:
        offset -= 24
    return ZoneInfo(f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT")


async def test_a_reminder_in_quiet_hours_is_deferred_to_eight(http) -> None:
    notifier, ledger = http("notifier"), http("rewards_ledger")
    zone = zone_where_it_is(3)  # 03:00 there: inside the default 22:00-08:00 window
    if datetime.now(zone).minute >= 58:
        await asyncio.sleep(130)  # never straddle the hour
        zone = zone_where_it_is(3)
    user = unique("night")
    await device(notifier, user, "android")
    await prefs(notifier, user, timezone=zone.key)
    today = datetime.now(zone).date()
    expiry = today + timedelta(days=7)
    await credit(ledger, user, 30, expires_at=local_noon(expiry, zone).isoformat())
    await run_trigger(notifier, "points_expiring", today, tz=zone.key)

    [deferred] = await settled_records(notifier, user, 1)
    assert deferred["status"] == "deferred" and deferred["reason"] == "quiet_hours", deferred
    assert datetime.fromisoformat(deferred["due_at"]) == datetime(
        today.year, today.month, today.day, 8, 0, tzinfo=zone
    )
    assert deferred["sent_at"] is None


async def test_the_fourth_reminder_of_a_day_is_suppressed_and_marketing_is_capped_at_one(
    http, push_fakes: PushFakes
) -> None:
    notifier = http("notifier")
    user = unique("capped")
    await device(notifier, user, "ios")
    await no_quiet_hours(notifier, user)
    for n in range(1, 5):
        await campaign(notifier, [user], category="reminders", body=f"提醒 {n}")
        await settled_records(notifier, user, n)
    found = sorted(await records(notifier, user), key=lambda r: r["created_at"])
    assert [r["status"] for r in found] == ["sent", "sent", "sent", "suppressed"], found
    assert found[3]["reason"] == "daily_cap:3"
    assert not push_fakes.delivered(found[3]["id"])

    other = unique("marketed")
    await device(notifier, other, "ios")
    await no_quiet_hours(notifier, other)
    await campaign(notifier, [other], body="第一条")
    await settled_records(notifier, other, 1)
    await campaign(notifier, [other], body="第二条")
    found = sorted(await settled_records(notifier, other, 2), key=lambda r: r["created_at"])
    assert [r["status"] for r in found] == ["sent", "suppressed"]
    assert found[1]["reason"] == "marketing_cap:1"


async def test_opting_out_of_reminders_stops_them_but_not_a_shipped_parcel(
    http, producer, push_fakes: PushFakes
) -> None:
    notifier = http("notifier")
    user = unique("optout")
    await device(notifier, user, "android")
    await no_quiet_hours(notifier, user)
    shown = await prefs(notifier, user, categories={"reminders": False})
    assert shown["categories"] == {"transactional": True, "reminders": False, "marketing": True}

    await campaign(notifier, [user], category="reminders")
    [suppressed] = await settled_records(notifier, user, 1)
    assert suppressed["status"] == "suppressed" and suppressed["reason"] == "opted_out:reminders"

    redemption = str(uuid.uuid4())
    shipped = {
        "type": "redemption.shipped",
        "redemption_id": redemption,
        "user_id": user,
        "item_id": "mug",
        "item_type": "physical",
        "quantity": 1,
        "points": 500,
        "status": "completed",
        "fulfilment_status": "shipped",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    for _ in range(2):  # delivered twice by the broker: one message
        await producer.send_and_wait(
            EXCHANGE_EVENTS, json.dumps(shipped).encode(), key=user.encode()
        )
    found = await settled_records(notifier, user, 2)
    [message] = [n for n in found if n["trigger"] == "redemption_shipped"]
    assert message["status"] == "sent" and message["category"] == "transactional"
    assert message["provider"] == "fcm" and message["provider_message_id"].startswith("projects/")
    assert "已发货" in message["body"]
    [delivered] = push_fakes.delivered(message["id"])
    assert delivered["provider"] == "fcm" and delivered["title"] == message["title"]
    # what makes a resend replace it: the same on every send of this notification
    assert delivered["collapse_key"] == delivered["tag"] == message["id"]


async def test_a_token_the_provider_calls_invalid_is_deactivated(http) -> None:
    notifier = http("notifier")
    apple, google = unique("badios"), unique("badandroid")
    await device(notifier, apple, "ios", token=f"bad{uuid.uuid4().hex}")
    await device(notifier, google, "android", token=f"bad{uuid.uuid4().hex}")
    for user in (apple, google):
        await no_quiet_hours(notifier, user)
    await campaign(notifier, [apple, google])
    for user in (apple, google):
        [failed] = await settled_records(notifier, user, 1)
        assert failed["status"] == "failed" and failed["reason"] == "invalid_token", failed
        devices = (await notifier.get(f"/v1/users/{user}/devices", headers=as_user(user))).json()
        assert [d["active"] for d in devices["items"]] == [False]
        assert devices["items"][0]["deactivated_reason"] == "provider: invalid token"
    # A deactivated device gets nothing more: the next message finds no device.
    await campaign(notifier, [apple], category="reminders")
    found = await settled_records(notifier, apple, 2)
    assert sorted(n["reason"] for n in found) == ["invalid_token", "no_device"]


async def test_a_provider_failure_is_retried_and_every_attempt_recorded(http, push_fakes) -> None:
    notifier = http("notifier")
    user = unique("flaky")
    await device(notifier, user, "android", token=f"flaky{uuid.uuid4().hex}")
    await no_quiet_hours(notifier, user)
    await campaign(notifier, [user])
    [sent] = await settled_records(notifier, user, 1)
    assert sent["status"] == "sent" and sent["attempts"] == 2, sent
    detail = (await notifier.get(f"/v1/notifications/{sent['id']}", headers=ADMIN)).json()
    assert [a["outcome"] for a in detail["attempt_log"]] == ["retry", "sent"]
    assert detail["attempt_log"][0]["status_code"] == 503
    assert all(len(a["device"]) == 16 for a in detail["attempt_log"])  # a digest, not the token
    [delivery] = detail["deliveries"]
    assert (delivery["status"], delivery["attempts"]) == ("sent", 2), delivery
    assert len(push_fakes.delivered(sent["id"])) == 1


async def test_an_fcm_token_endpoint_outage_is_retried_and_the_push_sent_once(
    http, push_fakes: PushFakes
) -> None:
    """FCM's tokens revoked and its token endpoint failing one refresh (google-auth tries 3
    times): the push goes back to the dispatcher as a retry, never lost, then sent once."""
    notifier = http("notifier")
    user = unique("tokenless")
    await device(notifier, user, "android")
    await no_quiet_hours(notifier, user)
    push_fakes.control(revoke=True, fail_token_requests=3)
    try:
        await campaign(notifier, [user])
        [sent] = await settled_records(notifier, user, 1)
    finally:
        push_fakes.control()
    assert sent["status"] == "sent", sent
    detail = (await notifier.get(f"/v1/notifications/{sent['id']}", headers=ADMIN)).json()
    outcomes = [a["outcome"] for a in detail["attempt_log"]]
    assert outcomes[-1] == "sent" and set(outcomes[:-1]) == {"retry"}, detail["attempt_log"]
    assert any((a["detail"] or "").startswith("RefreshError") for a in detail["attempt_log"])
    assert len(push_fakes.delivered(sent["id"])) == 1


async def test_a_kill_mid_campaign_sends_to_everyone_and_a_resend_replaces_the_first(
    stack, http, push_fakes: PushFakes
) -> None:
    """At least once: the notifier killed (-9) mid-campaign leaves waves in flight; once
    their lease runs out the restarted one sends them again, with the same collapse id (the
    phone shows one). Every 25th device answers late (`slow`): the kill lands while one of
    them has the message and its answer is still held, so that one must be sent twice."""
    notifier = http("notifier")
    users = [unique("crowd") for _ in range(600)]
    tokens = {
        u: f"{'slow' if i % 25 == 0 else 'tok'}{uuid.uuid4().hex}" for i, u in enumerate(users)
    }

    async def register(user: str) -> None:
        await device(notifier, user, "ios", token=tokens[user])
        await no_quiet_hours(notifier, user)

    for start in range(0, len(users), 50):
        await asyncio.gather(*(register(u) for u in users[start : start + 50]))
    created = await campaign(notifier, users, body="大促 {name}", variables={"name": "双十二"})

    async def some_sent() -> None:
        got = (await notifier.get(f"/v1/campaigns/{created['id']}", headers=ADMIN)).json()
        assert got["counts"].get("sent", 0) >= 100, got

    await eventually(some_sent, timeout=60, interval=0.05)
    slow = {t for t in tokens.values() if t.startswith("slow")}

    async def unanswered() -> dict[str, Any]:
        seen = push_fakes.deliveries()["apns"]
        now = time.time()  # after reading them: a loaded machine may take a while
        late = [d for d in seen if d["token"] in slow and now - d["at"] < SLOW_S / 2]
        assert late, "no slow device holds an unanswered message yet"
        return late[0]

    caught = await eventually(unanswered, timeout=30, interval=0.02)
    stack.stop_service("notifier", signal.SIGKILL)
    killed_at = time.time()
    stack.start_service("notifier")
    stack.wait_ready(60, ("notifier",))

    async def finished() -> dict[str, Any]:
        got = (await notifier.get(f"/v1/campaigns/{created['id']}", headers=ADMIN)).json()
        assert got["status"] == "done", got
        assert got["counts"] == {"sent": len(users)}, got  # none lost, none failed
        return dict(got)

    done = await eventually(finished, timeout=90, interval=0.5)
    assert done["recipients"] == len(users)
    mine = set(tokens.values())
    copies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in push_fakes.deliveries()["apns"]:
        if d["token"] in mine:
            copies[d["token"]].append(d)
    assert set(copies) == mine, "a recipient never got the message"
    for got in copies.values():
        [nid] = {d["notification_id"] for d in got}  # one notification per recipient
        # every copy carries the notification's collapse id: a resend replaces, never adds
        assert {d["collapse_id"] for d in got} == {d["apns_id"] for d in got} == {nid}, got
        assert {d["body"] for d in got} == {"大促 双十二"}
    # sent before the kill and again after it
    resent = {
        t
        for t, got in copies.items()
        if min(d["at"] for d in got) < killed_at < max(d["at"] for d in got)
    }
    assert caught["token"] in resent, "the message in flight at the kill was not sent again"
    # only what was sent and not yet recorded: a batch (JIFEN_DISPATCH_BATCH, 100 here) per
    # dispatch loop (2), recorded once all its waves are answered
    assert len(resent) <= 2 * 100, len(resent)
    [record] = await records(notifier, next(u for u, t in tokens.items() if t == caught["token"]))
    assert record["status"] == "sent" and [d["status"] for d in record["deliveries"]] == ["sent"]
    again = sum(len(got) > 1 for got in copies.values())
    print("kill test:", done["counts"], "resent after the kill", len(resent), "in all", again)


async def test_a_redemption_is_confirmed_and_each_device_has_its_own_outcome(
    http, producer, push_fakes: PushFakes
) -> None:
    """兑换确认: a completed redemption is confirmed at once on every device. A device the
    provider calls invalid is deactivated alone (the message is still sent: the other has
    it); a device that fails once is tried again alone, the one that had it is not."""
    notifier = http("notifier")
    two, flaky = unique("twophones"), unique("flakyphone")
    phone = await device(notifier, two, "ios")
    await device(notifier, two, "android", token=f"bad{uuid.uuid4().hex}")
    retried = await device(notifier, flaky, "ios", token=f"flaky{uuid.uuid4().hex}")
    steady = await device(notifier, flaky, "android")
    for user in (two, flaky):
        await no_quiet_hours(notifier, user)
        completed = {
            "type": "redemption.completed",
            "redemption_id": str(uuid.uuid4()),
            "user_id": user,
            "item_id": "coffee",
            "item_type": "coupon",
            "quantity": 1,
            "points": 300,
            "status": "completed",
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        await producer.send_and_wait(
            EXCHANGE_EVENTS, json.dumps(completed).encode(), key=user.encode()
        )

    found = await by_trigger(notifier, two, "redemption_completed")
    confirmed = found["redemption_completed"]
    assert confirmed["category"] == "transactional" and confirmed["status"] == "sent", confirmed
    assert confirmed["title"] == "兑换成功" and "coffee" in confirmed["body"]
    assert "300积分" in confirmed["body"]
    outcomes = {d["platform"]: d for d in confirmed["deliveries"]}
    assert outcomes["ios"]["status"] == "sent" and outcomes["ios"]["provider"] == "apns"
    assert outcomes["android"]["status"] == "invalid_token", outcomes
    assert outcomes["android"]["error"] == "UNREGISTERED"
    devices = (await notifier.get(f"/v1/users/{two}/devices", headers=as_user(two))).json()
    active = {d["platform"]: d["active"] for d in devices["items"]}
    assert active == {"ios": True, "android": False}, devices
    [copy] = push_fakes.delivered(confirmed["id"])
    assert copy["token"] == phone and copy["collapse_id"] == confirmed["id"]

    again = (await by_trigger(notifier, flaky, "redemption_completed"))["redemption_completed"]
    assert again["status"] == "sent" and again["attempts"] == 2, again
    outcomes = {d["platform"]: d for d in again["deliveries"]}
    assert (outcomes["ios"]["status"], outcomes["ios"]["attempts"]) == ("sent", 2)
    assert (outcomes["android"]["status"], outcomes["android"]["attempts"]) == ("sent", 1)
    copies = push_fakes.delivered(again["id"])
    assert sorted(d["token"] for d in copies) == sorted([retried, steady])  # each once


async def test_open_tracking_is_recorded_once_and_published(http, stack) -> None:
    notifier = http("notifier")
    user = unique("opener")
    await device(notifier, user, "ios")
    await no_quiet_hours(notifier, user)
    await campaign(notifier, [user])
    [sent] = await settled_records(notifier, user, 1)
    assert sent["status"] == "sent" and sent["opened_at"] is None

    stranger = await notifier.post(f"/v1/notifications/{sent['id']}/opened", headers=as_user("x"))
    assert stranger.status_code == 403
    first = await notifier.post(f"/v1/notifications/{sent['id']}/opened", headers=as_user(user))
    assert first.status_code == 200 and first.json()["opened_at"] is not None
    again = await notifier.post(f"/v1/notifications/{sent['id']}/opened", headers=as_user(user))
    assert again.json()["opened_at"] == first.json()["opened_at"]
    [shown] = await records(notifier, user)
    assert shown["opened_at"] == first.json()["opened_at"]

    events = await read_topic(
        stack.kafka_bootstrap,
        NOTIFY_EVENTS,
        2,
        keep=lambda m: m.get("notification_id") == sent["id"],
        then_wait_ms=500,
    )
    assert sorted(e["type"] for e in events) == ["opened", "sent"]


async def test_templates_render_in_the_users_language(http, push_fakes: PushFakes) -> None:
    notifier = http("notifier")
    user = unique("english")
    token = await device(notifier, user, "web")
    await prefs(notifier, user, locale="en", quiet_hours={"enabled": False})
    code = f"promo_{uuid.uuid4().hex[:8]}"
    put = await notifier.put(
        f"/v1/templates/{code}",
        json={
            "category": "marketing",
            "variables": ["item"],
            "texts": {
                "zh-CN": {"title": "新品", "body": "{item} 上架啦"},
                "en": {"title": "New", "body": "{item} is here"},
            },
        },
        headers=ADMIN,
    )
    assert put.status_code == 200, put.text
    await campaign(
        notifier, [user], title=None, body=None, template=code, variables={"item": "Mug"}
    )
    [sent] = await settled_records(notifier, user, 1)
    assert (sent["title"], sent["body"], sent["provider"]) == ("New", "Mug is here", "webhook")
    # the webhook's receiver keeps the first of a resend by its idempotency key
    [hook] = push_fakes.delivered(sent["id"])
    assert hook["idempotency_key"] == f"{sent['id']}.{device_digest(token)}"
    assert hook["collapse_id"] == sent["id"]


async def test_bad_input_is_refused_and_changes_nothing(http) -> None:
    notifier = http("notifier")
    user = unique("bad")
    mine = as_user(user)
    cases = [
        (
            "post",
            f"/v1/users/{user}/devices",
            {"platform": "nokia", "token": "abcdefgh1"},
            mine,
            422,
        ),
        (
            "post",
            f"/v1/users/{user}/devices",
            {"platform": "ios", "token": "no spaces!"},
            mine,
            422,
        ),
        (
            "post",
            f"/v1/users/{user}/devices",
            {"platform": "ios", "token": "abcdefgh1"},
            as_user("x"),
            403,
        ),
        (
            "put",
            f"/v1/users/{user}/preferences",
            {"categories": {"transactional": False}},
            mine,
            422,
        ),
        ("put", f"/v1/users/{user}/preferences", {"timezone": "Mars/Olympus"}, mine, 422),
        ("put", f"/v1/users/{user}/preferences", {"quiet_hours": {"start": "25:00"}}, mine, 422),
        (
            "post",
            "/v1/campaigns",
            {
                "idempotency_key": "k",
                "name": "x",
                "audience": {"user_ids": [user], "tier": "gold"},
                "title": "t",
                "body": "b",
            },
            ADMIN,
            422,
        ),
        (
            "post",
            "/v1/campaigns",
            {
                "idempotency_key": "k",
                "name": "x",
                "audience": {"user_ids": [user]},
                "template": "nope",
            },
            ADMIN,
            422,
        ),
        (
            "post",
            "/v1/campaigns",
            {
                "idempotency_key": "k",
                "name": "x",
                "audience": {"user_ids": [user]},
                "title": "t",
                "body": "b",
            },
            mine,
            403,
        ),
        ("post", "/v1/notifications/00000000-0000-0000-0000-000000000000/opened", None, ADMIN, 404),
        ("post", "/v1/triggers/points_expiring/runs", {"day": "yesterday"}, ADMIN, 422),
        (
            "put",
            "/v1/templates/points_expiring",
            {"category": "marketing", "texts": {"zh-CN": {"title": "t", "body": "b"}}},
            ADMIN,
            422,
        ),
        (
            "put",
            "/v1/templates/x_promo",
            {"category": "marketing", "texts": {"zh-CN": {"title": "t", "body": "{undeclared}"}}},
            ADMIN,
            422,
        ),
    ]
    for method, path, body, headers, status in cases:
        response = await notifier.request(method, path, json=body, headers=headers)
        assert response.status_code == status, (path, body, response.text)
        assert set(response.json()) >= {"error", "message"}, response.text
    assert (await notifier.get(f"/v1/users/{user}/devices", headers=mine)).json()["items"] == []
    assert (await prefs(notifier, user))["categories"]["transactional"] is True
    assert await records(notifier, user) == []


async def test_streak_task_tier_and_badge_messages_come_from_the_events(http, producer) -> None:
    notifier = http("notifier")
    user = unique("habits")
    await device(notifier, user, "ios")
    await no_quiet_hours(notifier, user)
    today = datetime.now(SHANGHAI).date()
    yesterday = today - timedelta(days=1)
    now = datetime.now(UTC).isoformat()

    def progress(event_type: str, **fields: Any) -> bytes:
        return json.dumps(
            {
                "type": event_type,
                "event_id": uuid.uuid4().hex,
                "user_id": user,
                "task_id": "daily_checkin",
                "occurred_at": now,
                **fields,
            }
        ).encode()

    await producer.send_and_wait(
        "progress.events",
        progress("checkin.recorded", day=yesterday.isoformat(), kind="normal", streak=4),
        key=user.encode(),
    )
    await producer.send_and_wait(
        "progress.events",
        progress(
            "task.completed", task_id="like_3", period_key=yesterday.isoformat(), completion=1
        ),
        key=user.encode(),
    )
    tier = {
        "type": "tier.changed",
        "event_id": uuid.uuid4().hex,
        "user_id": user,
        "data": {"tier": "gold", "tier_name": "黄金会员", "direction": "up", "sequence": 1},
        "occurred_at": now,
    }
    await producer.send_and_wait("engagement.events", json.dumps(tier).encode(), key=user.encode())
    # (other tests' badges may be awarded for that check-in too: look for each cause)
    raised = (await by_trigger(notifier, user, "tier_changed"))["tier_changed"]
    assert raised["category"] == "transactional"
    assert "黄金会员" in raised["body"] and raised["status"] == "sent"

    # The consumer has applied the check-in and the task (the tier came after them on the
    # same partition): 20:00 and 18:00 runs for today remind the user.
    await run_trigger(notifier, "streak_at_risk", today)
    await run_trigger(notifier, "tasks_unfinished", today)
    found = await by_trigger(notifier, user, "streak_at_risk", "tasks_unfinished")
    assert found["streak_at_risk"]["body"] == "连续签到4天,今日签到可获得额外积分!"
    assert found["tasks_unfinished"]["data"]["count"] == "1"
    # The tier change also put the user in the tier's campaign audience.
    tiered = await campaign(notifier, [], audience={"tier": "gold"}, category="reminders")
    got = await eventually(lambda: _campaign_done(notifier, tiered["id"]), timeout=30, interval=0.3)
    assert got["recipients"] >= 1
    message = (await by_trigger(notifier, user, "campaign"))["campaign"]
    # the user's 4th reminder today when another test's badge was awarded for the check-in
    reminders = [n for n in await records(notifier, user) if n["category"] == "reminders"]
    if message["status"] == "suppressed":
        assert message["reason"] == "daily_cap:3" and len(reminders) > 3, reminders
    else:
        assert message["status"] == "sent", message


async def _campaign_done(notifier: httpx.AsyncClient, campaign_id: str) -> dict[str, Any]:
    got = (await notifier.get(f"/v1/campaigns/{campaign_id}", headers=ADMIN)).json()
    assert got["status"] == "done", got
    return dict(got)


async def test_a_device_can_be_removed_and_a_token_follows_its_new_owner(http) -> None:
    notifier = http("notifier")
    first, second = unique("owner1"), unique("owner2")
    token = await device(notifier, first, "ios")
    again = await notifier.post(
        f"/v1/users/{second}/devices",
        json={"platform": "ios", "token": token},
        headers=as_user(second),
    )
    assert again.status_code == 200 and again.json()["created"] is False
    mine = (await notifier.get(f"/v1/users/{first}/devices", headers=as_user(first))).json()
    assert mine["items"] == []  # the phone was signed in as someone else
    gone = await notifier.delete(f"/v1/users/{second}/devices/{token}", headers=as_user(second))
    assert gone.status_code == 204
    missing = await notifier.delete(f"/v1/users/{second}/devices/{token}", headers=as_user(second))
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    nul = await notifier.post(
        "/v1/campaigns",
        json={
            "idempotency_key": unique("k"),
            "name": "x",
            "audience": {"user_ids": [first]},
            "title": "t",
            "body": "{v}",
            "variables": {"v": "a\u0000b"},
        },
        headers=ADMIN,
    )
    assert nul.status_code == 422, nul.text
