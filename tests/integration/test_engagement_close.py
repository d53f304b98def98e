"""Closing a leaderboard period pays each prize once, across a kill -9 in the middle of the
close, re-runs and concurrent closers; late scores stay out of a closed period.

Like the ledger's lifecycle tests, these drive engagement's own code against a private
database on the real PostgreSQL with an explicit clock (a period must have ended, plus the
grace, before it closes), so time can move without touching the running suite.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from services.engagement import repository as repo
from services.engagement import service
from services.engagement.index import BoardIndex
from services.engagement.models import board_results
from services.engagement.settings import Settings
from services.engagement.workers import IndexWriter, PeriodCloser
from shared.db import Database, create_engine, database_url, ensure_database
from shared.events import LedgerEvent
from shared.messaging.outbox import UNSENT_MESSAGES
from shared.migrate import upgrade
from tests.conftest import unique

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAY = "2026-01-05"  # a Monday; in Shanghai it ends at 2026-01-05T16:00Z
AFTER_CLOSE = datetime(2026, 1, 6, 12, 0, tzinfo=UTC)
SETTINGS = Settings(board_grace_s=300)


@pytest.fixture(scope="module")
async def engagement_db(infra) -> AsyncIterator[tuple[Database, str]]:
    name = f"jifen_engagement_{unique('close')}".lower()
    await ensure_database(infra.database_url, name)
    url = database_url(infra.database_url, name).render_as_string(hide_password=False)
    await asyncio.to_thread(upgrade, "services.engagement", url)
    db = Database(create_engine(database_url(infra.database_url, name), pool_size=5))
    yield db, url
    await db.dispose()


class NoIndex(IndexWriter):
    """The index writer's place in the apply path, with no server behind it."""

    def __init__(self) -> None:
        super().__init__(BoardIndex("redis://127.0.0.1:1/0", 0.1), None, None, None, 1, 1)  # type: ignore[arg-type]


def credit(user: str, points: int, at: datetime) -> LedgerEvent:
    return LedgerEvent(
        type="credited",
        entry_id=abs(hash((user, points, at))) % 10**12,
        user_id=user,
        points=points,
        balance_after=points,
        idempotency_key=unique("k"),
        occurred_at=at,
    )


async def board_with_scores(db: Database) -> tuple[str, dict[str, int]]:
    code = unique("daily").replace("_", "-")
    prizes = [
        {"rank_from": 1, "rank_to": 1, "reward_type": "points", "amount": 500},
        {"rank_from": 2, "rank_to": 3, "reward_type": "points", "amount": 100},
    ]
    scores = {unique("u1"): 90, unique("u2"): 80, unique("u3"): 80, unique("u4"): 10}
    async with db.transaction() as session:
        await service.create_board(
            session,
            {
                "code": code,
                "name": "daily",
                "metric": "points_earned",
                "window": "day",
                "prizes": prizes,
            },
        )
    # a Monday noon in Shanghai; u2 reaches 80 before u3
    at = datetime(2026, 1, 5, 4, 0, tzinfo=UTC)
    for i, (user, points) in enumerate(scores.items()):
        async with db.transaction() as session:
            batch = service.Batch(ledger=[credit(user, points, at + timedelta(minutes=i))])
            await service.apply_batch(session, batch, SETTINGS, NoIndex(), now=at)
    return code, scores


async def outbox_of(db: Database, code: str, users: list[str]) -> list[dict]:
    async with db.transaction() as session:
        rows = await session.execute(
            text(f"SELECT m.topic, m.payload FROM ({UNSENT_MESSAGES}) m WHERE m.key = ANY(:keys)"),
            {"keys": [code, *users]},
        )
        return [{"topic": r.topic, **json.loads(r.payload)} for r in rows]


def close_in_a_process_killed_before_commit(url: str, now: datetime) -> int:
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from datetime import datetime
        from sqlalchemy.engine import make_url
        from services.engagement.settings import Settings
        from services.engagement.workers import PeriodCloser
        from shared.db import Database, create_engine

        db = Database(create_engine(make_url({url!r})))
        closer = PeriodCloser(
            Settings(board_grace_s=300), db,
            before_commit=lambda: os.kill(os.getpid(), signal.SIGKILL),
        )
        asyncio.run(closer.close_once(datetime.fromisoformat({now.isoformat()!r})))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=60, check=False)
    return done.returncode


async def test_a_close_killed_mid_transaction_pays_nobody_and_the_next_pays_each_prize_once(
    engagement_db,
) -> None:
    db, url = engagement_db
    code, scores = await board_with_scores(db)
    users = list(scores)

    assert close_in_a_process_killed_before_commit(url, AFTER_CLOSE) == -9
    assert await outbox_of(db, code, users) == []  # nothing of the killed close survived
    async with db.transaction() as session:
        assert await repo.period_status(session, code, DAY) == "open"

    closers = [PeriodCloser(SETTINGS, db) for _ in range(3)]
    first = await asyncio.gather(*(c.close_once(AFTER_CLOSE) for c in closers))
    again = await asyncio.gather(*(c.close_once(AFTER_CLOSE) for c in closers))
    assert sorted(c for c in first if c is not None) == [(code, DAY)]
    assert all(c is None or c[0] != code for c in again)

    messages = await outbox_of(db, code, users)
    grants = [m for m in messages if m["topic"] == "rewards.grants"]
    closed = [m for m in messages if m["topic"] == "engagement.events"]
    assert sorted((g["user_id"], g["points"]) for g in grants) == sorted(
        [(users[0], 500), (users[1], 100), (users[2], 100)]
    )
    assert len({g["grant_id"] for g in grants}) == 3
    assert [c["type"] for c in closed] == ["leaderboard.closed"]
    winners = closed[0]["data"]["winners"]
    # ties share the displayed rank; the prize order goes to who reached the score first
    assert [(w["user_id"], w["rank"], w["position"]) for w in winners] == [
        (users[0], 1, 1),
        (users[1], 2, 2),
        (users[2], 2, 3),
    ]
    async with db.transaction() as session:
        frozen = (
            await session.execute(
                select(board_results.c.user_id, board_results.c.rank)
                .where(board_results.c.board_code == code)
                .order_by(board_results.c.position)
            )
        ).all()
    assert [tuple(r) for r in frozen] == [
        (users[0], 1),
        (users[1], 2),
        (users[2], 2),
        (users[3], 4),
    ]
    assert json.loads(json.dumps(closed[0]["data"]))["period"] == DAY
    async with db.transaction() as session:  # what a rank lookup of a closed period answers
        assert await repo.closed_rank(session, code, DAY, users[3], AFTER_CLOSE) == (10, 4, 4)


async def test_a_period_is_not_closed_before_its_grace_and_late_scores_stay_out(
    engagement_db,
) -> None:
    db, _ = engagement_db
    code, scores = await board_with_scores(db)
    ended = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
    closer = PeriodCloser(SETTINGS, db)
    for _ in range(5):  # other tests' boards may be due as well: close until ours would be
        done = await closer.close_once(ended + timedelta(seconds=299))
        assert done is None or done[0] != code
        if done is None:
            break
    while (done := await closer.close_once(ended + timedelta(seconds=301))) is not None:
        if done[0] == code:
            break
    assert done == (code, DAY)

    late = list(scores)[-1]
    async with db.transaction() as session:
        batch = service.Batch(ledger=[credit(late, 1000, datetime(2026, 1, 5, 15, 0, tzinfo=UTC))])
        await service.apply_batch(session, batch, SETTINGS, NoIndex(), now=AFTER_CLOSE)
    async with db.transaction() as session:
        assert await repo.score_of(session, code, DAY, late) == 10  # the closed period kept


async def test_each_day_gets_one_rank_snapshot_with_shared_ranks(engagement_db) -> None:
    db, _ = engagement_db
    code = unique("snap").replace("_", "-")
    async with db.transaction() as session:
        await service.create_board(
            session,
            {
                "code": code,
                "name": "weekly",
                "metric": "points_earned",
                "window": "week",
                "prizes": [],
                "created_at": datetime(2026, 1, 1, tzinfo=UTC),
            },
        )
    at = datetime(2026, 1, 5, 4, 0, tzinfo=UTC)
    users = [unique("s1"), unique("s2"), unique("s3")]
    async with db.transaction() as session:
        batch = service.Batch(
            ledger=[credit(users[0], 30, at), credit(users[1], 30, at), credit(users[2], 5, at)]
        )
        await service.apply_batch(session, batch, SETTINGS, NoIndex(), now=at)
    closer = PeriodCloser(SETTINGS, db)
    taken = [await closer.snapshot_once(AFTER_CLOSE) for _ in range(6)]
    assert -1 in taken  # every board's day done, then nothing more is due
    async with db.transaction() as session:
        rows = {
            u: await repo.snapshots(session, code, u, datetime(2026, 1, 1).date()) for u in users
        }
    assert [(r[0].day.isoformat(), r[0].period_key, r[0].rank) for r in rows.values()] == [
        ("2026-01-05", "2026-W02", 1),
        ("2026-01-05", "2026-W02", 1),
        ("2026-01-05", "2026-W02", 3),
    ]
