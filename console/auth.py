"""Who is signed in, and what they may do.

A session is a row in the console's database; the cookie carries its random token, signed
(itsdangerous, with the time it was signed), HttpOnly and SameSite=Strict. A cookie whose
signature does not verify (forged), that is older than the session lifetime, or whose row is
ended, expired or idle too long (stale) is refused and the operator signs in again. The role
comes from the operator's configuration on every request, not from the cookie, so a changed
role or a removed operator takes effect at once.

Writes (every POST) need the session's CSRF token (a form field, or the X-CSRF-Token header
htmx sends) and an Origin (or Referer) that is the console's own.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, insert, select, update

from console.models import sessions
from console.passwords import PasswordHash
from console.settings import ROLES, Operator, Settings
from shared.db import Database
from shared.ratelimit import Buckets, Limit

COOKIE = "jifen_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
# a session's last_seen_at is written at most this often (not on every request)
_TOUCH_EVERY = timedelta(seconds=60)


class NotSignedIn(Exception):
    """No valid session: pages send the browser to the sign-in page."""


class Refused(Exception):
    """A signed-in operator asked for something their role or the request does not allow."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class SignedIn:
    name: str
    role: str
    csrf_token: str
    token_hash: str

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SignInThrottle:
    """Guessing passwords is slowed per operator name and per client address: each takes
    `failures` wrong passwords, then one more per `cooldown_s` (a token bucket that only
    failures drain). A right password empties the name's record. Kept in the process, like
    the services' rate limits: N console replicas admit N times as many guesses."""

    def __init__(self, failures: int, cooldown_s: float) -> None:
        self.enabled = failures > 0
        rate = 1.0 / cooldown_s
        self.names = Buckets(Limit(rate, max(failures, 1)))
        self.addresses = Buckets(Limit(rate, max(failures, 1) * 4))

    def wait(self, name: str, address: str) -> float:
        """Seconds until this name may be tried from this address (0.0: now)."""
        if not self.enabled:
            return 0.0
        return max(self.names.peek(name), self.addresses.peek(address))

    def failed(self, name: str, address: str) -> None:
        if self.enabled:
            self.names.take(name)
            self.addresses.take(address)

    def succeeded(self, name: str) -> None:
        self.names.forget(name)


class Gate:
    """Signs operators in and out and checks every request's session."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.throttle = SignInThrottle(
            settings.console_signin_failures, settings.console_signin_cooldown_s
        )
        self.operators: dict[str, Operator] = settings.operators()
        self.hashes = {n: PasswordHash.parse(o.password_hash) for n, o in self.operators.items()}
        self.signer = URLSafeTimedSerializer(
            settings.console_secret.get_secret_value(), salt="jifen-console-session"
        )
        # compared against when the name is unknown, so a wrong name costs as long as a
        # wrong password
        self._decoy = PasswordHash.create(secrets.token_hex(16))

    async def check_password(self, name: str, password: str) -> bool:
        """scrypt takes tens of milliseconds of CPU: off the event loop, so that a sign-in
        does not stall every other operator's page."""
        stored = self.hashes.get(name)
        ok = await asyncio.to_thread((stored or self._decoy).verify, password)
        return ok and stored is not None

    async def sign_in(self, name: str) -> str:
        """Start a session; returns the cookie value."""
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        async with self.db.transaction() as session:
            # sessions ended a day ago are of no use to anyone (the audit log keeps the rest)
            await session.execute(
                delete(sessions).where(sessions.c.expires_at < now - timedelta(days=1))
            )
            await session.execute(
                insert(sessions).values(
                    token_hash=_hash(token),
                    operator=name,
                    csrf_token=secrets.token_urlsafe(32),
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + timedelta(seconds=self.settings.console_session_ttl_s),
                )
            )
        return self.signer.dumps(token)

    async def sign_out(self, who: SignedIn) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                update(sessions)
                .where(sessions.c.token_hash == who.token_hash)
                .values(ended_at=datetime.now(UTC))
            )

    def _token(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            token = self.signer.loads(cookie, max_age=self.settings.console_session_ttl_s)
        except BadSignature:  # forged, tampered or older than a session lives
            return None
        return token if isinstance(token, str) else None

    async def who(self, request: Request) -> SignedIn:
        token = self._token(request.cookies.get(COOKIE))
        if token is None:
            raise NotSignedIn
        token_hash = _hash(token)
        now = datetime.now(UTC)
        async with self.db.read_only() as session:
            row = (
                await session.execute(select(sessions).where(sessions.c.token_hash == token_hash))
            ).first()
        idle = timedelta(seconds=self.settings.console_idle_timeout_s)
        if (
            row is None
            or row.ended_at is not None
            or row.expires_at <= now
            or row.last_seen_at + idle <= now
        ):
            raise NotSignedIn
        operator = self.operators.get(row.operator)
        if operator is None:  # removed from the configuration since
            raise NotSignedIn
        if now - row.last_seen_at > _TOUCH_EVERY:
            async with self.db.transaction() as session:
                await session.execute(
                    update(sessions)
                    .where(sessions.c.token_hash == token_hash)
                    .values(last_seen_at=now)
                )
        return SignedIn(row.operator, operator.role, row.csrf_token, token_hash)

    def same_origin(self, request: Request) -> bool:
        """The write comes from a page of this console (Origin, else Referer)."""
        source = request.headers.get("origin") or request.headers.get("referer")
        if not source or source == "null":
            return False
        parts = urlsplit(source)
        origin = f"{parts.scheme}://{parts.netloc}"
        own = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
        return origin == own or origin in self.settings.console_allowed_origins

    async def check_write(self, request: Request, who: SignedIn, role: str) -> None:
        """Refuse a write (403) unless the role allows it, the CSRF token matches and the
        request comes from the console's own pages."""
        if not self.same_origin(request):
            raise Refused("bad_origin", "this request did not come from the console's pages")
        sent = request.headers.get(CSRF_HEADER)
        if sent is None:
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
        if not sent or not hmac.compare_digest(sent, who.csrf_token):
            raise Refused("csrf_failed", "the form's security token is missing or stale")
        if not who.can(role):
            raise Refused(
                "role_required", f"this needs the {role} role (you are {who.role})", status=403
            )
