"""Where a push goes: Apple's APNs (HTTP/2, token auth: an ES256 JWT signed with the team's
.p8 key), Firebase Cloud Messaging's HTTP v1 API (an OAuth2 access token obtained with the
service account's RS256-signed assertion), a generic webhook, and `log` (appends a JSON line
to a file: the `make run` default, no credentials needed).

Each provider turns one request into an `Outcome`: `sent` (with the provider's message id),
`retry` (429, 5xx, a network failure, an expired provider token: the dispatcher tries again
later, honouring Retry-After), `invalid_token` (APNs 410 / BadDeviceToken / Unregistered, FCM
UNREGISTERED: the device is deactivated) or `failed` (a request the provider will never
accept). Device tokens are secrets of a kind: they go to the provider and nowhere else (logs
and attempt records carry a digest).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import aiohttp
import jwt

from services.notifier.h2client import H2Client, H2Error

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    status_code: int | None = None
    detail: str | None = None
    message_id: str | None = None
    retry_after_s: float | None = None


class OAuthError(Exception):
    """FCM's token endpoint did not give an access token (retried like a network failure)."""


class Provider(Protocol):
    name: str

    async def send(self, push: Push) -> Outcome: ...

    async def close(self) -> None: ...


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _transport_failure(exc: BaseException) -> Outcome:
    return Outcome("retry", detail=f"{type(exc).__name__}: {exc}"[:300])


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class _Session:
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


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, Any, bytes]:
    async with session.post(url, data=body, headers=headers) as response:
        return response.status, response.headers, await response.read()


class LogProvider:
    """Writes each message as a JSON line (the device as a digest) and calls it sent."""

    name = "log"

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    async def send(self, push: Push) -> Outcome:
        line = {
            "notification_id": push.notification_id,
            "user_id": push.user_id,
            "platform": push.platform,
            "device": device_digest(push.token),
            "category": push.category,
            "title": push.title,
            "body": push.body,
            "at": time.time(),
        }
        self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._file.flush()
        return Outcome("sent", message_id=f"log-{push.notification_id}")

    async def close(self) -> None:
        self._file.close()


class WebhookProvider:
    """POSTs the message as JSON; signed with HMAC-SHA256 (`X-Jifen-Signature`) when a
    secret is set. 2xx is sent, 410 an invalid token, 429/5xx a retry."""

    name = "webhook"

    def __init__(self, url: str, secret: str, timeout_s: float, concurrency: int) -> None:
        self.url = url
        self.secret = secret.encode()
        self._http = _Session(timeout_s, concurrency)

    async def send(self, push: Push) -> Outcome:
        body = json.dumps(
            {
                "notification_id": push.notification_id,
                "user_id": push.user_id,
                "platform": push.platform,
                "token": push.token,
                "category": push.category,
                "title": push.title,
                "body": push.body,
                "data": push.data,
            },
            ensure_ascii=False,
        ).encode()
        headers = {"content-type": "application/json", "x-jifen-notification": push.notification_id}
        if self.secret:
            headers["x-jifen-signature"] = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        try:
            code, answer_headers, raw = await _post(self._http.get(), self.url, body, headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _transport_failure(exc)
        text = raw[:300].decode("utf-8", "replace")
        if 200 <= code < 300:
            message_id = str(_json(raw).get("id") or "") or None
            return Outcome("sent", code, message_id=message_id or push.notification_id)
        if code == 410:
            return Outcome("invalid_token", code, "gone")
        if code == 429 or code >= 500:
            return Outcome("retry", code, text, retry_after_s=_retry_after(answer_headers))
        return Outcome("failed", code, text)

    async def close(self) -> None:
        await self._http.close()


def _ssl_context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


class ApnsProvider:
    """APNs over HTTP/2 with a provider token: an ES256 JWT (`iss` the team, `kid` the key)
    reused for 40 minutes (Apple refuses one older than an hour, or renewed more often than
    every 20). The notification id is the `apns-id` and the collapse id, so a message sent
    twice (a replica died between the provider's answer and the record) shows once."""

    name = "apns"
    token_ttl_s = 40 * 60
    invalid_reasons = frozenset({"BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic"})
    token_reasons = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})

    def __init__(
        self,
        url: str,
        topic: str,
        team_id: str,
        key_id: str,
        key_path: str,
        ca_file: str,
        timeout_s: float,
    ) -> None:
        self.url = url.rstrip("/")
        self.topic = topic
        self.team_id = team_id
        self.key_id = key_id
        self._key = Path(key_path).read_bytes() if key_path else b""
        self._token: tuple[str, float] | None = None
        parts = urlsplit(self.url)
        self._http = H2Client(
            parts.hostname or "api.push.apple.com",
            parts.port or 443,
            _ssl_context(ca_file),
            timeout_s,
        )

    def provider_token(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if self._token is None or now - self._token[1] >= self.token_ttl_s:
            if not self._key:
                raise RuntimeError("JIFEN_APNS_KEY_PATH is not set: APNs needs a .p8 key")
            signed = jwt.encode(
                {"iss": self.team_id, "iat": int(now)},
                self._key,
                algorithm="ES256",
                headers={"kid": self.key_id},
            )
            self._token = (signed, now)
        return self._token[0]

    async def send(self, push: Push) -> Outcome:
        payload = {
            "aps": {"alert": {"title": push.title, "body": push.body}, "sound": "default"},
            "notification_id": push.notification_id,
            **{k: v for k, v in push.data.items() if k != "aps"},
        }
        headers = {
            "authorization": f"bearer {self.provider_token()}",
            "apns-topic": self.topic,
            "apns-push-type": "alert",
            "apns-priority": "5" if push.category == "marketing" else "10",
            "apns-id": push.notification_id,
            "apns-collapse-id": push.notification_id,
            # a day to deliver, to the hour: the same value for an hour is one indexed
            # header in HPACK instead of a new literal on every request
            "apns-expiration": str((int(time.time()) // 3600 + 25) * 3600),
        }
        try:
            code, answer_headers, raw = await self._http.post(
                f"/3/device/{push.token}",
                headers,
                json.dumps(payload, ensure_ascii=False).encode(),
            )
        except H2Error as exc:
            return _transport_failure(exc)
        if code == 200:
            return Outcome(
                "sent",
                code,
                message_id=answer_headers.get("apns-unique-id")
                or answer_headers.get("apns-id")
                or push.notification_id,
            )
        reason = str(_json(raw).get("reason", ""))
        if code == 410 or reason in self.invalid_reasons:
            return Outcome("invalid_token", code, reason or "Unregistered")
        if code == 403 and reason in self.token_reasons:
            self._token = None  # sign a new one for the next try
            return Outcome("retry", code, reason)
        if code == 429 or code >= 500:
            return Outcome("retry", code, reason, retry_after_s=_retry_after(answer_headers))
        return Outcome("failed", code, reason or raw[:300].decode("utf-8", "replace"))

    async def close(self) -> None:
        await self._http.close()


class FcmProvider:
    """FCM HTTP v1: `POST /v1/projects/{project}/messages:send` with an OAuth2 access token.
    The token comes from the service account's token_uri in exchange for an RS256 assertion
    (the JWT-bearer grant) and is reused until five minutes before it expires."""

    name = "fcm"
    scope = "https://www.googleapis.com/auth/firebase.messaging"

    def __init__(
        self,
        url: str,
        project_id: str,
        service_account_path: str,
        timeout_s: float,
        concurrency: int,
    ) -> None:
        self.url = url.rstrip("/")
        self.project_id = project_id
        self._account: dict[str, Any] = (
            json.loads(Path(service_account_path).read_text()) if service_account_path else {}
        )
        self._access: tuple[str, float] | None = None
        self._lock = asyncio.Lock()
        self._http = _Session(timeout_s, concurrency)

    async def access_token(self) -> str:
        now = time.time()
        if self._access is not None and now < self._access[1]:
            return self._access[0]
        async with self._lock:  # one exchange for every request waiting on it
            if self._access is not None and time.time() < self._access[1]:
                return self._access[0]
            if not self._account:
                raise RuntimeError("JIFEN_FCM_SERVICE_ACCOUNT_PATH is not set")
            token_uri = self._account["token_uri"]
            assertion = jwt.encode(
                {
                    "iss": self._account["client_email"],
                    "scope": self.scope,
                    "aud": token_uri,
                    "iat": int(now),
                    "exp": int(now) + 3600,
                },
                self._account["private_key"],
                algorithm="RS256",
                headers={"kid": self._account.get("private_key_id", "")},
            )
            form = {
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion,
            }
            async with self._http.get().post(token_uri, data=form) as response:
                if response.status != 200:
                    raise OAuthError(f"{token_uri} answered {response.status}")
                answer = _json(await response.read())
            if "access_token" not in answer:
                raise OAuthError(f"{token_uri} gave no access_token")
            expires_in = float(answer.get("expires_in", 3600))
            self._access = (answer["access_token"], time.time() + max(60.0, expires_in - 300))
            return self._access[0]

    async def send(self, push: Push) -> Outcome:
        message = {
            "message": {
                "token": push.token,
                "notification": {"title": push.title, "body": push.body},
                "data": {"notification_id": push.notification_id}
                | {k: str(v) for k, v in push.data.items()},
                "android": {"collapse_key": push.notification_id[:64]},
            }
        }
        try:
            bearer = await self.access_token()
            code, answer_headers, raw = await _post(
                self._http.get(),
                f"{self.url}/v1/projects/{self.project_id}/messages:send",
                json.dumps(message, ensure_ascii=False).encode(),
                {"authorization": f"Bearer {bearer}", "content-type": "application/json"},
            )
        except (aiohttp.ClientError, TimeoutError, OAuthError) as exc:
            return _transport_failure(exc)
        answer = _json(raw)
        if code == 200:
            return Outcome("sent", code, message_id=str(answer.get("name") or push.notification_id))
        status, error_code = "", ""
        error = answer.get("error")
        if isinstance(error, dict):
            status = str(error.get("status", ""))
            for detail in error.get("details", []) or []:
                if isinstance(detail, dict):
                    error_code = str(detail.get("errorCode", "")) or error_code
        reason = error_code or status or str(code)
        if error_code in ("UNREGISTERED", "SENDER_ID_MISMATCH"):
            return Outcome("invalid_token", code, reason)
        if code == 401:
            self._access = None
            return Outcome("retry", code, reason)
        if code == 429 or code >= 500:
            return Outcome("retry", code, reason, retry_after_s=_retry_after(answer_headers))
        return Outcome("failed", code, reason)

    async def close(self) -> None:
        await self._http.close()


class Providers:
    """The provider for each platform, built from the settings (one instance per kind)."""

    def __init__(self, by_platform: dict[str, Provider]) -> None:
        self.by_platform = by_platform

    def for_platform(self, platform: str) -> Provider:
        return self.by_platform[platform]

    async def close(self) -> None:
        seen: set[int] = set()
        for provider in self.by_platform.values():
            if id(provider) not in seen:
                seen.add(id(provider))
                try:
                    await provider.close()
                except Exception:
                    log.exception("closing %s", provider.name)


def build_providers(settings: Any) -> Providers:
    made: dict[str, Provider] = {}

    def make(kind: str) -> Provider:
        if kind not in made:
            if kind == "log":
                made[kind] = LogProvider(settings.log_path)
            elif kind == "webhook":
                made[kind] = WebhookProvider(
                    settings.webhook_url,
                    settings.webhook_secret.get_secret_value(),
                    settings.provider_timeout_s,
                    settings.provider_concurrency,
                )
            elif kind == "apns":
                made[kind] = ApnsProvider(
                    settings.apns_url,
                    settings.apns_topic,
                    settings.apns_team_id,
                    settings.apns_key_id,
                    settings.apns_key_path,
                    settings.apns_ca_file,
                    settings.provider_timeout_s,
                )
            elif kind == "fcm":
                made[kind] = FcmProvider(
                    settings.fcm_url,
                    settings.fcm_project_id,
                    settings.fcm_service_account_path,
                    settings.provider_timeout_s,
                    settings.provider_concurrency,
                )
            else:  # the settings' Literal types make this unreachable
                raise ValueError(f"unknown provider {kind}")
        return made[kind]

    return Providers(
        {
            "ios": make(settings.ios_provider),
            "android": make(settings.android_provider),
            "web": make(settings.web_provider),
        }
    )


__all__ = [
    "ApnsProvider",
    "FcmProvider",
    "LogProvider",
    "Outcome",
    "Provider",
    "Providers",
    "Push",
    "WebhookProvider",
    "build_providers",
    "device_digest",
]
