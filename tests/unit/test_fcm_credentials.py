"""FCM's access token through google-auth, against the fake FCM of tests/push_fakes.py (its
token endpoint, STS exchange and metadata server, served in processes of their own): a key
file, application default credentials (a key named by GOOGLE_APPLICATION_CREDENTIALS,
workload identity federation, the GKE/GCE metadata server), renewal before expiry, a revoked
token, a token endpoint that fails, and a refresh that never blocks the event loop."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.notifier.providers.base import Outcome, Push
from services.notifier.providers.fcm import FcmProvider
from tests.push_fakes import PushFakes

ROOT = Path(__file__).resolve().parents[2]
ADC_ENV = ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT")


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PushFakes]:
    running = PushFakes(tmp_path_factory.mktemp("fcm-fakes")).start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def clean(fakes: PushFakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fakes.control()  # long-lived tokens, no failure, no delay
    for name in ADC_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no developer's ADC


def push() -> Push:
    token = f"tok{uuid.uuid4().hex}"
    return Push(str(uuid.uuid4()), "u1", "android", token, "标题", "正文", "marketing")


def provider(fakes: PushFakes, project_id: str = "", key: str = "") -> FcmProvider:
    return FcmProvider(fakes.fcm_url, project_id, key, timeout_s=10.0, concurrency=64)


async def timed_send(fcm: FcmProvider) -> tuple[Outcome, float]:
    started = time.monotonic()
    outcome = await fcm.send(push())
    return outcome, time.monotonic() - started


async def test_a_key_file_gets_one_token_from_its_token_uri_for_every_send(
    fakes: PushFakes,
) -> None:
    before = len(fakes.tokens())
    fcm = provider(fakes, key=str(fakes.service_account_path))
    assert fcm.project_id == fakes.project  # from the key file: JIFEN_FCM_PROJECT_ID unset
    try:
        outcomes = await asyncio.gather(*(fcm.send(push()) for _ in range(200)))
    finally:
        await fcm.close()
    assert {o.kind for o in outcomes} == {"sent"}
    [token] = fakes.tokens()[before:]  # one token endpoint request, however many sends wait
    assert token == {"grant": "jwt-bearer", "subject": fakes.account_email, "uses": 200}


async def test_a_token_is_renewed_before_it_expires_without_holding_a_send(
    fakes: PushFakes,
) -> None:
    """2 s tokens from a token endpoint that takes 0.5 s: renewal starts half-way through
    a token's life while sends go on with it; only a send with no valid token waits."""
    fakes.control(token_lifetime_s=2.0, token_delay_s=0.5)
    before = len(fakes.tokens())
    fcm = provider(fakes, key=str(fakes.service_account_path))
    try:
        first, waited = await timed_send(fcm)
        assert first.kind == "sent" and waited >= 0.5  # no token yet
        await asyncio.sleep(1.2)  # past renewal time, before expiry
        second, waited = await timed_send(fcm)
        assert second.kind == "sent" and waited < 0.4  # the old token, renewal in the background
        await asyncio.sleep(0.8)  # the renewal is done
        third, _ = await timed_send(fcm)
        assert third.kind == "sent"
        await asyncio.sleep(2.0)  # the renewed token has expired too: the next send waits
        fourth, waited = await timed_send(fcm)
        assert fourth.kind == "sent" and waited >= 0.45
    finally:
        await fcm.close()
    issued = fakes.tokens()[before:]
    assert len(issued) == 3 and all(t["uses"] >= 1 for t in issued), issued


async def test_a_revoked_token_is_a_retry_and_the_next_send_gets_a_new_one(
    fakes: PushFakes,
) -> None:
    before = len(fakes.tokens())
    fcm = provider(fakes, key=str(fakes.service_account_path))
    try:
        assert (await fcm.send(push())).kind == "sent"
        fakes.control(revoke=True)
        refused = await fcm.send(push())
        assert (refused.kind, refused.status_code) == ("retry", 401)
        assert (await fcm.send(push())).kind == "sent"
    finally:
        await fcm.close()
    assert [t["uses"] for t in fakes.tokens()[before:]] == [1, 1]  # the 401 used none


async def test_a_failing_token_endpoint_is_one_retry_for_every_waiting_send(
    fakes: PushFakes,
) -> None:
    """google-auth tries its token endpoint 3 times per refresh: the 3 failures below are
    one refresh, shared by every send waiting on it; the notifications are retried (the
    dispatcher's `retry` outcome), not lost, and the next refresh after the pause works."""
    fakes.control(fail_token_requests=3)
    fcm = provider(fakes, key=str(fakes.service_account_path))
    try:
        outcomes = await asyncio.gather(*(fcm.send(push()) for _ in range(20)))
        assert {o.kind for o in outcomes} == {"retry"}
        assert all((o.detail or "").startswith("RefreshError") for o in outcomes), outcomes[0]
        fast = await fcm.send(push())  # within the pause: no new refresh, no wait
        assert fast.kind == "retry"
        await asyncio.sleep(2.1)
        assert (await fcm.send(push())).kind == "sent"
    finally:
        await fcm.close()


async def test_a_slow_refresh_runs_off_the_event_loop(fakes: PushFakes) -> None:
    fakes.control(token_delay_s=1.0)
    fcm = provider(fakes, key=str(fakes.service_account_path))
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        for _ in range(40):
            await asyncio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    try:
        sent, _ = await asyncio.gather(fcm.send(push()), tick())
    finally:
        await fcm.close()
    assert sent.kind == "sent"
    assert max(gaps) < 0.25, max(gaps)  # the loop went on while google-auth waited 1 s


async def test_adc_a_key_named_by_google_application_credentials(
    fakes: PushFakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """JIFEN_FCM_SERVICE_ACCOUNT_PATH pointing at no file (Compose and Kubernetes always set
    it, to an optional mount) falls through to application default credentials."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(fakes.service_account_path))
    before = len(fakes.tokens())
    fcm = provider(fakes, key=str(tmp_path / "absent" / "service-account.json"))
    try:
        assert (await fcm.send(push())).kind == "sent"
    finally:
        await fcm.close()
    assert fcm.project_id == fakes.project  # the credentials' project
    assert [t["grant"] for t in fakes.tokens()[before:]] == ["jwt-bearer"]


async def test_adc_workload_identity_federation_needs_no_key(
    fakes: PushFakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An `external_account` configuration (what `gcloud iam workload-identity-pools
    create-cred-config` writes): the pod's own token (here a file) exchanged at STS."""
    subject = tmp_path / "token"
    subject.write_text(fakes.subject_token)
    config = tmp_path / "credential-configuration.json"
    # no project number in the audience: google-auth would ask Cloud Resource Manager (on the
    # internet) for its project id; JIFEN_FCM_PROJECT_ID names it instead
    audience = "//iam.googleapis.com/locations/global/workloadIdentityPools/jifen/providers/k8s"
    config.write_text(
        json.dumps(
            {
                "type": "external_account",
                "audience": audience,
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "token_url": f"{fakes.fcm_url}/sts",
                "credential_source": {"file": str(subject)},
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(config))
    before = len(fakes.tokens())
    fcm = provider(fakes, project_id=fakes.project)
    try:
        outcomes = [await fcm.send(push()) for _ in range(3)]
    finally:
        await fcm.close()
    assert {o.kind for o in outcomes} == {"sent"}
    assert fakes.tokens()[before:] == [{"grant": "token-exchange", "subject": audience, "uses": 3}]


SEND_ONCE = """
import asyncio, json, sys
from services.notifier.providers.base import Push
from services.notifier.providers.fcm import FcmProvider

async def main() -> None:
    fcm = FcmProvider(sys.argv[1], "", "", 10.0, 8)
    outcome = await fcm.send(Push("n1", "u1", "android", "tok-gke", "t", "b", "marketing"))
    await fcm.close()
    print(json.dumps({"kind": outcome.kind, "detail": outcome.detail, "project": fcm.project_id}))

asyncio.run(main())
"""


def send_in_a_process(fakes: PushFakes, env: dict[str, str], home: Path) -> dict[str, Any]:
    """google-auth reads the metadata server's address when first imported: a process of
    its own, with no credentials of the machine's."""
    clean = {k: v for k, v in os.environ.items() if k not in ADC_ENV and not k.startswith("GCE_")}
    clean |= {"CLOUDSDK_CONFIG": str(home), "PYTHONPATH": str(ROOT), **env}
    done = subprocess.run(
        [sys.executable, "-c", SEND_ONCE, fakes.fcm_url],
        env=clean,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_adc_the_metadata_server_of_gke_workload_identity(fakes: PushFakes, tmp_path: Path) -> None:
    before = len(fakes.tokens())
    host = f"127.0.0.1:{fakes.fcm_port}"
    answer = send_in_a_process(
        fakes, {"GCE_METADATA_HOST": host, "GCE_METADATA_IP": host}, tmp_path
    )
    assert answer == {"kind": "sent", "detail": None, "project": fakes.project}  # its project
    assert fakes.tokens()[before:] == [
        {"grant": "metadata", "subject": fakes.account_email, "uses": 1}
    ]


def test_no_credentials_anywhere_is_a_retry_not_a_crash(fakes: PushFakes, tmp_path: Path) -> None:
    answer = send_in_a_process(fakes, {"NO_GCE_CHECK": "true"}, tmp_path)
    assert answer["kind"] == "retry", answer
    assert answer["detail"].startswith("DefaultCredentialsError"), answer
