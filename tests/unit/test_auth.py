"""Who a request is: the admin token, a service credential, an ingest key or a user's JWT —
and what is refused as no one (401)."""

from __future__ import annotations

import time

import jwt
import pytest

from shared.auth import Authenticator, issue_user_token
from shared.errors import Unauthorized
from shared.settings import DEV_ADMIN_TOKEN, DEV_INGEST_KEY, DEV_JWT_SECRET, JifenSettings

AUTH = Authenticator(JifenSettings(service_name="test"))


def bearer(claims: dict[str, object], secret: str = DEV_JWT_SECRET) -> str:
    return "Bearer " + jwt.encode(claims, secret, "HS256")


def test_a_user_token_names_its_user_and_the_admin_token_is_the_admin() -> None:
    user = AUTH.authenticate("Bearer " + issue_user_token(DEV_JWT_SECRET, "u-1"), None)
    assert (user.kind, user.user_id) == ("user", "u-1")
    assert AUTH.authenticate(f"Bearer {DEV_ADMIN_TOKEN}", None).is_admin
    assert AUTH.authenticate(None, DEV_INGEST_KEY).kind == "ingest"


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (bearer({"sub": "u-1"}), "token_missing_claim"),  # never expires: refused
        (bearer({"sub": "u-1", "exp": int(time.time()) - 60}), "token_expired"),
        (
            bearer(
                {"sub": "u-1", "exp": int(time.time()) + 10 * 365 * 86400},
                "another-secret-entirely-not-ours-at-all",
            ),
            "token_invalid_signature",
        ),
        (bearer({"exp": int(time.time()) + 10 * 365 * 86400}), "token_missing_claim"),
        (bearer({"sub": "", "exp": int(time.time()) + 10 * 365 * 86400}), "token_missing_claim"),
        ("Basic dXNlcjpwYXNz", "unauthorized"),
        ("Bearer ", "unauthorized"),
        ("Bearer " + "x" * 20_000, "token_malformed"),
    ],
)
def test_tokens_that_prove_no_one_are_refused(authorization: str, code: str) -> None:
    """(tests/unit/test_jwt_providers.py covers tokens from an identity provider's JWKS)"""
    with pytest.raises(Unauthorized) as refused:
        AUTH.authenticate(authorization, None)
    assert refused.value.code == code and refused.value.message


def test_an_unknown_api_key_is_refused_even_with_a_good_bearer() -> None:
    with pytest.raises(Unauthorized):
        AUTH.authenticate(f"Bearer {DEV_ADMIN_TOKEN}", "not-a-key")
