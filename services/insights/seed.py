"""Demo data for `make run`: the notifier's expiry-reminder copy as a running experiment."""

from __future__ import annotations

from typing import Any

from services.insights import service
from shared.errors import DomainError

# The notifier picks the copy of its expiry reminder with shared.experiments.assign on this
# key and these variants, in this order (JIFEN_EXPIRY_COPY_EXPERIMENT there), and publishes an
# ExperimentExposure when it sends one. The order matters: it lays out the hash ranges.
EXPIRY_REMINDER_COPY: dict[str, Any] = {
    "key": "expiry_reminder_copy",
    "name": "到期提醒文案: 过期倒计时 vs 可兑换价值",
    "description": "Expiry reminder copy: '30天后过期' (deadline, the control) against "
    "'可兑换价值¥50' (value); converts when the user redeems within 7 days of the reminder.",
    "variants": [{"key": "deadline", "weight": 1.0}, {"key": "value", "weight": 1.0}],
    "metric": {"type": "conversion", "event": "redemption", "window_days": 7},
    "namespace": None,
    "coverage": 1.0,
    "seed": None,
    "hash_version": 2,
    "status": "running",
}


async def seed_demo(rt: Any) -> None:
    async with rt.db.transaction() as session:
        try:
            await service.create_experiment(session, dict(EXPIRY_REMINDER_COPY))
        except DomainError:
            pass  # an operator changed it: theirs stands
