"""The unit of work a route gets: a FastAPI dependency that opens one transaction for the
request and commits it when the route returns, before the answer is sent (so a 2xx means
committed), or rolls it back when the route raises.

    @router.post("/things")
    async def create(body: ThingIn, session: Writes) -> dict: ...   # committed after return
    @router.get("/things/{id}")
    async def read(thing_id: str, session: Reads) -> dict: ...      # BEGIN READ ONLY

Routes never open or commit transactions themselves. Work to do once the transaction has
committed (wake a worker, say) is registered with `shared.db.after_commit(session, hook)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database


def database_of(request: Request) -> Database:
    db: Database = request.app.state.runtime.db
    return db


async def _writes(request: Request) -> AsyncIterator[AsyncSession]:
    async with database_of(request).transaction() as session:
        yield session


async def _reads(request: Request) -> AsyncIterator[AsyncSession]:
    async with database_of(request).read_only() as session:
        yield session


async def _snapshot(request: Request) -> AsyncIterator[AsyncSession]:
    async with database_of(request).snapshot() as session:
        yield session


# scope="function": the transaction ends when the route returns, before the response goes out.
Writes = Annotated[AsyncSession, Depends(_writes, scope="function")]
Reads = Annotated[AsyncSession, Depends(_reads, scope="function")]
Snapshot = Annotated[AsyncSession, Depends(_snapshot, scope="function")]
