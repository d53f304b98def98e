"""Engine, session factory and the unit of work every request and consumed batch runs in."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import BindParameter, literal, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger(__name__)


def inline(value: Any) -> BindParameter[Any]:
    """A constant written into the SQL text instead of being sent as a parameter.

    Use it where a partial index's condition names the constant (`status = 'received'`,
    `remaining > 0`). PostgreSQL matches a query to a partial index only when it can see that
    constant; a prepared statement that has switched to its generic plan (after five runs)
    cannot, and scans the whole table instead, for the life of the connection.
    """
    return literal(value, literal_execute=True)


def database_url(server_url: str, database: str) -> URL:
    """The SQLAlchemy (asyncpg) URL of `database` on the server named by `server_url`."""
    url = make_url(server_url)
    return url.set(drivername="postgresql+asyncpg", database=database)


def asyncpg_kwargs(url: URL) -> dict[str, Any]:
    query = dict(url.query)
    host = query.pop("host", None) or url.host
    return {
        "user": url.username or "postgres",
        "password": url.password or None,
        "host": host,
        "port": url.port or 5432,
        "database": url.database,
    }


async def ensure_database(server_url: str, database: str) -> None:
    """Create `database` on the server if it does not exist (safe to race with other replicas)."""
    admin_url = database_url(server_url, "postgres")
    conn = await asyncpg.connect(**asyncpg_kwargs(admin_url))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{database}"')
                log.info("created database", extra={"database": database})
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                pass
    finally:
        await conn.close()


def create_engine(url: URL, *, pool_size: int = 8, max_overflow: int = 4) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


# session.info key of the hooks one transaction runs after it commits
_AFTER_COMMIT = "jifen.after_commit"


def after_commit(session: AsyncSession, hook: Callable[[], object]) -> None:
    """Run `hook` once this session's transaction has committed (never after a rollback)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(hook)


class Database:
    """Owns the engine and hands out units of work: one transaction, committed on success,
    rolled back on any exception; use cases inside only flush.

    Every request gets its unit of work from `shared.unit_of_work`, every consumed batch from
    the consumer loop, every background step from its worker: the code that opens a unit of
    work is the only code that ends it. Use cases that must commit in steps say so (the
    exchange's redemption saga, `services/exchange/service/saga.py`).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        # BEGIN READ ONLY, with no extra round trip (the driver starts the transaction so).
        self.read_only_sessions = async_sessionmaker(
            engine.execution_options(postgresql_readonly=True),
            expire_on_commit=False,
            autoflush=False,
        )
        # Run with the session after every commit of this database, before the transaction's
        # own hooks: the outbox publisher sends the rows the transaction wrote from here.
        self.commit_listeners: list[Callable[[AsyncSession], None]] = []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            async with session.begin():
                yield session
            for listener in self.commit_listeners:
                listener(session)
            for hook in session.info.get(_AFTER_COMMIT, ()):
                hook()

    @asynccontextmanager
    async def read_only(self) -> AsyncIterator[AsyncSession]:
        """A unit of work that cannot write (reads of the API)."""
        async with self.read_only_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work that sees one consistent snapshot (for reconciliation)."""
        async with self.sessions() as session, session.begin():
            await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()


async def violations(
    session: AsyncSession, checks: Mapping[str, str]
) -> dict[str, list[dict[str, Any]]]:
    """Run invariant queries (each selects the rows that break it); returns the broken ones."""
    failures: dict[str, list[dict[str, Any]]] = {}
    for name, sql in checks.items():
        rows = (await session.execute(text(sql))).mappings().all()
        if rows:
            failures[name] = [dict(r) for r in rows]
    return failures
