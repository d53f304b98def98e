"""User tokens from a real identity provider (issue 33): keys from a JWKS served over HTTP by
the test (tests/idp.py), issuer and audience checked, a 401 with a reason code for every
token that proves no one, rotation without a restart, and a provider that goes away.

Requests go through the `principal` dependency of a small FastAPI app (the one every service
route uses), so the answers are the services' own: status and `{"error", "message"}` body.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import httpx
import jwt
import pytest
from fastapi import Depends, FastAPI
from prometheus_client import REGISTRY
from pydantic import ValidationError

from services.rewards_ledger.settings import Settings as LedgerSettings
from shared.auth import Authenticator, Principal, issue_user_token, principal
from shared.errors import install_error_handlers
from shared.jwks import parse_jwks
from shared.settings import DEV_JWT_SECRET, JifenSettings
from tests.idp import AUDIENCE, ISSUER, FakeIdp, Key, hs256_with, unsigned_token

_names = itertools.count()


def fresh_service() -> str:
    """A service name per authenticator, so each test reads its own metric series."""
    return f"jwt-test-{next(_names)}"


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    return {alg: Key.new(f"kid-{alg}", alg) for alg in ("RS256", "ES256", "EdDSA")}


@pytest.fixture
def idp(keys: dict[str, Key]) -> Iterator[FakeIdp]:
    provider = FakeIdp(*keys.values()).start()
    yield provider
    provider.stop()


def app_for(auth: Authenticator) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.authenticator = auth

    @app.get("/v1/me")
    async def me(caller: Annotated[Principal, Depends(principal)]) -> dict[str, Any]:
        return {"kind": caller.kind, "user_id": caller.user_id}

    return app


class Api:
    """An authenticator as a service holds it, and a client for a route behind it."""

    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth
        self.service = auth.users.service
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app_for(auth)), base_url="http://t"
        )

    async def call(self, token: str) -> httpx.Response:
        return await self.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})

    async def refused(self, token: str) -> str:
        answer = await self.call(token)
        assert answer.status_code == 401, answer.text
        body = answer.json()
        assert set(body) == {"error", "message", "request_id"} and body["message"], body
        return str(body["error"])

    def metric(self, name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"service": self.service, **labels}) or 0.0


async def open_api(url: str, min_refetch_s: float = 10.0, **settings: Any) -> Api:
    auth = Authenticator(
        JifenSettings(
            service_name=fresh_service(),
            jwt_jwks_url=url,
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            **settings,
        )
    )
    assert auth.users.keys is not None
    auth.users.keys.min_refetch_s = min_refetch_s
    await auth.start()
    return Api(auth)


@pytest.fixture
async def api(idp: FakeIdp) -> AsyncIterator[Api]:
    opened = await open_api(idp.url)
    yield opened
    await opened.client.aclose()
    await opened.auth.close()


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
async def test_a_token_from_the_provider_is_accepted(api: Api, keys: dict[str, Key], alg: str):
    answer = await api.call(keys[alg].token("alice"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"kind": "user", "user_id": "alice"}
    # verified once, then remembered: the same token again costs no signature check
    assert (await api.call(keys[alg].token("alice"))).status_code == 200


def _claims(**override: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, **override}


def refusals(keys: dict[str, Key]) -> dict[str, tuple[str, str]]:
    """name -> (token, the code it must be refused with)."""
    rsa, ec = keys["RS256"], keys["ES256"]
    stranger = Key.new(rsa.kid)  # the provider's kid, another key: a forged signature
    return {
        "wrong audience": (rsa.token(aud="another-api"), "token_invalid_audience"),
        "no audience": (rsa.token(aud=None), "token_invalid_audience"),
        "wrong issuer": (rsa.token(iss="https://evil.example"), "token_invalid_issuer"),
        "no issuer": (rsa.token(iss=None), "token_invalid_issuer"),
        "expired": (rsa.token(ttl=-120), "token_expired"),
        "not yet valid": (rsa.token(nbf=int(time.time()) + 3600), "token_not_yet_valid"),
        "no expiry": (rsa.token(exp=None), "token_missing_claim"),
        "no subject": (rsa.token(sub=None), "token_missing_claim"),
        "alg none": (
            unsigned_token({"alg": "none", "typ": "JWT", "kid": rsa.kid}, _claims()),
            "token_invalid_algorithm",
        ),
        "alg None, no kid": (unsigned_token({"alg": "None"}, _claims()), "token_invalid_algorithm"),
        "alg not a string": (
            unsigned_token({"alg": ["RS256"], "kid": rsa.kid}, _claims()),
            "token_invalid_algorithm",
        ),
        # HS/RS confusion: HMAC keyed with the provider's public key, which anyone can read
        "HS256 with the public key": (
            hs256_with(rsa.public_pem(), {"alg": "HS256", "kid": rsa.kid}, _claims()),
            "token_invalid_algorithm",
        ),
        "HS256 with the dev secret": (
            issue_user_token(DEV_JWT_SECRET, "mallory"),
            "token_invalid_algorithm",
        ),
        # an RS256 header on the EC key's kid: the key decides the algorithm, not the token
        "algorithm other than the key's": (
            jwt.encode(_claims(), stranger.private, "RS256", headers={"kid": ec.kid}),
            "token_invalid_algorithm",
        ),
        "forged signature": (stranger.token("mallory"), "token_invalid_signature"),
        "unknown kid": (Key.new("kid-nobody-knows").token(), "token_unknown_key"),
        "no kid (several keys)": (
            jwt.encode(_claims(), rsa.private, "RS256"),
            "token_unknown_key",
        ),
        "not a JWT": ("not-a-jwt", "token_malformed"),
        "garbage segments": ("a.b.c", "token_malformed"),
        "huge": ("x" * 20_000, "token_malformed"),
    }


async def test_tokens_that_prove_no_one_get_401_with_a_reason(
    api: Api, keys: dict[str, Key]
) -> None:
    codes = {name: await api.refused(token) for name, (token, _) in refusals(keys).items()}
    assert codes == {name: code for name, (_, code) in refusals(keys).items()}
    assert api.metric("jifen_jwt_refused_total", reason="token_invalid_algorithm") == 6


async def test_garbage_kids_cannot_make_it_hammer_the_provider(idp: FakeIdp, api: Api) -> None:
    """An unknown kid fetches the JWKS at most once per interval (10 s by default): the
    start-up fetch was just now, so a flood of made-up kids fetches nothing."""
    before = idp.fetches
    tokens = [Key.new(f"junk-{i}").token() for i in range(3)] * 10
    codes = await asyncio.gather(*(api.refused(t) for t in tokens))
    assert set(codes) == {"token_unknown_key"}
    assert idp.fetches == before


async def test_concurrent_requests_for_a_new_key_share_one_fetch(
    idp: FakeIdp, keys: dict[str, Key]
) -> None:
    api = await open_api(idp.url, min_refetch_s=0.0)
    try:
        rotated = Key.new("kid-rotated", "ES256")
        idp.publish(*keys.values(), rotated)
        before = idp.fetches
        answers = await asyncio.gather(*(api.call(rotated.token(f"u{i}")) for i in range(20)))
        assert {a.status_code for a in answers} == {200}
        assert idp.fetches == before + 1
    finally:
        await api.client.aclose()
        await api.auth.close()


async def test_a_rotated_key_works_without_a_restart(idp: FakeIdp, keys: dict[str, Key]) -> None:
    old = keys["RS256"]
    idp.publish(old)
    api = await open_api(idp.url, min_refetch_s=0.2)
    try:
        assert (await api.call(old.token("ann"))).status_code == 200
        # the provider publishes its next key, then signs with it
        new = Key.new("kid-next", "RS256")
        idp.publish(old, new)
        await asyncio.sleep(0.25)
        answer = await api.call(new.token("ann"))
        assert answer.status_code == 200, answer.text
        assert answer.json()["user_id"] == "ann"
        # ... and withdraws the old one: its tokens stop working at the next fetch, even one
        # that was verified (and remembered) before
        remembered = old.token("bob")
        assert (await api.call(remembered)).status_code == 200
        idp.publish(new)
        assert api.auth.users.keys is not None
        assert await api.auth.users.keys.refetch()
        assert await api.refused(remembered) == "token_unknown_key"
        assert (await api.call(new.token("ann"))).status_code == 200
    finally:
        await api.client.aclose()
        await api.auth.close()


async def test_the_background_refresh_picks_up_a_new_key(
    idp: FakeIdp, keys: dict[str, Key]
) -> None:
    api = await open_api(idp.url, min_refetch_s=3600.0)  # no fetch on the request path
    assert api.auth.users.keys is not None
    await api.auth.close()
    api.auth.users.keys.refresh_s = 0.1
    await api.auth.start()
    try:
        new = Key.new("kid-background", "EdDSA")
        idp.publish(*keys.values(), new)
        for _ in range(50):
            if api.auth.users.keys.get(new.kid) is not None:
                break
            await asyncio.sleep(0.05)
        assert (await api.call(new.token("cy"))).status_code == 200
    finally:
        await api.client.aclose()
        await api.auth.close()


@pytest.mark.parametrize("outage", ["error", "refuse"])
async def test_a_provider_that_is_down_leaves_the_cached_keys_in_use(
    idp: FakeIdp, keys: dict[str, Key], outage: str
) -> None:
    api = await open_api(idp.url, min_refetch_s=0.0)
    keyset = api.auth.users.keys
    assert keyset is not None
    try:
        assert api.metric("jifen_jwks_fetch_total", outcome="ok") == 1
        assert api.metric("jifen_jwks_keys") == 3
        idp.set_mode(outage)  # type: ignore[arg-type]
        # an unknown kid makes it ask, and the provider does not answer ...
        assert await api.refused(Key.new("kid-during-outage").token()) == "token_unknown_key"
        assert not await keyset.refetch()
        assert keyset.degraded
        # ... yet the keys it had still verify
        for key in keys.values():
            answer = await api.call(key.token("dee"))
            assert answer.status_code == 200, answer.text
        assert api.metric("jifen_jwks_fetch_total", outcome="error") == 2
        age = api.metric("jifen_jwks_keys_age_seconds")
        await asyncio.sleep(0.05)
        assert api.metric("jifen_jwks_keys_age_seconds") > age > 0
        assert api.metric("jifen_jwks_keys") == 3
        # back: the next fetch succeeds and the age starts again
        idp.set_mode("ok")
        assert await keyset.refetch()
        assert not keyset.degraded
        assert api.metric("jifen_jwks_keys_age_seconds") < age
    finally:
        idp.set_mode("ok")
        await api.client.aclose()
        await api.auth.close()


async def test_a_service_started_while_the_provider_is_down_catches_up(
    idp: FakeIdp, keys: dict[str, Key]
) -> None:
    idp.set_mode("error")
    api = await open_api(idp.url, min_refetch_s=0.0)
    try:
        assert api.metric("jifen_jwks_keys_age_seconds") == float("inf")
        token = keys["ES256"].token("eve")
        assert await api.refused(token) == "token_unknown_key"
        idp.set_mode("ok")
        assert (await api.call(token)).status_code == 200  # fetched on the unknown kid
    finally:
        idp.set_mode("ok")
        await api.client.aclose()
        await api.auth.close()


async def test_the_user_id_claim_is_a_setting(idp: FakeIdp, keys: dict[str, Key]) -> None:
    api = await open_api(idp.url, jwt_user_claim="uid")
    try:
        answer = await api.call(keys["RS256"].token("subject-not-used", uid=4711))
        assert answer.json()["user_id"] == "4711"
        assert await api.refused(keys["RS256"].token("only-sub")) == "token_missing_claim"
    finally:
        await api.client.aclose()
        await api.auth.close()


async def test_a_remembered_token_still_expires(idp: FakeIdp, keys: dict[str, Key]) -> None:
    api = await open_api(idp.url, jwt_leeway_s=0)
    try:
        token = keys["EdDSA"].token("fay", ttl=2)
        assert (await api.call(token)).status_code == 200
        expires = jwt.decode(token, options={"verify_signature": False})["exp"]
        await asyncio.sleep(max(0.0, expires - time.time()) + 0.1)
        assert await api.refused(token) == "token_expired"
    finally:
        await api.client.aclose()
        await api.auth.close()


async def test_without_a_jwks_the_shared_secret_signs_and_iss_aud_are_checked_when_set() -> None:
    plain = Api(Authenticator(JifenSettings(service_name=fresh_service())))
    checked = Api(
        Authenticator(
            JifenSettings(service_name=fresh_service(), jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
        )
    )
    now = int(time.time())

    def dev(**claims: Any) -> str:
        return jwt.encode({"sub": "gus", "exp": now + 60, **claims}, DEV_JWT_SECRET, "HS256")

    assert (await plain.call(dev())).status_code == 200
    assert (await plain.call(dev(aud="whatever"))).status_code == 200  # unset: not checked
    assert (await checked.call(dev(iss=ISSUER, aud=AUDIENCE))).status_code == 200
    assert await checked.refused(dev(aud=AUDIENCE)) == "token_invalid_issuer"
    assert await checked.refused(dev(iss=ISSUER, aud="other")) == "token_invalid_audience"
    assert await plain.refused(dev(exp=now - 120)) == "token_expired"
    rsa = Key.new("k")
    assert await plain.refused(jwt.encode(_claims(), rsa.private, "RS256")) == (
        "token_invalid_algorithm"
    )
    for api in (plain, checked):
        await api.client.aclose()


def test_the_keys_decide_the_algorithm_and_symmetric_ones_are_skipped(keys: dict[str, Key]):
    rsa = keys["RS256"].jwk()
    document = {
        "keys": [
            rsa,
            keys["ES256"].jwk(),
            keys["EdDSA"].jwk(),
            {"kty": "oct", "kid": "shared", "k": "c2VjcmV0", "alg": "HS256"},
            {**rsa, "kid": "rsa-as-hs", "alg": "HS256"},
            {**rsa, "kid": "rsa-none", "alg": "none"},
            {**rsa, "kid": "rsa-for-encryption", "use": "enc"},
            {"kty": "EC", "kid": "k1-curve", "crv": "secp256k1", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            "not a key",
        ]
    }
    parsed = parse_jwks(document)
    assert {kid: key.algorithm for kid, key in parsed.items()} == {
        "kid-RS256": "RS256",
        "kid-ES256": "ES256",
        "kid-EdDSA": "EdDSA",
    }
    for junk in ({}, {"keys": "x"}, {"keys": [document["keys"][3]]}, ["keys"]):
        with pytest.raises(ValueError):
            parse_jwks(junk)


def test_prod_needs_no_jwt_secret_once_a_jwks_is_set() -> None:
    real = {
        "env": "prod",
        "admin_token": "a" * 40,
        "ingest_keys": {"k" * 32: ["app"]},
        "service_credentials": {"s" * 40: {"service": "exchange", "scopes": ["ledger:debit"]}},
    }
    with pytest.raises(ValidationError, match="JIFEN_JWT_SECRET"):
        LedgerSettings.model_validate(real)
    with_jwks = LedgerSettings.model_validate({**real, "jwt_jwks_url": "https://idp/jwks"})
    assert with_jwks.jwt_jwks_url == "https://idp/jwks"
    with pytest.raises(ValidationError, match="JIFEN_JWT_JWKS_URL"):
        LedgerSettings.model_validate({**real, "jwt_jwks_url": "file:///etc/keys.json"})
