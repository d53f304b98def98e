"""The one way a Jifen process calls another service's HTTP API.

Every call ends as one of three outcomes, so a caller always knows what happened:
- `Done`: a 2xx answer (its JSON body; `None` when it had none);
- `Refused`: a definite no (a 4xx other than 429) that asking again will not change, with the
  service's stable error code, message and details;
- `Unreachable`: no definite answer (connection error, timeout, 5xx, 429, a body that is not
  JSON). The request may or may not have been applied: a caller retries with the same
  idempotency key, or keeps its own work unfinished until a recovery loop asks again.

The three share the read-only surface the console's pages use (`ok`, `status`, `body`, `data`,
`error`, `message`, `describe()`), so a page and a use case read the same objects.

aiohttp, not httpx: measured twice here (docs/BENCHMARKS.md, hot item and console), under a
few dozen concurrent calls httpx's pool bookkeeping cost more CPU than the work behind the call.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
from prometheus_client import Histogram

from shared import tracing
from shared.errors import DomainError, Unavailable

log = logging.getLogger(__name__)

SERVICE_CALL_SECONDS = Histogram(
    "jifen_service_call_seconds",
    "Calls from this process to another service's HTTP API, by target and outcome "
    "(done, refused, unreachable)",
    ["target", "outcome"],
)


@dataclass(frozen=True)
class Done:
    body: Any
    status: int = 200
    service: str = ""
    ok: ClassVar[bool] = True
    error: ClassVar[None] = None
    message: ClassVar[None] = None

    @property
    def data(self) -> Any:
        return self.body

    def describe(self) -> str:
        return f"{self.service}: {self.status}"


@dataclass(frozen=True)
class Refused:
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    status: int = 400
    body: Any = None
    service: str = ""
    ok: ClassVar[bool] = False
    data: ClassVar[Any] = None

    @property
    def error(self) -> str:
        return self.code

    def describe(self) -> str:
        return f"{self.service}: {self.code} — {self.message}".rstrip(" —")


@dataclass(frozen=True)
class Unreachable:
    reason: str
    service: str = ""
    ok: ClassVar[bool] = False
    status: ClassVar[int] = 503
    error: ClassVar[str] = "unreachable"
    body: ClassVar[Any] = None
    data: ClassVar[Any] = None

    @property
    def message(self) -> str:
        return self.reason

    def describe(self) -> str:
        return f"{self.service}: unreachable — {self.reason}"


Outcome = Done | Refused | Unreachable


def _error_fields(body: Any, raw: bytes) -> tuple[str, str, dict[str, Any]]:
    if not isinstance(body, dict):
        return "http_error", raw[:300].decode(errors="replace"), {}
    details = body.get("details")
    if not isinstance(details, dict):
        details = {k: v for k, v in body.items() if k not in ("error", "message", "request_id")}
    return str(body.get("error") or "http_error"), str(body.get("message") or ""), details


def outcome_of(status: int, raw: bytes, service: str = "") -> Outcome:
    """Classify one HTTP answer (also used for the items of a batch answer)."""
    if status >= 500 or status == 429:
        return Unreachable(f"{service or 'the service'} answered {status}", service)
    try:
        body = jsonlib.loads(raw) if raw else None
    except ValueError:  # includes bytes that are not UTF-8
        if 200 <= status < 300:
            return Unreachable(
                f"{service or 'the service'} answered {status} without JSON", service
            )
        body = None
    if 200 <= status < 300:
        return Done(body, status, service)
    code, message, details = _error_fields(body, raw)
    return Refused(code, message, details, status, body, service)


class ServiceClient:
    """Keep-alive connections to one service with this process's credential.

    `retries`: how many more times a call that may be repeated safely (a read, or a write
    carrying its idempotency key: `call(..., idempotent=True)`) is tried after an
    `Unreachable`, with a short growing pause. Refusals are never retried.
    """

    def __init__(
        self,
        target: str,
        base_url: str,
        token: str,
        timeout_s: float,
        *,
        retries: int = 0,
        pool: int = 200,
        unavailable_code: str | None = None,
    ) -> None:
        self.target = target
        self.unavailable_code = unavailable_code or f"{target}_unavailable"
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._pool = pool
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop, as aiohttp requires.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(
                    limit=self._pool, limit_per_host=self._pool, keepalive_timeout=30
                ),
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _once(
        self, method: str, path: str, params: dict[str, Any] | None, json: Any
    ) -> Outcome:
        query = {k: str(v) for k, v in params.items() if v is not None} if params else None
        traceparent = tracing.current()  # the called service continues the caller's trace
        headers = {tracing.HEADER: traceparent} if traceparent is not None else None
        try:
            async with self._http().request(
                method, self.base_url + path, params=query, json=json, headers=headers
            ) as response:
                status = response.status
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
            return Unreachable(reason, self.target)
        return outcome_of(status, raw, self.target)

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> Outcome:
        """One request; `idempotent` defaults to True for GET (retried up to `retries`)."""
        repeatable = method == "GET" if idempotent is None else idempotent
        attempts = 1 + (self.retries if repeatable else 0)
        started = time.perf_counter()
        for attempt in range(attempts):
            outcome = await self._once(method, path, params, json)
            if not isinstance(outcome, Unreachable) or attempt + 1 == attempts:
                break
            await asyncio.sleep(0.05 * 2**attempt)
        label = type(outcome).__name__.lower()
        SERVICE_CALL_SECONDS.labels(self.target, label).observe(time.perf_counter() - started)
        if isinstance(outcome, Unreachable):
            log.warning(
                "service unreachable",
                extra={"target": self.target, "path": path, "error": outcome.reason},
            )
        return outcome

    def value(self, outcome: Outcome) -> dict[str, Any]:
        """The JSON object of a `Done`; a refusal raised as the service's own `DomainError`
        (same code, status and details), no definite answer as `Unavailable` (503)."""
        if isinstance(outcome, Unreachable):
            raise Unavailable(self.unavailable_code, self.target, outcome.reason)
        if isinstance(outcome, Refused):
            message = outcome.message or f"{self.target} refused"
            raise DomainError(outcome.code, message, status=outcome.status, **outcome.details)
        if not isinstance(outcome.body, dict):
            reason = f"it answered {outcome.status} without a JSON object"
            raise Unavailable(self.unavailable_code, self.target, reason)
        return outcome.body

    async def fetch(self, path: str, **params: Any) -> dict[str, Any]:
        """GET a JSON object, or raise (see `value`)."""
        return self.value(await self.get(path, **params))

    async def get(self, path: str, **params: Any) -> Outcome:
        return await self.call("GET", path, params=params)

    async def post(self, path: str, body: Any = None, *, idempotent: bool = False) -> Outcome:
        return await self.call(
            "POST", path, json=body if body is not None else {}, idempotent=idempotent
        )

    async def patch(self, path: str, body: Any) -> Outcome:
        return await self.call("PATCH", path, json=body)
