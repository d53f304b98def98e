"""Firebase Cloud Messaging's HTTP v1 API: an OAuth2 access token obtained with the service
account's RS256-signed assertion."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from services.notifier.providers.base import (
    HttpSession,
    OAuthError,
    Outcome,
    Push,
    http_post,
    json_body,
    retry_after,
    transport_failure,
)


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
        self._http = HttpSession(timeout_s, concurrency)

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
                answer = json_body(await response.read())
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
            code, answer_headers, raw = await http_post(
                self._http.get(),
                f"{self.url}/v1/projects/{self.project_id}/messages:send",
                json.dumps(message, ensure_ascii=False).encode(),
                {"authorization": f"Bearer {bearer}", "content-type": "application/json"},
            )
        except (aiohttp.ClientError, TimeoutError, OAuthError) as exc:
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
            self._access = None
            return Outcome("retry", code, reason)
        if code == 429 or code >= 500:
            return Outcome("retry", code, reason, retry_after_s=retry_after(answer_headers))
        return Outcome("failed", code, reason)

    async def close(self) -> None:
        await self._http.close()
