"""The generic webhook provider: each message POSTed as JSON (HMAC-signed when a secret is set)."""

from __future__ import annotations

import hashlib
import hmac
import json

import aiohttp

from services.notifier.providers.base import (
    HttpSession,
    Outcome,
    Push,
    device_digest,
    http_post,
    json_body,
    retry_after,
    transport_failure,
)


class WebhookProvider:
    """POSTs the message as JSON; signed with HMAC-SHA256 (`X-Jifen-Signature`) when a
    secret is set. `Idempotency-Key` (the notification and the device) and `collapse_id` are
    the same on every send of a message to a device. 2xx is sent, 410 an invalid token,
    429/5xx a retry."""

    name = "webhook"

    def __init__(self, url: str, secret: str, timeout_s: float, concurrency: int) -> None:
        self.url = url
        self.secret = secret.encode()
        self._http = HttpSession(timeout_s, concurrency)

    async def send(self, push: Push) -> Outcome:
        body = json.dumps(
            {
                "notification_id": push.notification_id,
                "user_id": push.user_id,
                "platform": push.platform,
                "token": push.token,
                "category": push.category,
                "collapse_id": push.collapse_id,
                "title": push.title,
                "body": push.body,
                "data": push.data,
            },
            ensure_ascii=False,
        ).encode()
        headers = {
            "content-type": "application/json",
            "x-jifen-notification": push.notification_id,
            # the same on every send to this device (a retry, a takeover after a crash): the
            # receiver keeps the first and answers 2xx to the others
            "idempotency-key": f"{push.collapse_id}.{device_digest(push.token)}",
        }
        if self.secret:
            headers["x-jifen-signature"] = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        try:
            code, answer_headers, raw = await http_post(self._http.get(), self.url, body, headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return transport_failure(exc)
        text = raw[:300].decode("utf-8", "replace")
        if 200 <= code < 300:
            message_id = str(json_body(raw).get("id") or "") or None
            return Outcome("sent", code, message_id=message_id or push.notification_id)
        if code == 410:
            return Outcome("invalid_token", code, "gone")
        if code == 429 or code >= 500:
            return Outcome("retry", code, text, retry_after_s=retry_after(answer_headers))
        return Outcome("failed", code, text)

    async def close(self) -> None:
        await self._http.close()
