"""Firebase Cloud Messaging's HTTP v1 API with an OAuth2 access token from google-auth: a
service-account key file when one is given, else application default credentials (GKE
workload identity or a VM's metadata server, or GOOGLE_APPLICATION_CREDENTIALS: a key, a
workload identity federation configuration). New Google Cloud organisations refuse to issue
key files; the other ways need none."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import google.auth
import google.auth.transport.requests
from google.auth.credentials import Credentials
from google.auth.exceptions import DefaultCredentialsError
from google.oauth2 import service_account

from services.notifier.providers.base import (
    HttpSession,
    Outcome,
    Push,
    http_post,
    json_body,
    retry_after,
    transport_failure,
)

log = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
RENEW_AHEAD_S = 300.0  # a token is renewed in the background this long before it expires...
EXPIRY_MARGIN_S = 30.0  # ...and no longer sent this long before (clock skew, time in flight)
UNKNOWN_LIFETIME_S = 3000.0  # credentials that state no expiry: renewed this often (or on 401)
REFRESH_PAUSE_S = 2.0  # after a failed refresh, sends needing a token fail at once this long


class _Request(google.auth.transport.requests.Request):
    """google-auth's requests transport with the provider's timeout rather than its 120 s: a
    hung token endpoint must not hold a dispatch wave past its lease."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        return super().__call__(url, method, body, headers, timeout or self.timeout_s, **kwargs)


class FcmProvider:
    """FCM HTTP v1: `POST /v1/projects/{project}/messages:send` with a bearer token.

    google-auth refreshes the token, over `requests`, blocking: so the refresh runs in a thread
    and never on the event loop, one at a time: every send that needs it awaits the same
    refresh and shares its failure (a token endpoint that is down costs one round of
    google-auth's retries, not one per waiting push, then a pause). A token is renewed in the
    background before it expires, so sends never wait but for the first one; a send reads the
    cached header after one clock comparison."""

    name = "fcm"

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
        self._credentials: Credentials | None = None
        if service_account_path and Path(service_account_path).is_file():
            account = service_account.Credentials.from_service_account_file(
                service_account_path, scopes=[SCOPE]
            )
            self.project_id = project_id or account.project_id or ""
            self._credentials = account
        else:  # loaded on first use: finding them may ask the metadata server (blocking)
            where = f"no key file at {service_account_path}: " if service_account_path else ""
            log.info("FCM: %sapplication default credentials", where)
        self._send_url = self._url_for(self.project_id)
        self._request = _Request(timeout_s)
        self._authorization = ""  # "Bearer <token>"
        self._renew_at = -math.inf  # time.monotonic(): from then on, renew in the background
        self._expires_at = -math.inf  # from then on, the token is not sent
        self._refreshing: asyncio.Task[str] | None = None
        self._failure: Exception | None = None
        self._pause_until = -math.inf
        self._http = HttpSession(timeout_s, concurrency)

    def _url_for(self, project_id: str) -> str:
        return f"{self.url}/v1/projects/{project_id}/messages:send" if project_id else ""

    async def _renewed(self, now: float) -> str:
        """The slow path of `send`: the token is due for renewal, or missing."""
        if self._refreshing is None and now >= self._pause_until:
            self._refreshing = asyncio.create_task(self._refresh())
            self._refreshing.add_done_callback(_retrieved)
        if now < self._expires_at:  # still good while the renewal runs
            return self._authorization
        if self._refreshing is None:  # the last refresh failed a moment ago
            raise self._failure or DefaultCredentialsError("no access token")
        return await asyncio.shield(self._refreshing)

    async def _refresh(self) -> str:
        try:
            token, expiry, project_id = await asyncio.to_thread(self._refresh_blocking)
        except Exception as exc:
            log.warning("FCM: no access token: %s: %s", type(exc).__name__, exc)
            self._failure = exc
            self._pause_until = time.monotonic() + REFRESH_PAUSE_S
            raise
        finally:
            self._refreshing = None
        if not self._send_url:
            self.project_id = project_id
            self._send_url = self._url_for(project_id)
        now = time.monotonic()
        lifetime = UNKNOWN_LIFETIME_S
        if expiry is not None:  # google-auth's is naive UTC
            lifetime = (
                expiry.replace(tzinfo=expiry.tzinfo or UTC) - datetime.now(UTC)
            ).total_seconds()
        self._authorization = f"Bearer {token}"
        self._renew_at = now + lifetime - min(RENEW_AHEAD_S, lifetime / 2)
        self._expires_at = now + lifetime - min(EXPIRY_MARGIN_S, lifetime / 10)
        return self._authorization

    def _refresh_blocking(self) -> tuple[str, datetime | None, str]:
        """In a worker thread, one at a time: find the credentials the first time (ADC may
        ask the metadata server), then have google-auth fetch a token."""
        project_id = self.project_id
        if self._credentials is None:
            # with our transport: its timeout, not google-auth's default one
            found, found_project = google.auth.default(scopes=[SCOPE], request=self._request)
            project_id = project_id or found_project or ""
            if not project_id:
                raise DefaultCredentialsError(
                    "the credentials name no project: set JIFEN_FCM_PROJECT_ID"
                )
            self._credentials = found
        self._credentials.refresh(self._request)
        if not self._credentials.token:
            raise DefaultCredentialsError("the credentials gave no access token")
        return str(self._credentials.token), self._credentials.expiry, project_id

    def _invalidate(self, authorization: str) -> None:
        """FCM refused this token (revoked): the next send waits for a new one, unless one
        came meanwhile."""
        if authorization == self._authorization:
            self._renew_at = self._expires_at = -math.inf

    async def send(self, push: Push) -> Outcome:
        message = fcm_message(push)
        now = time.monotonic()
        if now < self._renew_at:  # the hot path: no coroutine, no lock, no thread
            authorization = self._authorization
        else:
            try:
                authorization = await self._renewed(now)
            except Exception as exc:  # no token (the refresh logged why): retried later
                return transport_failure(exc)
        try:
            code, answer_headers, raw = await http_post(
                self._http.get(),
                self._send_url,
                json.dumps(message, ensure_ascii=False).encode(),
                {"authorization": authorization, "content-type": "application/json"},
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return transport_failure(exc)
        answer = json_body(raw)
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
            self._invalidate(authorization)
            return Outcome("retry", code, reason)
        if code == 429 or code >= 500:
            return Outcome("retry", code, reason, retry_after_s=retry_after(answer_headers))
        return Outcome("failed", code, reason)

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()  # the thread finishes on its own (bounded by the timeout)
        await self._http.close()
        self._request.session.close()


def fcm_message(push: Push) -> dict[str, Any]:
    """The HTTP v1 message. A resend (a retry, a takeover after a crash) must replace the
    first copy rather than show twice: on Android the notification `tag` replaces the one
    shown and `collapse_key` the one FCM still holds; a browser gets the Web Push `Topic` and
    the tag; an iOS app on FCM `apns-collapse-id`. Only the device's platform's part is sent
    (a third of the bytes of all three)."""
    message: dict[str, Any] = {
        "token": push.token,
        "notification": {"title": push.title, "body": push.body},
        "data": {"notification_id": push.notification_id}
        | {k: str(v) for k, v in push.data.items()},
    }
    collapse = push.collapse_id
    if push.platform == "android":
        message["android"] = {"collapse_key": collapse, "notification": {"tag": collapse}}
    elif push.platform == "web":
        message["webpush"] = {"headers": {"Topic": push.topic}, "notification": {"tag": collapse}}
    else:
        message["apns"] = {"headers": {"apns-collapse-id": collapse}}
    return {"message": message}


def _retrieved(task: asyncio.Task[str]) -> None:
    """A background renewal nobody awaited: its failure is logged already."""
    if not task.cancelled():
        task.exception()
