"""What every provider shares: the push, its outcome, the `Provider` protocol, the device
digest, and the HTTP/1.1 helpers (an aiohttp session, a POST, Retry-After, a JSON answer)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import aiohttp

OutcomeKind = Literal["sent", "retry", "invalid_token", "failed"]


def device_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Push:
    notification_id: str
    user_id: str
    platform: str
    token: str
    title: str
    body: str
    category: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def collapse_id(self) -> str:
        """What makes a resend replace the first copy on the device rather than show twice
        (APNs `apns-collapse-id`, FCM's collapse key and tag, the webhook's idempotency key):
        the notification's id, the same on every send of it (a retry, a takeover after a
        crash). At most 64 bytes (APNs' limit): a UUID."""
        return self.notification_id

    @property
    def topic(self) -> str:
        """The Web Push `Topic` (at most 32 URL-safe base64 characters): the id's hex."""
        return self.notification_id.replace("-", "")[:32]


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    status_code: int | None = None
    detail: str | None = None
    message_id: str | None = None
    retry_after_s: float | None = None


class Provider(Protocol):
    name: str

    async def send(self, push: Push) -> Outcome: ...

    async def close(self) -> None: ...


def retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def transport_failure(exc: BaseException) -> Outcome:
    return Outcome("retry", detail=f"{type(exc).__name__}: {exc}"[:300])


def json_body(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class HttpSession:
    """One aiohttp session (keep-alive pool), made on first use inside the running loop.
    aiohttp rather than httpx for HTTP/1.1: against the same local server httpx managed
    about 150-230 requests/s with 64 in flight where aiohttp did 2,200 (docs/BENCHMARKS.md)."""

    def __init__(self, timeout_s: float, concurrency: int) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._limit = concurrency
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(
                    limit=self._limit, limit_per_host=self._limit, keepalive_timeout=30
                ),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def http_post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, Any, bytes]:
    async with session.post(url, data=body, headers=headers) as response:
        return response.status, response.headers, await response.read()
