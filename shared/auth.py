"""Who is calling: the admin/operations token, a service credential, a per-source ingest key,
or a user's JWT (verified by shared/tokens.py)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

import jwt
from fastapi import Request

from shared.errors import Forbidden, Unauthorized
from shared.settings import JifenSettings
from shared.tokens import KeyNotCached, UserTokens


@dataclass(frozen=True)
class Principal:
    kind: Literal["admin", "ingest", "user", "service"]
    user_id: str | None = None
    sources: frozenset[str] = frozenset()
    service: str | None = None  # a calling service (kind "service") and what it may do
    scopes: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this endpoint needs the admin token")

    def require_scope(self, scope: str, *alternatives: str) -> None:
        """The admin, or a service whose credential carries `scope` or one of `alternatives`
        (an endpoint that two callers need for different reasons names each one's scope, so
        neither scope grows to cover the other's calls)."""
        wanted = (scope, *alternatives)
        if self.is_admin or (self.kind == "service" and not self.scopes.isdisjoint(wanted)):
            return
        names = " or ".join(wanted)
        if self.kind == "service":
            raise Forbidden(f"the {self.service} credential does not carry {names}")
        raise Forbidden(f"this endpoint needs the admin token or a service credential ({names})")

    def require_user_or_scope(self, user_id: str, scope: str, *alternatives: str) -> None:
        """The user themselves, the admin, or a service whose credential carries `scope` or
        one of `alternatives`."""
        if self.kind == "service":
            self.require_scope(scope, *alternatives)
        else:
            self.require_user(user_id)

    def require_user(self, user_id: str) -> None:
        """Admins see everyone; a user sees only their own data."""
        if self.is_admin:
            return
        if self.kind != "user" or self.user_id != user_id:
            raise Forbidden("a user may only access their own data")

    def require_source(self, source: str) -> None:
        if self.is_admin:
            return
        if self.kind != "ingest" or ("*" not in self.sources and source not in self.sources):
            raise Forbidden(f"this key may not publish events for source {source!r}")


class Authenticator:
    def __init__(self, settings: JifenSettings) -> None:
        self._admin = settings.admin_token.get_secret_value().encode()
        self.users = UserTokens(settings)
        self._ingest = {key.encode(): frozenset(srcs) for key, srcs in settings.ingest_keys.items()}
        self._services = [
            (token.encode(), Principal("service", service=c.service, scopes=frozenset(c.scopes)))
            for token, c in settings.service_credentials.items()
        ]

    async def start(self) -> None:
        """Fetch the identity provider's keys and keep them fresh (when JWKS is configured)."""
        if self.users.keys is not None:
            await self.users.keys.start()

    async def close(self) -> None:
        if self.users.keys is not None:
            await self.users.keys.close()

    def authenticate(
        self, authorization: str | None, api_key: str | None, *, may_fetch: bool = True
    ) -> Principal:
        """The caller, or `Unauthorized`. Synchronous, no I/O; `KeyNotCached` (only when
        `may_fetch`) asks the caller to await `users.keys.refetch()` and ask again with
        `may_fetch=False` (see `principal`)."""
        if api_key:
            for key, sources in self._ingest.items():
                if hmac.compare_digest(key, api_key.encode()):
                    return Principal("ingest", sources=sources)
            raise Unauthorized("unknown API key")
        if not authorization:
            raise Unauthorized("send 'Authorization: Bearer <token>' or 'X-Api-Key: <key>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        if hmac.compare_digest(self._admin, token.encode()):
            return Principal("admin")
        for service_token, service in self._services:
            if hmac.compare_digest(service_token, token.encode()):
                return service
        # `exp` is required: a token minted without one would be good for as long as its key
        # is, with no way to take it back short of rotating the key for everyone
        return Principal("user", user_id=self.users.user_of(token, may_fetch=may_fetch))


async def principal(request: Request) -> Principal:
    # async: FastAPI would run a plain def in a worker thread, a thread hop per request
    """FastAPI dependency: the authenticated caller (401 when there is none)."""
    auth: Authenticator = request.app.state.authenticator
    authorization = request.headers.get("authorization")
    api_key = request.headers.get("x-api-key")
    try:
        return auth.authenticate(authorization, api_key)
    except KeyNotCached:
        # the one network wait on this path: a key id not seen yet (a rotation), rate-limited
        assert auth.users.keys is not None
        await auth.users.keys.refetch()
        return auth.authenticate(authorization, api_key, may_fetch=False)


async def optional_principal(request: Request) -> Principal | None:
    """FastAPI dependency for public endpoints that show more to authenticated callers."""
    if not request.headers.get("authorization") and not request.headers.get("x-api-key"):
        return None
    return await principal(request)


def issue_user_token(secret: str, user_id: str, ttl_seconds: int = 3600) -> str:
    """Mint a user JWT (used by tests, the demo and tooling; production tokens come from the IdP)."""
    import time

    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl_seconds}, secret, "HS256")
