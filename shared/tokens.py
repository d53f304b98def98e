"""User tokens: JWTs signed by the company's identity provider (its JWKS) or, in development,
with the shared secret `JIFEN_JWT_SECRET` (HS256).

Once `JIFEN_JWT_JWKS_URL` is set the secret is out of the picture: a token is checked with the
provider's key its `kid` names, with that key's one algorithm, so neither `alg: none` nor an
HS256 token "signed" with a public key (HS/RS confusion) can pass. `JIFEN_JWT_ISSUER` and
`JIFEN_JWT_AUDIENCE` are checked when set. A refused token is a 401 whose code says why.

A verified token is remembered until it expires (a bounded table, emptied whenever the
provider's keys change), so a client's repeated calls pay a dictionary lookup instead of a
signature check (RS256 about 50 µs, ES256 and EdDSA about 100 µs on the bench box).
"""

from __future__ import annotations

import time
from typing import Any

import jwt

from shared.errors import Unauthorized
from shared.jwks import ASYMMETRIC, JwksKeys
from shared.metrics import JWT_REFUSED
from shared.settings import JifenSettings

MAX_REMEMBERED = 4096  # verified tokens kept (~1-2 KB each)

# What the caller can do about each: refresh the token, fix the client's configuration, ...
_REFUSALS: list[tuple[type[jwt.PyJWTError], str, str]] = [
    (jwt.ExpiredSignatureError, "token_expired", "the token has expired"),
    (jwt.ImmatureSignatureError, "token_not_yet_valid", "the token is not valid yet (nbf/iat)"),
    (jwt.InvalidAudienceError, "token_invalid_audience", "the token is not meant for this API"),
    (jwt.InvalidIssuerError, "token_invalid_issuer", "the token comes from another issuer"),
    (jwt.InvalidAlgorithmError, "token_invalid_algorithm", "the token's algorithm is refused"),
    (jwt.InvalidSignatureError, "token_invalid_signature", "the token's signature is invalid"),
    (jwt.DecodeError, "token_malformed", "the token is not a well-formed JWT"),
]
_MISSING_CLAIMS = {"iss": "token_invalid_issuer", "aud": "token_invalid_audience"}


class KeyNotCached(Exception):
    """The token names a key not cached yet: fetch the keys (`JwksKeys.refetch`), then ask
    again with `may_fetch=False`."""


def refused(code: str, message: str, service: str) -> Unauthorized:
    JWT_REFUSED.labels(service, code).inc()
    return Unauthorized(message, code)


class UserTokens:
    def __init__(self, settings: JifenSettings) -> None:
        self.service = settings.service_name
        self._secret = settings.jwt_secret.get_secret_value()
        self._issuer = settings.jwt_issuer or None
        self._audience = settings.jwt_audience or None
        self._claim = settings.jwt_user_claim
        self._leeway = settings.jwt_leeway_s
        # PyJWT refuses a token carrying `aud` when it is given no audience: unset means unchecked
        self._options: dict[str, Any] = {
            "require": ["exp", self._claim],
            "verify_aud": self._audience is not None,
        }
        self._remembered: dict[str, tuple[str, float]] = {}  # token -> (user id, valid until)
        self.keys: JwksKeys | None = None
        if settings.jwt_jwks_url:
            self.keys = JwksKeys(
                settings.jwt_jwks_url,
                self.service,
                refresh_s=settings.jwt_jwks_refresh_s,
                min_refetch_s=settings.jwt_jwks_min_refetch_s,
                on_change=self._remembered.clear,  # a key withdrawn takes its tokens along
            )

    def user_of(self, token: str, *, may_fetch: bool = True) -> str:
        """The user id the token proves, or `Unauthorized` with a reason code. `KeyNotCached`
        when `may_fetch` and its key could be fetched."""
        remembered = self._remembered.get(token)
        if remembered is not None and remembered[1] > time.time():
            return remembered[0]
        claims = self._verify(token, may_fetch)
        user = claims.get(self._claim)
        if isinstance(user, int) and not isinstance(user, bool):
            user = str(user)  # some providers number their users
        if not isinstance(user, str) or not user:
            raise refused(
                "token_missing_claim", f"the token's {self._claim!r} names no user", self.service
            )
        if len(self._remembered) >= MAX_REMEMBERED:
            del self._remembered[next(iter(self._remembered))]  # the oldest
        self._remembered[token] = (user, float(claims["exp"]) + self._leeway)
        return user

    def _verify(self, token: str, may_fetch: bool) -> dict[str, Any]:
        key: Any = self._secret
        algorithms = ["HS256"]
        if self.keys is not None:
            key, algorithms = self._provider_key(token, may_fetch)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options=self._options,  # type: ignore[arg-type]
            )
        except jwt.MissingRequiredClaimError as exc:
            code = _MISSING_CLAIMS.get(exc.claim, "token_missing_claim")
            raise refused(code, f"the token has no {exc.claim!r} claim", self.service) from exc
        except jwt.PyJWTError as exc:
            for kind, code, message in _REFUSALS:
                if isinstance(exc, kind):
                    raise refused(code, message, self.service) from exc
            raise refused("token_invalid", f"invalid token ({exc})", self.service) from exc
        return claims

    def _provider_key(self, token: str, may_fetch: bool) -> tuple[Any, list[str]]:
        assert self.keys is not None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise refused(
                "token_malformed", "the token is not a well-formed JWT", self.service
            ) from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ASYMMETRIC:
            raise refused(
                "token_invalid_algorithm",
                f"tokens signed with {str(alg)[:20]!r} are refused: user tokens come from the "
                "identity provider, signed with a key of its JWKS",
                self.service,
            )
        kid = header.get("kid")
        signing = self.keys.get(kid)
        if signing is None:
            if may_fetch and self.keys.may_refetch():
                raise KeyNotCached(kid)
            raise refused(
                "token_unknown_key",
                "the token's signing key (kid) is not among the identity provider's keys",
                self.service,
            )
        return signing.key, [signing.algorithm]
