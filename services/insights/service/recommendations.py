"""Recommendations: the model kept in memory (rebuilt when stale) and a user's items to redeem,
scored by the pure model of `services.insights.recommendations`."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.insights import repository as repo
from services.insights.recommendations import Item, Model, Redeemed, UserView, recommend
from services.insights.settings import Settings
from shared.db import Database

REBUILD_AT_LEAST_S = 300.0


class Recommender:
    """The recommender's in-memory model: the catalog copy, co-redemptions and popularity,
    read from insights' tables and rebuilt when older than `model_refresh_s` (one rebuild at
    a time; requests meanwhile use the model they have)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._model: Model | None = None
        self._built = 0.0
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None
        self._inputs: tuple[object, ...] = ()
        self._rebuilt = 0.0

    async def model(self) -> Model:
        """The current model; the first call builds it, a stale one is rebuilt in the
        background while requests keep using it."""
        if self._model is None:
            async with self._lock:
                if self._model is None:
                    self._model = await self.build()
                    self._built = self._rebuilt = time.monotonic()
        elif time.monotonic() - self._built > self.settings.model_refresh_s:
            if not self._lock.locked():
                self._refresh = asyncio.create_task(self._rebuild())
        return self._model

    async def _rebuild(self) -> None:
        async with self._lock:
            if time.monotonic() - self._built <= self.settings.model_refresh_s:
                return
            async with self.db.read_only() as session:
                inputs = await repo.model_inputs(session)
            # Nothing new redeemed and the catalog unchanged: keep the model (the popularity
            # window still slides, so it is rebuilt at least every REBUILD_AT_LEAST_S).
            fresh = time.monotonic() - self._rebuilt < REBUILD_AT_LEAST_S
            if inputs != self._inputs or not fresh:
                self._model = await self.build()
                self._inputs = inputs
                self._rebuilt = time.monotonic()
            self._built = time.monotonic()

    async def build(self, now: datetime | None = None) -> Model:
        now = now or datetime.now(UTC)
        async with self.db.read_only() as session:
            items = [
                Item(
                    item_id=r.item_id,
                    name=r.name,
                    category=r.category,
                    tags=tuple(r.tags or ()),
                    points_price=int(r.points_price),
                    stock=int(r.stock),
                    per_user_limit=r.per_user_limit,
                    min_tier=r.min_tier,
                    available=bool(r.available),
                )
                for r in await repo.catalog(session)
            ]
            users_of, together = await repo.co_redemptions(session)
            popular = await repo.popularity(
                session, now - timedelta(days=self.settings.popularity_days)
            )
        # The vectors and similarities are pure CPU: off the event loop, so requests keep
        # being answered while a model is rebuilt.
        return await asyncio.to_thread(
            Model.build, items, users_of, together, popular, now, self._model
        )


async def recommendations(
    session: AsyncSession,
    model: Model,
    user_id: str,
    limit: int,
    settings: Settings,
    now: datetime | None = None,
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    row = await repo.user_view(
        session, user_id, now, now + timedelta(days=settings.expiring_window_days)
    )
    tier = row.tier or {}
    user = UserView(
        user_id=user_id,
        balance=int(row.balance or 0),
        tier=tier.get("tier"),
        ladder=tuple(tier.get("ladder") or ()),
        redeemed=[
            Redeemed(item, int(quantity), datetime.fromisoformat(at))
            for item, quantity, at in row.redeemed
        ],
        expiring=[(datetime.fromisoformat(at), int(points)) for at, points in row.expiring],
    )
    chosen = recommend(
        model,
        user,
        limit=limit,
        now=now,
        tz=settings.tz,
        per_category=settings.recommendations_per_category,
    )
    return {
        "user_id": user_id,
        "balance": user.balance,
        "strategy": "personalized" if user.redeemed else "popular",
        "items": [
            {
                "item_id": r.item_id,
                "name": r.name,
                "category": r.category,
                "points_price": r.points_price,
                "score": r.score,
                "reason": r.reason,
            }
            for r in chosen
        ],
    }
