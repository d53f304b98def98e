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
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from urllib.parse import urlsplit

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from console.models import operator_passwords, sessions
from console.passwords import CONCURRENT_HASHES, PasswordHash
from console.settings import ROLES, Operator, Settings
from console.throttle import SignInThrottle
from shared.db import Database

log = logging.getLogger("jifen.console")
T = TypeVar("T")

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


class Gate:
    """Signs operators in and out and checks every request's session."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.throttle = SignInThrottle(
            settings.console_signin_failures,
            settings.console_signin_cooldown_s,
            settings.redis_url,
            settings.redis_timeout_s,
        )
        self.operators: dict[str, Operator] = settings.operators()
        self.hashes = {n: PasswordHash.parse(o.password_hash) for n, o in self.operators.items()}
        self.signer = URLSafeTimedSerializer(
            settings.console_secret.get_secret_value(), salt="jifen-console-session"
        )
        # compared against when the name is unknown (an argon2id hash with today's
        # parameters), so a wrong name costs as long as a wrong password
        self._decoy = PasswordHash.create(secrets.token_hex(16))
        # argon2id takes 19 MiB per hash: a burst of sign-ins waits here rather than
        # taking the pod's memory (console/passwords.py)
        self._hashing = asyncio.Semaphore(CONCURRENT_HASHES)

    async def _hash_work(self, work: Callable[[], T]) -> T:
        """argon2id takes tens of milliseconds of CPU: off the event loop, so that a sign-in
        does not stall every other operator's page."""
        async with self._hashing:
            return await asyncio.to_thread(work)

    async def check_password(self, name: str, password: str) -> bool:
        """The password against the operator's hash: the upgraded one kept in the database
        while the configured hash is unchanged, else the configured one. A right password
        on a hash that needs it (scrypt, or argon2id with other parameters) is rehashed and
        kept; a wrong one writes nothing."""
        configured = self.hashes.get(name)
        # read for unknown names too: every wrong name costs what a wrong password does
        async with self.db.read_only() as session:
            row = (
                await session.execute(
                    select(operator_passwords).where(operator_passwords.c.name == name)
                )
            ).first()
        if configured is None:
            await self._hash_work(lambda: self._decoy.verify(password))
            return False
        configured_digest = _hash(configured.encode())
        stored = configured
        if row is not None and row.configured_hash_digest == configured_digest:
            try:
                stored = PasswordHash.parse(row.password_hash)
            except ValueError:  # not one of ours: the configured hash still counts
                log.warning("operator %s: unreadable upgraded hash ignored", name)
        if not await self._hash_work(lambda: stored.verify(password)):
            return False
        if stored.needs_rehash:
            upgraded = await self._hash_work(lambda: PasswordHash.create(password))
            await self._keep(name, configured_digest, upgraded)
            log.info(
                "operator %s: password hash upgraded",
                name,
                extra={"from": stored.scheme, "to": upgraded.scheme},
            )
        return True

    async def _keep(self, name: str, configured_digest: str, upgraded: PasswordHash) -> None:
        values = {
            "configured_hash_digest": configured_digest,
            "password_hash": upgraded.encode(),
            "updated_at": datetime.now(UTC),
        }
        async with self.db.transaction() as session:
            await session.execute(
                pg_insert(operator_passwords)
                .values(name=name, **values)
                .on_conflict_do_update(index_elements=[operator_passwords.c.name], set_=values)
            )

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
