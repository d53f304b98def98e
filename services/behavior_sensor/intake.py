"""HTTP intake in batches: concurrent requests recorded in one transaction (group commit).

An order system posting one behavior per order sends many small requests at once. Each
used to wait for a commit of its own; now the requests that arrive while a transaction is
committing form the next one, and each caller is answered when the transaction holding its
behaviors has committed, so a 202 still means recorded. A lone request goes through at
once. A request with more than `small` behaviors is already a batch and keeps a
transaction of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from services.behavior_sensor import repository as repo
from services.behavior_sensor.metrics import EVENTS_INGESTED
from services.behavior_sensor.settings import Settings
from shared.batching import GroupCommit
from shared.db import Database, after_commit
from shared.events import BehaviorEnvelope

Counts = tuple[int, int]  # (accepted, duplicates)
Request = tuple[list[BehaviorEnvelope], str | None]  # a request's behaviors and its traceparent


class HttpIntake:
    def __init__(self, settings: Settings, db: Database, wake: Callable[[], None]) -> None:
        self.db = db
        self.wake = wake
        self.small = settings.intake_group_max_events
        self.batcher: GroupCommit[Request, Counts] = GroupCommit(
            self._record_many,
            max_size=settings.intake_group_max_requests,
            in_flight=settings.intake_groups_in_flight,
        )

    async def record(
        self, envelopes: list[BehaviorEnvelope], traceparent: str | None = None
    ) -> Counts:
        """Record new behaviors for the processor; returns (accepted, duplicates) once they
        have committed. `traceparent`: the request's trace, kept with each behavior for the
        processor to continue (requests of one group each keep their own)."""
        if len(envelopes) <= self.small:
            return await self.batcher.submit((envelopes, traceparent))
        return (await self._record_many([(envelopes, traceparent)]))[0]

    async def _record_many(self, requests: list[Request]) -> Sequence[Counts]:
        traceparents = None
        if any(traceparent for _, traceparent in requests):
            traceparents = [t for envelopes, t in requests for _ in envelopes]
        async with self.db.transaction() as session:
            rows = await repo.record_received(
                session,
                [e for envelopes, _ in requests for e in envelopes],
                "http",
                traceparents=traceparents,
            )
            if rows:
                after_commit(session, self.wake)
        new = {(r.source, r.event_id) for r in rows}
        answers = []
        for envelopes, _ in requests:
            accepted = 0
            for e in envelopes:
                if (e.source, e.event_id) in new:
                    new.discard((e.source, e.event_id))  # a repeat later in the group is one
                    accepted += 1
            answers.append((accepted, len(envelopes) - accepted))
            count_intake(envelopes, accepted)
        return answers


def count_intake(envelopes: Sequence[BehaviorEnvelope], accepted: int) -> None:
    if envelopes:
        source = envelopes[0].source if len({e.source for e in envelopes}) == 1 else "mixed"
        EVENTS_INGESTED.labels(source, "accepted").inc(accepted)
        EVENTS_INGESTED.labels(source, "duplicate").inc(len(envelopes) - accepted)
