"""A notification's record per device and its status derived from them, the retry that goes
only to the devices without the message, and the collapse identifiers that make a resend
replace the first copy (APNs, FCM's Android / APNs / Web Push parts, the webhook)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from services.notifier.domain import notification_id, notification_status
from services.notifier.providers import Outcome, Push, device_digest
from services.notifier.providers.fcm import fcm_message
from services.notifier.service import outcomes
from services.notifier.service.dispatch import Job, _resume, _triage
from services.notifier.settings import Settings

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
LEASE = NOW + timedelta(seconds=120)


@pytest.mark.parametrize(
    ("kinds", "before", "last", "status"),
    [
        (["sent", "sent"], False, False, "sent"),
        (["sent", "invalid_token"], False, False, "sent"),  # one device has it: sent
        (["sent", "retry"], False, False, "queued"),  # the other is tried again
        (["sent", "retry"], False, True, "sent"),  # attempts spent: settled, one has it
        (["retry"], True, False, "queued"),
        (["failed"], True, False, "sent"),  # an earlier attempt delivered it
        ([], True, False, "sent"),  # no device left to try, one had it
        (["invalid_token", "failed"], False, False, "failed"),
        (["retry"], False, True, "failed"),
        ([], False, False, "failed"),
    ],
)
def test_the_status_derives_from_the_deliveries(
    kinds: list[str], before: bool, last: bool, status: str
) -> None:
    assert notification_status(kinds, before, last) == status


def job(*outcomes_: tuple[str, str, str, Outcome], attempts: int = 0, by: str | None = None) -> Job:
    made = Job(
        id=notification_id("test", "n1"),
        user_id="ann",
        category="transactional",
        trigger="test",
        title="t",
        body="b",
        data={},
        attempts=attempts,
        campaign_id=None,
        experiment=None,
        variant=None,
        devices=[(p, t) for _, p, t, _ in outcomes_],
        lease=LEASE,
        delivered_by=by,
    )
    made.outcomes = list(outcomes_)
    return made


def recorded(j: Job, max_attempts: int = 6) -> tuple[dict[str, Any], dict, list[str]]:
    settings = Settings.model_validate({"max_attempts": max_attempts, "retry_base_s": 2.0})
    row = outcomes._outcome_row(settings, j, NOW)
    attempts: list[dict[str, Any]] = []
    deliveries: dict[tuple[str, str], dict[str, Any]] = {}
    invalid: list[str] = []
    outcomes._device_rows(j, row, NOW, attempts, deliveries, invalid)
    assert len(attempts) == len(j.outcomes)
    return row, {k[1]: v for k, v in deliveries.items()}, invalid


def test_one_device_delivered_and_one_invalid_is_sent_and_deactivates_that_one_only() -> None:
    row, by_device, invalid = recorded(
        job(
            ("apns", "ios", "phone", Outcome("sent", 200, message_id="m1")),
            ("fcm", "android", "badtablet", Outcome("invalid_token", 404, "UNREGISTERED")),
        )
    )
    assert (row["status"], row["provider"], row["provider_message_id"]) == ("sent", "apns", "m1")
    assert row["sent_at"] == NOW and row["lease"] == LEASE
    assert by_device[device_digest("phone")]["status"] == "sent"
    tablet = by_device[device_digest("badtablet")]
    assert (tablet["status"], tablet["error"], tablet["platform"]) == (
        "invalid_token",
        "UNREGISTERED",
        "android",
    )
    assert invalid == ["badtablet"]


def test_a_device_awaiting_a_retry_keeps_the_notification_queued_then_gives_up() -> None:
    pair = (
        ("apns", "ios", "phone", Outcome("sent", 200, message_id="m1")),
        ("fcm", "android", "tablet", Outcome("retry", 503, "UNAVAILABLE", retry_after_s=5)),
    )
    row, by_device, _ = recorded(job(*pair))
    assert row["status"] == "queued" and row["due_at"] == NOW + timedelta(seconds=5)
    assert row["sent_at"] == NOW  # the first device has it already
    assert by_device[device_digest("tablet")]["status"] == "retry"
    row, by_device, _ = recorded(job(pair[1], attempts=5, by="apns"), max_attempts=6)
    assert row["status"] == "sent" and row["provider"] == "apns"
    tablet = by_device[device_digest("tablet")]
    assert tablet["status"] == "failed" and tablet["error"].startswith("gave up after 6")


def test_none_delivered_is_failed_with_the_reason() -> None:
    row, _, _ = recorded(job(("apns", "ios", "bad1", Outcome("invalid_token", 410, "Gone"))))
    assert (row["status"], row["reason"]) == ("failed", "invalid_token")
    row, _, _ = recorded(job())
    assert (row["status"], row["reason"], row["provider"]) == ("failed", "no_device", None)


def row_of(status: str, attempts: int = 0, campaign: str | None = "c1") -> Any:
    """A claimed row as the dispatcher reads it (the columns it uses)."""
    return SimpleNamespace(
        id=notification_id("campaign", campaign, "ann"),
        user_id="ann",
        category="marketing",
        trigger="campaign",
        title="t",
        body="b",
        data={},
        status=status,
        attempts=attempts,
        campaign_id=campaign,
        experiment=None,
        variant=None,
    )


def test_a_campaign_in_flight_when_its_replica_died_is_sent_again() -> None:
    rows = [row_of("sending"), row_of("claimed"), row_of("queued", attempts=1), row_of("queued")]
    fresh, resumed = _triage(rows)
    assert fresh == rows[3:] and resumed == rows[:3]  # none given up as `interrupted`


def test_a_retry_goes_only_to_the_devices_without_the_message() -> None:
    r = row_of("queued", attempts=1)
    devices = {"ann": [("ios", "phone"), ("android", "tablet"), ("web", "browser")]}
    earlier = {
        r.id: {device_digest("phone"): ("sent", "apns"), device_digest("browser"): ("failed", "x")}
    }
    [resumed] = _resume([r], devices, earlier, LEASE)
    assert resumed.devices == [("android", "tablet")] and resumed.delivered_by == "apns"
    assert resumed.lease == LEASE
    [fresh] = _resume([row_of("sending")], devices, {}, LEASE)
    assert len(fresh.devices) == 3 and fresh.delivered_by is None


def test_every_send_of_a_notification_carries_the_same_collapse_identifiers() -> None:
    nid = notification_id("campaign", "c1", "ann")

    def message(platform: str, token: str = "tok") -> dict[str, Any]:
        push = Push(nid, "ann", platform, token, "标题", "正文", "marketing", {"k": 1})
        assert len(push.collapse_id.encode()) <= 64  # APNs' limit
        return dict(fcm_message(push)["message"])

    android, web, ios = message("android"), message("web"), message("ios")
    assert android["android"] == {"collapse_key": nid, "notification": {"tag": nid}}
    assert web["webpush"]["notification"] == {"tag": nid}
    topic = web["webpush"]["headers"]["Topic"]
    # Web Push: at most 32 characters of the URL-safe base64 alphabet (RFC 8030)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,32}", topic) and topic == nid.replace("-", "")
    assert ios["apns"] == {"headers": {"apns-collapse-id": nid}}
    assert {"android", "webpush", "apns"} & set(android) == {"android"}  # its platform's only
    # a resend, to this device or another: the same identifiers
    assert message("android", "tok2")["android"] == android["android"]
    assert message("web", "tok2")["webpush"] == web["webpush"]
