"""A service replica that trusts an identity provider (issue 33), end to end: a ledger
replica started with `JIFEN_JWT_JWKS_URL` pointing at a JWKS this test serves over HTTP
(tests/idp.py), checking issuer and audience. The suite's other processes keep the dev
secret; the unit tests (tests/unit/test_jwt_providers.py) cover every refusal in detail."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from shared.auth import issue_user_token
from shared.settings import DEV_JWT_SECRET
from tests.conftest import eventually, unique
from tests.idp import AUDIENCE, ISSUER, FakeIdp, Key

pytestmark = pytest.mark.integration

SIGNING = Key.new("kid-2026-01", "RS256")


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIdp]:
    provider = FakeIdp(SIGNING).start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def ledger(stack, idp: FakeIdp) -> Iterator[str]:
    """An extra API replica of the ledger that verifies user tokens with the provider's keys."""
    env = {
        "JIFEN_JWT_JWKS_URL": idp.url,
        "JIFEN_JWT_ISSUER": ISSUER,
        "JIFEN_JWT_AUDIENCE": AUDIENCE,
        "JIFEN_JWT_JWKS_MIN_REFETCH_S": "1",  # the default 10 s would make the test wait
    }
    name = stack.start_service("rewards_ledger", replica=2, role="api", extra_env=env)
    try:
        stack.wait_ready(120, (name,))
        yield stack.url(name)
    finally:
        stack.stop_service(name)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_provider_token_is_accepted_and_any_other_refused_with_a_reason(
    ledger: str, idp: FakeIdp
) -> None:
    me = unique("idp")
    async with httpx.AsyncClient(base_url=ledger, timeout=30) as client:
        mine = await client.get(f"/v1/accounts/{me}", headers=bearer(SIGNING.token(me)))
        assert mine.status_code == 200, mine.text
        # authenticated is not authorized: still only one's own account
        theirs = await client.get("/v1/accounts/someone-else", headers=bearer(SIGNING.token(me)))
        assert theirs.status_code == 403
        for token, code in [
            (SIGNING.token(me, aud="another-app"), "token_invalid_audience"),
            (SIGNING.token(me, iss="https://elsewhere.example"), "token_invalid_issuer"),
            (SIGNING.token(me, ttl=-120), "token_expired"),
            (issue_user_token(DEV_JWT_SECRET, me), "token_invalid_algorithm"),
        ]:
            answer = await client.get(f"/v1/accounts/{me}", headers=bearer(token))
            assert answer.status_code == 401, answer.text
            assert answer.json()["error"] == code

        # the provider rotates: a token signed with its new key works without a restart
        # (fetched on the unknown kid, at most once a second here, or by the background refresh)
        rotated = Key.new("kid-2026-02", "ES256")
        idp.publish(SIGNING, rotated)

        async def new_key_accepted() -> None:
            answer = await client.get(f"/v1/accounts/{me}", headers=bearer(rotated.token(me)))
            assert answer.status_code == 200, answer.text

        await eventually(new_key_accepted, timeout=30, interval=0.5)

        # the provider goes away: the keys held keep verifying, and the metrics say so
        idp.set_mode("error")
        stranger = Key.new("kid-unknown")

        async def outage_counted() -> None:
            answer = await client.get(f"/v1/accounts/{me}", headers=bearer(stranger.token(me)))
            assert answer.json()["error"] == "token_unknown_key"
            metrics = (await client.get("/metrics")).text
            assert 'jifen_jwks_fetch_total{outcome="error",service="rewards_ledger"}' in metrics

        try:
            await eventually(outage_counted, timeout=30, interval=0.5)
            for key in (SIGNING, rotated):
                answer = await client.get(f"/v1/accounts/{me}", headers=bearer(key.token(me)))
                assert answer.status_code == 200, answer.text
            metrics = (await client.get("/metrics")).text
            assert 'jifen_jwks_keys_age_seconds{service="rewards_ledger"}' in metrics
            assert 'jifen_jwt_refused_total{reason="token_invalid_audience"' in metrics
        finally:
            idp.set_mode("ok")

        document = (await client.get("/openapi.json")).json()
        assert set(document["components"]["securitySchemes"]) == {
            "userToken",
            "operatorToken",
            "ingestKey",
        }
