"""Rate-limit benchmarks, called from `python -m bench` (section `ratelimit`).

- `cost`: the middleware alone, in this process, on a request of a user it admits: the
  microseconds it adds to every request (headers scanned, a digest, one bucket update).
- `guard_cost`: the request guard every service mounts (NUL characters in the URL or a JSON
  body, the body size limit) on an ingest request of 1, 100 and 1,000 behaviors.
- `flood`: an extra exchange replica with the default limits (20 requests/s per user, bursts
  of 50). Four users browse the catalog at 5 requests/s each, first alone, then while a fifth
  floods the same replica with 16 requests in flight. Reports the others' latency in both
  phases and how many of the flooder's requests got 429.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
from typing import Any

import aiohttp

from services.devstack import Stack
from shared.auth import issue_user_token
from shared.errors import RejectNulBytes
from shared.ratelimit import Limit, RateLimit
from shared.settings import DEV_ADMIN_TOKEN, DEV_JWT_SECRET

DEFAULTS = {
    "JIFEN_RATE_LIMIT_KEY_PER_S": "2000",
    "JIFEN_RATE_LIMIT_USER_PER_S": "20",
    "JIFEN_RATE_LIMIT_IP_PER_S": "100",
}


async def cost(requests: int = 200_000) -> dict[str, float]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    limiter = RateLimit(
        app,
        service="bench",
        per_key=Limit(2000, 4000),
        per_user=Limit(1e9, 1e9),  # admit everything: the cost of the check, not of a 429
        per_ip=Limit(100, 200),
        exempt_tokens=frozenset([DEV_ADMIN_TOKEN]),
    )
    token = issue_user_token(DEV_JWT_SECRET, "bench-user").encode()
    scope = {
        "type": "http",
        "path": "/v1/items",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"user-agent", b"bench"),
            (b"accept", b"*/*"),
            (b"authorization", b"Bearer " + token),
        ],
        "client": ("127.0.0.1", 5000),
    }
    plain = RateLimit(
        app,
        service="bench",
        per_key=Limit(0, 1),
        per_user=Limit(0, 1),
        per_ip=Limit(0, 1),
        exempt_tokens=frozenset(),
    )
    timings = {}
    for name, middleware in (("limited", limiter), ("off", plain)):
        started = time.perf_counter()
        for _ in range(requests):
            await middleware(scope, None, None)
        timings[name] = (time.perf_counter() - started) / requests * 1e6
    return {"us_per_request": timings["limited"], "us_when_off": timings["off"]}


async def _browse(url: str, headers: dict[str, str], seconds: float, rate: float) -> list[float]:
    latencies: list[float] = []
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession(headers=headers) as session:
        while time.monotonic() < end:
            started = time.perf_counter()
            async with session.get(f"{url}/v1/items") as response:
                await response.read()
                assert response.status == 200, response.status
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - started)))
    return latencies


def _flood_process(url: str, token: str, seconds: float, out: Any) -> None:
    """The flooder, in a process of its own: its client's CPU is not the browsers'."""

    async def run() -> dict[str, int]:
        counts = {"ok": 0, "limited": 0}
        end = time.monotonic() + seconds
        headers = {"Authorization": f"Bearer {token}"}
        connector = aiohttp.TCPConnector(limit=16)
        async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

            async def one() -> None:
                while time.monotonic() < end:
                    async with session.get(f"{url}/v1/items") as response:
                        await response.read()
                        counts["ok" if response.status == 200 else "limited"] += 1

            await asyncio.gather(*(one() for _ in range(16)))
        return counts

    out.put(asyncio.run(run()))


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000,
    }


async def flood(stack: Stack, seconds: float = 8.0) -> dict[str, Any]:
    name = stack.start_service("exchange", replica=2, role="api", extra_env=DEFAULTS)
    try:
        stack.wait_ready(120, (name,))
        users = [
            {"Authorization": f"Bearer {issue_user_token(DEV_JWT_SECRET, f'browser{i}')}"}
            for i in range(4)
        ]
        url = stack.url(name)
        alone = await asyncio.gather(*(_browse(url, u, seconds, 5) for u in users))
        results: multiprocessing.Queue[dict[str, int]] = multiprocessing.Queue()
        flooder = multiprocessing.Process(
            target=_flood_process,
            args=(url, issue_user_token(DEV_JWT_SECRET, "flooder"), seconds + 1, results),
        )
        flooder.start()
        await asyncio.sleep(0.5)  # the flood is on
        during = await asyncio.gather(*(_browse(url, u, seconds, 5) for u in users))
        counts = await asyncio.to_thread(results.get, True, 60)
        flooder.join(10)
    finally:
        stack.stop_service(name)
    return {
        "alone": _ms([x for xs in alone for x in xs]),
        "during_flood": _ms([x for xs in during for x in xs]),
        "flooder": counts,
        "seconds": seconds,
    }


async def guard_cost(requests: int = 20_000) -> dict[str, float]:
    """The request guard (NUL characters, body size) in front of every route: microseconds
    it adds to a request carrying one behavior, a batch of 100 and a batch of 1,000."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    guard = RejectNulBytes(app)
    event = (
        b'{"event_id": "evt-000001", "source": "app", "user_id": "u-000042", "action": "like", '
        b'"occurred_at": "2026-12-01T10:00:00+08:00", "attributes": {"content_id": "post-7"}}'
    )
    bodies = {
        "one": event,
        "batch100": b'{"events": [' + b", ".join([event] * 100) + b"]}",
        "batch1000": b'{"events": [' + b", ".join([event] * 1000) + b"]}",
    }
    scope = {"type": "http", "method": "POST", "path": "/v1/events", "query_string": b""}
    out: dict[str, float] = {}
    for name, body in bodies.items():
        message = {"type": "http.request", "body": body, "more_body": False}

        async def receive(message: dict[str, Any] = message) -> dict[str, Any]:
            return message

        n = requests if name != "batch1000" else requests // 10
        started = time.perf_counter()
        for _ in range(n):
            await guard(scope, receive, None)
        out[name] = (time.perf_counter() - started) / n * 1e6
    return out


async def measure(stack: Stack) -> dict[str, Any]:
    return {
        "ratelimit_cost": await cost(),
        "guard_cost": await guard_cost(),
        "ratelimit_flood": await flood(stack),
    }


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    if (c := results.get("ratelimit_cost")) is not None:
        out.append(
            (
                "rate limits: middleware cost per request",
                f"{c['us_per_request']:.1f} µs",
                f"{c['us_when_off']:.1f} µs with every limit off",
            )
        )
    if (g := results.get("guard_cost")) is not None:
        out.append(
            (
                "request guard (NUL, body size): cost per request",
                f"{g['one']:.1f} µs",
                f"one behavior; {g['batch100']:.1f} µs for a batch of 100, "
                f"{g['batch1000']:.0f} µs for 1,000",
            )
        )
    if (f := results.get("ratelimit_flood")) is not None:
        flooder = f["flooder"]
        out.append(
            (
                "rate limits: 4 users at 5/s while a 5th floods",
                f"p99 {f['during_flood']['p99_ms']:.0f} ms",
                f"alone p99 {f['alone']['p99_ms']:.0f} ms (p50 {f['alone']['p50_ms']:.1f} -> "
                f"{f['during_flood']['p50_ms']:.1f} ms); the flooder got {flooder['limited']:,} "
                f"429s and {flooder['ok']:,} answers in {f['seconds']:.0f} s",
            )
        )
    return out
