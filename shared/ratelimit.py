"""Rate limits on the public endpoints: per ingest key, per user and per client IP.

A token bucket per caller, in the process: `rate` requests a second with bursts of `burst`.
Over it a request is answered 429 `rate_limited` with `Retry-After` (whole seconds until a
token is back) before any route or database work, and counted in
`jifen_rate_limited_total{service, kind}`. Callers:

- an `X-Api-Key` (an upstream system): its key's bucket;
- a bearer token that is not the admin token or a service credential (a user): that token's
  bucket (not the IP's: many users share a carrier's or an office's address);
- no credentials: the IP's bucket.

The admin token and service credentials are never limited (operations and the services'
own calls). Each replica keeps its own buckets, so a fleet of N replicas behind a balancer
admits up to N times the configured rate per caller; size the limits per replica. One
caller's flood empties only its own bucket: the others keep their latency (`make bench`).
Buckets idle long enough to be full again are forgotten, so memory stays bounded.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse

from shared.errors import error_body
from shared.metrics import RATE_LIMITED


@dataclass(frozen=True)
class Limit:
    rate: float  # tokens per second (0: no limit)
    burst: float

    @property
    def enabled(self) -> bool:
        return self.rate > 0


class Buckets:
    """Token buckets keyed by caller: `take(key)` is 0.0 when a request may go, else the
    seconds until it could."""

    def __init__(self, limit: Limit, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.max_keys = max_keys
        self._state: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        rate, burst = self.limit.rate, self.limit.burst
        tokens, at = self._state.get(key, (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        if tokens >= 1.0:
            self._state[key] = (tokens - 1.0, now)
            if len(self._state) > self.max_keys:
                self._forget_full(now)
            return 0.0
        self._state[key] = (tokens, now)
        return (1.0 - tokens) / rate

    def peek(self, key: str, now: float | None = None) -> float:
        """What `take` would answer, without taking: 0.0 when a token is there."""
        now = time.monotonic() if now is None else now
        tokens, at = self._state.get(key, (self.limit.burst, now))
        tokens = min(self.limit.burst, tokens + (now - at) * self.limit.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.limit.rate

    def forget(self, key: str) -> None:
        """The key's bucket is full again (e.g. after a successful sign-in)."""
        self._state.pop(key, None)

    def _forget_full(self, now: float) -> None:
        full_after = self.limit.burst / self.limit.rate
        self._state = {k: v for k, v in self._state.items() if now - v[1] < full_after}

    def __len__(self) -> int:
        return len(self._state)


def _key(value: bytes) -> str:
    # A digest: buckets must not keep credentials in memory dumps or metrics.
    return hashlib.blake2b(value, digest_size=12).hexdigest()


class RateLimit:
    """ASGI middleware applying the limits above (installed by shared.service for every
    service; a limit with rate 0 is off)."""

    def __init__(
        self,
        app: Any,
        *,
        service: str,
        per_key: Limit,
        per_user: Limit,
        per_ip: Limit,
        exempt_tokens: frozenset[str],
    ) -> None:
        self.app = app
        self.service = service
        self.keys = Buckets(per_key)
        self.users = Buckets(per_user)
        self.ips = Buckets(per_ip)
        self.exempt = frozenset(t.encode() for t in exempt_tokens)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)  # health, metrics, docs: never limited
            return
        api_key = authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"x-api-key":
                api_key = value
        wait = 0.0
        kind = ""
        if api_key is not None:
            if self.keys.limit.enabled:
                wait, kind = self.keys.take(_key(api_key)), "ingest_key"
        elif authorization is not None:
            scheme, _, token = authorization.partition(b" ")
            exempt = scheme.lower() == b"bearer" and token in self.exempt
            if not exempt and self.users.limit.enabled:
                wait, kind = self.users.take(_key(authorization)), "user"
        elif self.ips.limit.enabled:
            client = scope.get("client")
            wait, kind = self.ips.take(client[0] if client else "unknown"), "ip"
        if wait:
            RATE_LIMITED.labels(self.service, kind).inc()
            retry_after = max(1, math.ceil(wait))
            response = JSONResponse(
                status_code=429,
                content=error_body(
                    "rate_limited",
                    f"too many requests for this {kind.replace('_', ' ')}; "
                    f"retry after {retry_after} s",
                ),
                headers={"Retry-After": str(retry_after)},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
