"""Logs never print credentials (issue 25): the admin token, service credentials, ingest
keys, user JWTs (valid, expired or forged) and device tokens go through every service and
into failures, and none of them appears in any service's log or in the notifier's `log`
provider output."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from shared.auth import issue_user_token
from shared.settings import DEV_ADMIN_TOKEN, DEV_INGEST_KEY, DEV_JWT_SECRET, dev_service_token
from tests.conftest import envelope, unique

pytestmark = pytest.mark.integration


async def test_no_credential_or_device_token_reaches_a_log(http, stack) -> None:
    user = unique("secretive")
    good = issue_user_token(DEV_JWT_SECRET, user)
    expired = jwt.encode({"sub": user, "exp": int(time.time()) - 60}, DEV_JWT_SECRET, "HS256")
    forged = jwt.encode({"sub": user}, "not-the-secret-at-all-not-the-secret", "HS256")
    device = f"devicetoken{uuid.uuid4().hex}"
    service = dev_service_token("exchange")

    notifier, ledger, sensor = http("notifier"), http("rewards_ledger"), http("behavior_sensor")
    for token in (good, expired, forged, DEV_ADMIN_TOKEN, service, "garbage-" + uuid.uuid4().hex):
        auth = {"Authorization": f"Bearer {token}"}
        await ledger.get(f"/v1/accounts/{user}", headers=auth)
        await notifier.post(
            f"/v1/users/{user}/devices", json={"platform": "ios", "token": device}, headers=auth
        )
        await notifier.get(f"/v1/users/{user}/notifications", headers=auth)
    accepted = await sensor.post(
        "/v1/events",
        json=envelope(user, "secret_test", "2026-11-30T12:00:00+08:00"),
        headers={"X-Api-Key": DEV_INGEST_KEY},
    )
    assert accepted.status_code == 202
    wrong_key = await sensor.post(
        "/v1/events",
        json=envelope(user, "secret_test", "2026-11-30T12:00:00+08:00"),
        headers={"X-Api-Key": "wrong-" + DEV_INGEST_KEY},
    )
    assert wrong_key.status_code == 401
    # a message to that device (the log provider, or a fake provider, writes it somewhere)
    await notifier.put(
        f"/v1/users/{user}/preferences",
        json={"quiet_hours": {"enabled": False}},
        headers={"Authorization": f"Bearer {good}"},
    )

    assert stack.log_dir is not None
    logs = {p.name: p.read_text(errors="replace") for p in stack.log_dir.glob("*.log")}
    assert logs, "the suite writes its logs under log_dir"
    secrets = {
        "a user JWT": good,
        "an expired JWT": expired,
        "a forged JWT": forged,
        "the admin token": DEV_ADMIN_TOKEN,
        "a service credential": service,
        "the ingest key": DEV_INGEST_KEY,
        "a device token": device,
    }
    for name, text in logs.items():
        for what, secret in secrets.items():
            assert secret not in text, f"{what} appears in {name}"
