"""The console's one way to the suite: the services' HTTP APIs, with the credentials kept
here on the server (the console's own service credential, whose scopes open exactly the
calls its pages make). Every call ends as a `Reply`: a definite answer
(2xx or the service's refusal with its error code) or `unreachable`, so a page can always
show something readable."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from shared.client import Outcome, ServiceClient, Unreachable

# What a page reads from a call: `Done | Refused | Unreachable` (shared/client.py), whose
# common surface (ok, status, body, data, error, message, describe()) the templates use.
Reply = Outcome


def page_status(reply: Reply) -> int:
    """The status a page answers with after a failed call: the service's own 4xx (the
    operator's input was refused), otherwise 502 (the service failed us)."""
    return reply.status if 400 <= reply.status < 500 else 502


@dataclass
class Services:
    """A client per service (shared/client.py, aiohttp: httpx's pool cost the user page,
    which makes a dozen calls at once, about half its CPU)."""

    urls: dict[str, str]
    token: str  # JIFEN_SERVICE_TOKEN: the console's credential, never the admin token
    timeout_s: float = 5.0
    _clients: dict[str, ServiceClient] = field(default_factory=dict, repr=False)
    _cache: dict[tuple[str, str], tuple[float, Reply]] = field(default_factory=dict, repr=False)

    def available(self, service: str) -> bool:
        return service in self.urls

    def _client(self, service: str) -> ServiceClient:
        client = self._clients.get(service)
        if client is None:
            client = ServiceClient(service, self.urls[service], self.token, self.timeout_s)
            self._clients[service] = client
        return client

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
            return Unreachable("no URL is configured for it", service)
        return await self._client(service).call(method, path, params=params, json=json)

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
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
