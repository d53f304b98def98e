"""Console replicas of the running suite, over HTTP: two replicas sharing the suite's Valkey
and database with operators whose hashes are the old scrypt ones, and one whose Valkey is
nowhere (it throttles on its own and says so on /metrics).

Each test's client comes from a loopback address of its own (127.0.0.x), so its guesses
fill an address bucket no other test of the session uses."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy import select

from console.models import operator_passwords
from console.passwords import PasswordHash
from services.devstack import Stack, free_port
from services.suite import CONSOLE
from shared.db import create_engine, database_url
from tests.conftest import unique
from tests.console.test_console_units import legacy_scrypt

pytestmark = pytest.mark.integration

LI, ZHAO = unique("li"), unique("zhao")
PASSWORDS = {LI: "correct horse battery", ZHAO: "another good password"}
USERS = json.dumps(
    {
        name: {"role": "operator", "password_hash": legacy_scrypt(pw)}
        for name, pw in PASSWORDS.items()
    }
)


@pytest.fixture(scope="module")
def replicas(stack: Stack) -> Iterator[dict[str, str]]:
    """Two replicas on the suite's Valkey (#1, #2) and one on a Valkey that is not there (#3),
    each allowing 3 wrong passwords a name."""
    env = {"JIFEN_CONSOLE_USERS": USERS, "JIFEN_CONSOLE_SIGNIN_FAILURES": "3"}
    dead_valkey = f"redis://127.0.0.1:{free_port()}/0"
    names = [
        stack.start_service(CONSOLE, replica=1, extra_env=env),
        stack.start_service(CONSOLE, replica=2, extra_env=env),
        stack.start_service(CONSOLE, replica=3, extra_env={**env, "JIFEN_REDIS_URL": dead_valkey}),
    ]
    try:
        stack.wait_ready(120, tuple(names))
        yield {name: stack.url(name) for name in names}
    finally:
        for name in names:
            stack.stop_service(name)


@pytest.fixture
async def from_address(replicas) -> AsyncIterator:
    """Clients of each replica, all from one loopback address."""
    clients: list[httpx.AsyncClient] = []

    def open_for(name: str, address: str) -> httpx.AsyncClient:
        url = replicas[name]
        client = httpx.AsyncClient(
            base_url=url,
            headers={"Origin": url},
            timeout=30,
            transport=httpx.AsyncHTTPTransport(local_address=address),
        )
        clients.append(client)
        return client

    yield open_for
    for client in clients:
        await client.aclose()


async def upgraded_hash(infra, name: str) -> str | None:
    engine = create_engine(database_url(infra.database_url, "jifen_console"), pool_size=1)
    try:
        async with engine.connect() as conn:
            return (
                await conn.execute(
                    select(operator_passwords.c.password_hash).where(
                        operator_passwords.c.name == name
                    )
                )
            ).scalar_one_or_none()
    finally:
        await engine.dispose()


async def sign_in(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    return await client.post("/", data={"name": name, "password": password})


async def test_two_replicas_admit_three_guesses_in_all_and_upgrade_scrypt_on_sign_in(
    infra, from_address
) -> None:
    one, two = from_address("console#1", "127.0.0.2"), from_address("console#2", "127.0.0.2")
    guesses = await asyncio.gather(
        *(sign_in((one, two)[n % 2], ZHAO, f"guess {n}") for n in range(10))
    )
    statuses = sorted(r.status_code for r in guesses)
    assert statuses == [401] * 3 + [429] * 7, statuses  # not 3 per replica
    assert all(int(r.headers["retry-after"]) >= 1 for r in guesses if r.status_code == 429)
    assert await upgraded_hash(infra, ZHAO) is None  # wrong passwords rehash nothing

    signed = await sign_in(one, LI, PASSWORDS[LI])
    assert signed.status_code == 303 and "jifen_console=" in signed.headers["set-cookie"]
    stored = await upgraded_hash(infra, LI)
    assert stored and stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PasswordHash.parse(stored).verify(PASSWORDS[LI])
    # the other replica signs li in with the stored hash, and writes nothing new
    assert (await sign_in(two, LI, PASSWORDS[LI])).status_code == 303
    assert (await sign_in(two, LI, "correct horse batterz")).status_code == 401
    assert await upgraded_hash(infra, LI) == stored


async def test_a_replica_without_valkey_still_throttles_on_its_own(from_address) -> None:
    alone = from_address("console#3", "127.0.0.3")
    name = unique("guessed")
    statuses = [(await sign_in(alone, name, f"guess {n}")).status_code for n in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    assert (await sign_in(alone, LI, PASSWORDS[LI])).status_code == 303
    metrics = (await alone.get("/metrics")).text
    counted = re.search(r"^jifen_console_signin_throttle_local_total (\S+)$", metrics, re.M)
    assert counted and float(counted.group(1)) >= 6  # every attempt, decided in the process
