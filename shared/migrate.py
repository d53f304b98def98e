"""Alembic, once for all services: each service keeps its revisions in <package>/migrations.

`python -m shared.migrate services.rewards_ledger` upgrades that service's database (a
Kubernetes Job or init container can run exactly this); services also migrate on start.
Concurrent replicas serialize on a PostgreSQL advisory lock, so only one applies a revision.
"""

from __future__ import annotations

import asyncio
import importlib
import sys

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config

MIGRATION_LOCK_ID = 0x4A4946454E  # "JIFEN"


def alembic_config(package: str, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", f"{package}:migrations")
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(package: str, url: str, revision: str = "head") -> None:
    """Blocking; call from a thread when inside an event loop."""
    command.upgrade(alembic_config(package, url), revision)


def _run_sync(connection: Connection, target_metadata: MetaData) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
        context.run_migrations()


async def _run_online(target_metadata: MetaData) -> None:
    cfg = context.config
    engine = async_engine_from_config(
        cfg.get_section(cfg.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    async with engine.connect() as connection:
        await connection.run_sync(_run_sync, target_metadata)
    await engine.dispose()


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's migrations/env.py."""
    if context.is_offline_mode():
        context.configure(
            url=context.config.get_main_option("sqlalchemy.url"),
            target_metadata=target_metadata,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(_run_online(target_metadata))


def main(argv: list[str]) -> int:
    from shared.db import database_url, ensure_database

    if len(argv) != 1:
        print("usage: python -m shared.migrate services.<service>", file=sys.stderr)
        return 2
    settings = importlib.import_module(f"{argv[0]}.settings").Settings()
    asyncio.run(ensure_database(settings.database_url, settings.database_name))
    upgrade(
        argv[0],
        database_url(settings.database_url, settings.database_name).render_as_string(
            hide_password=False
        ),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
