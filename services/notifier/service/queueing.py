"""Queueing notifications: a planned notification (its cause, template and variables) rendered
in its user's language and inserted, once.

A notification's id is derived from its cause (`domain.notification_id`), and queueing is an
insert that ignores an id already there: an event replayed, a trigger re-run after a crash or
a campaign chunk expanded twice queues nothing new.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier import domain
from services.notifier import repository as repo
from services.notifier.metrics import QUEUED
from services.notifier.service.templating import template_book
from services.notifier.settings import Settings
from services.notifier.templates import Template


@dataclass
class Planned:
    """A notification to queue: its cause, its template and variables (or literal texts)."""

    id: str
    user_id: str
    trigger: str
    due_at: datetime
    template: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    category: str | None = None  # defaults to the template's
    title: str | None = None  # literal texts (a campaign without a template)
    body: str | None = None
    campaign_id: str | None = None
    experiment: str | None = None
    variant: str | None = None


async def queue(session: AsyncSession, settings: Settings, planned: Sequence[Planned]) -> int:
    """Render each in its user's language and insert it; returns how many were new."""
    if not planned:
        return 0
    book = await template_book(session)
    prefs = await repo.prefs_of(session, (p.user_id for p in planned))
    rows = []
    for p in planned:
        locale = prefs[p.user_id].locale if p.user_id in prefs else domain.DEFAULT_LOCALE
        rows.append(_rendered(p, book, locale))
    new = await repo.queue(session, rows)
    if new:
        _count_queued(planned, set(new))
    return len(new)


def _rendered(p: Planned, book: dict[str, Template], locale: str) -> dict[str, Any]:
    """The notification's row, its texts in `locale`."""
    if p.template is not None:
        template = book[p.template]
        title, body = domain.render(template.texts, locale, p.variables)
        category = p.category or template.category
    else:
        texts = {domain.DEFAULT_LOCALE: {"title": p.title or "", "body": p.body or ""}}
        title, body = domain.render(texts, locale, p.variables)
        category = p.category or "marketing"
    return {
        "id": p.id,
        "user_id": p.user_id,
        "category": category,
        "trigger": p.trigger,
        "template": p.template,
        "title": title,
        "body": body,
        "data": {"trigger": p.trigger, **{k: str(v) for k, v in p.variables.items()}},
        "campaign_id": p.campaign_id,
        "experiment": p.experiment,
        "variant": p.variant,
        "due_at": p.due_at,
    }


def _count_queued(planned: Sequence[Planned], fresh: set[str]) -> None:
    # A repeated cause finds its notification there: not queued again, not counted.
    counts: dict[str, int] = defaultdict(int)
    for p in planned:
        if p.id in fresh:
            counts[p.trigger] += 1
    for trigger, n in counts.items():
        QUEUED.labels(trigger).inc(n)
