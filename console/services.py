"""The console's one way to the suite: the services' HTTP APIs, with the credentials kept
here on the server (the console's own service credential, whose scopes open exactly the
calls its pages make). Every call ends as a `Reply`: a definite answer
(2xx or the service's refusal with its error code) or `unreachable`, so a page can always
show something readable."""

from __future__ import annotations

import asyncio
import json as json_module
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any = None
    error: str | None = None
    message: str | None = None
    service: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def data(self) -> Any:
        """The answer's body when it succeeded; None otherwise (templates test for it)."""
        return self.body if self.ok else None

    def describe(self) -> str:
        return f"{self.service}: {self.error or self.status} — {self.message or ''}".rstrip(" —")


@dataclass
class Services:
    """One HTTP client for every service (aiohttp: httpx's pool cost the user page, which
    makes a dozen calls at once, about half its CPU)."""

    urls: dict[str, str]
    token: str  # JIFEN_SERVICE_TOKEN: the console's credential, never the admin token
    timeout_s: float = 5.0
    session: aiohttp.ClientSession | None = field(default=None, repr=False)
    _cache: dict[tuple[str, str], tuple[float, Reply]] = field(default_factory=dict, repr=False)

    def available(self, service: str) -> bool:
        return service in self.urls

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"Authorization": f"Bearer {self.token}"},
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=60),
            )
        return self.session

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Reply:
        if service not in self.urls:
            return Reply(503, error="not_configured", message="no URL", service=service)
        query = {k: str(v) for k, v in (params or {}).items()}
        try:
            async with self._session().request(
                method, self.urls[service] + path, params=query, json=json
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("service unreachable", extra={"target": service, "error": repr(exc)})
            return Reply(
                503, error="unreachable", message=str(exc) or type(exc).__name__, service=service
            )
        try:
            body = json_module.loads(raw) if raw else None
        except ValueError:
            body = None
        if 200 <= status < 300:
            return Reply(status, body, service=service)
        error = body.get("error") if isinstance(body, dict) else None
        message = (
            body.get("message") if isinstance(body, dict) else raw[:300].decode(errors="replace")
        )
        return Reply(status, body, error or "http_error", message, service)

    async def get(self, service: str, path: str, **params: Any) -> Reply:
        return await self.call(
            service, "GET", path, params={k: v for k, v in params.items() if v is not None}
        )

    async def get_cached(self, service: str, path: str, ttl_s: float = 15, **params: Any) -> Reply:
        """A read of reference data that changes rarely (the boards, the catalog for a
        select), kept `ttl_s` seconds; a failed read is not kept."""
        key = (service, f"{path}?{sorted(params.items())}")
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < ttl_s:
            return hit[1]
        reply = await self.get(service, path, **params)
        if reply.ok:
            self._cache[key] = (time.monotonic(), reply)
        return reply

    async def post(self, service: str, path: str, body: Any = None) -> Reply:
        return await self.call(service, "POST", path, json=body if body is not None else {})

    async def patch(self, service: str, path: str, body: Any) -> Reply:
        return await self.call(service, "PATCH", path, json=body)

    async def gather(self, **calls: Any) -> dict[str, Reply]:
        """Run several reads at once; their replies by name."""
        names = list(calls)
        replies = await asyncio.gather(*(calls[n] for n in names))
        return dict(zip(names, replies, strict=True))

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
