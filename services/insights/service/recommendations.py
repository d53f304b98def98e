"""Recommendations: the model kept in memory (rebuilt when stale) and a user's items to redeem,
scored by the pure recommenders of `services.insights.recommendations`, the one the
`recommender` experiment assigns the user (its exposure logged once, on
experiment.exposures; redemptions after it are its conversions: see `experiments.py`)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.insights import repository as repo
from services.insights.models import messaging
from services.insights.recommendations import (
    DEFAULT,
    RECOMMENDERS,
    Item,
    Model,
    Redeemed,
    UserView,
)
from services.insights.repository import Experiment
from services.insights.service.experiments import assignment_of
from services.insights.settings import Settings
from shared.db import Database
from shared.experiments import exposure_event
from shared.messaging import add_to_outbox

REBUILD_AT_LEAST_S = 300.0
EXPERIMENT_TTL_S = 5.0  # how stale the recommender experiment's status may be
EXPOSED_KEPT = 100_000  # users whose exposure this process remembers having logged


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
        self._experiment: Experiment | None = None
        self._experiment_at = float("-inf")
        self._exposed: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def arm(self, session: AsyncSession, user_id: str) -> tuple[str, str | None]:
        """(the recommender that serves the user, the experiment that chose it or None): the
        `recommender_experiment`'s variant when it is running and names a recommender, else
        the default. A user's first exposure in this process is logged (the event's id is
        derived from the experiment and the user, so repeats elsewhere are deduplicated)."""
        if time.monotonic() - self._experiment_at > EXPERIMENT_TTL_S:
            self._experiment = await repo.experiment(session, self.settings.recommender_experiment)
            self._experiment_at = time.monotonic()
        row = self._experiment
        variant = assignment_of(row, user_id) if row is not None else None
        if row is None or variant not in RECOMMENDERS:
            return DEFAULT, None
        seen = (row.key, user_id)
        if seen not in self._exposed:
            event = exposure_event(row.key, variant, user_id, datetime.now(UTC), "insights")
            async with self.db.transaction() as writes:  # the request's own session only reads
                await add_to_outbox(writes, messaging.outbox, [event])
            self._exposed[seen] = None
            if len(self._exposed) > EXPOSED_KEPT:
                self._exposed.popitem(last=False)
        return variant, row.key

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
            owned, balances = await repo.owned_items(session)
        # The vectors and similarities are pure CPU: off the event loop, so requests keep
        # being answered while a model is rebuilt.
        return await asyncio.to_thread(
            Model.build, items, users_of, together, popular, now, self._model, owned, balances
        )


async def recommendations(
    session: AsyncSession,
    recommender: Recommender,
    user_id: str,
    limit: int,
    band: tuple[int, int] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The user's items to redeem from the recommender their experiment arm names, priced in
    `band` when given (else 0.5-1.5x their balance)."""
    settings = recommender.settings
    model = await recommender.model()
    arm, experiment = await recommender.arm(session, user_id)
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
    chosen = RECOMMENDERS[arm](
        model,
        user,
        limit=limit,
        now=now,
        tz=settings.tz,
        per_category=settings.recommendations_per_category,
        band=band,
    )
    return {
        "user_id": user_id,
        "balance": user.balance,
        "strategy": "personalized" if user.redeemed else "popular",
        "recommender": arm,
        "experiment": experiment,
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
