"""Apple's APNs: HTTP/2, token auth (an ES256 JWT signed with the team's .p8 key)."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

import jwt

from services.notifier.h2client import H2Client, H2Error
from services.notifier.providers.base import (
    Outcome,
    Push,
    json_body,
    retry_after,
    transport_failure,
)


def _ssl_context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


class ApnsProvider:
    """APNs over HTTP/2 with a provider token: an ES256 JWT (`iss` the team, `kid` the key)
    reused for 40 minutes (Apple refuses one older than an hour, or renewed more often than
    every 20). The notification id is the `apns-id` and `apns-collapse-id`, so a message sent
    twice (a retry, or a replica died between the provider's answer and the record) shows
    once: the second replaces the first on the device."""

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
            "apns-collapse-id": push.collapse_id,
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
            return transport_failure(exc)
        if code == 200:
            return Outcome(
                "sent",
                code,
                message_id=answer_headers.get("apns-unique-id")
                or answer_headers.get("apns-id")
                or push.notification_id,
            )
        reason = str(json_body(raw).get("reason", ""))
        if code == 410 or reason in self.invalid_reasons:
            return Outcome("invalid_token", code, reason or "Unregistered")
        if code == 403 and reason in self.token_reasons:
            self._token = None  # sign a new one for the next try
            return Outcome("retry", code, reason)
        if code == 429 or code >= 500:
            return Outcome("retry", code, reason, retry_after_s=retry_after(answer_headers))
        return Outcome("failed", code, reason or raw[:300].decode("utf-8", "replace"))

    async def close(self) -> None:
        await self._http.close()
