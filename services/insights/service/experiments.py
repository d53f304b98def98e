"""A/B experiments: defining them, their status, a user's assignment (and its exposure), and
the results (significance per variant, the sample-ratio-mismatch check)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.insights import repository as repo
from services.insights import stats
from services.insights.models import messaging
from services.insights.repository import Experiment
from services.insights.schemas import ExperimentOut
from shared.errors import DomainError, NotFound
from shared.experiments import assign, exposure_event
from shared.messaging import add_to_outbox

# Outcome kinds an experiment's metric can name.
OUTCOME_KINDS = ("redemption", "points_spent", "notification_opened")

_DEFINITION = (
    "name",
    "description",
    "variants",
    "metric",
    "namespace",
    "coverage",
    "seed",
    "hash_version",
)


async def create_experiment(
    session: AsyncSession, values: dict[str, Any]
) -> tuple[ExperimentOut, bool]:
    """Define an experiment. The same definition again replays it (created False); another
    one under an existing key is refused (409 experiment_exists)."""
    created = await repo.insert_experiment(session, values)
    row = await repo.experiment(session, values["key"])
    assert row is not None
    if not created and any(getattr(row, k) != values[k] for k in _DEFINITION):
        raise DomainError(
            "experiment_exists", f"experiment {values['key']!r} exists with another definition"
        )
    return ExperimentOut.model_validate(row), created


async def get_experiment(session: AsyncSession, key: str) -> Experiment:
    row = await repo.experiment(session, key)
    if row is None:
        raise NotFound("experiment", key)
    return row


async def list_experiments(
    session: AsyncSession, status: str | None, limit: int, offset: int
) -> tuple[list[ExperimentOut], int]:
    """A page of experiments by key, with how many there are (of that status)."""
    rows, total = await repo.list_experiments(session, status, limit, offset)
    return [ExperimentOut.model_validate(r) for r in rows], total


async def change_status(session: AsyncSession, key: str, status: str) -> ExperimentOut:
    row = await get_experiment(session, key)
    if row.status == "stopped" and status != "stopped":
        raise DomainError("experiment_stopped", f"experiment {key!r} is stopped for good")
    updated = await repo.set_status(session, key, status)
    assert updated is not None  # found above, in this transaction
    return ExperimentOut.model_validate(updated)


def assignment_of(row: Experiment, user_id: str) -> str | None:
    """The variant the user sees: the shared assignment function, running experiments only."""
    if row.status != "running":
        return None
    return assign(
        row.key,
        user_id,
        [(v["key"], float(v["weight"])) for v in row.variants],
        seed=row.seed,
        namespace=tuple(row.namespace) if row.namespace else None,
        coverage=float(row.coverage),
        hash_version=int(row.hash_version),
    )


async def assignment(
    session: AsyncSession, key: str, user_id: str, expose: bool, now: datetime | None = None
) -> dict[str, Any]:
    """The user's variant; with `expose`, an exposure is logged on experiment.exposures
    (once per user: its id is derived from the experiment and the user)."""
    row = await get_experiment(session, key)
    variant = assignment_of(row, user_id)
    if expose and variant is not None:
        exposure = exposure_event(key, variant, user_id, now or datetime.now(UTC), "insights")
        await add_to_outbox(session, messaging.outbox, [exposure])
    return {
        "experiment": key,
        "user_id": user_id,
        "variant": variant,
        "in_experiment": variant is not None,
        "status": row.status,
    }


SRM_THRESHOLD = 0.001


def _arm(row: Any) -> tuple[int, int, float, float]:
    if row is None:
        return 0, 0, 0.0, 0.0
    return int(row.n), int(row.converted), float(row.total), float(row.total_squares)


async def results(session: AsyncSession, key: str) -> dict[str, Any]:
    """Per variant: users exposed, conversions (or the mean), a 95% interval, the lift over
    the first (control) variant and its p-value; and the sample-ratio-mismatch check."""
    row = await get_experiment(session, key)
    metric = row.metric
    kind = metric["type"]
    totals = await repo.variant_totals(session, key, metric["event"], int(metric["window_days"]))
    keys = [v["key"] for v in row.variants]
    weights = [float(v["weight"]) for v in row.variants]
    control = _arm(totals.get(keys[0]))
    variants = [
        _variant(kind, index, variant, weights[index], _arm(totals.get(variant)), control)
        for index, variant in enumerate(keys)
    ]
    srm = stats.srm_chi_square([v["n"] for v in variants], weights)
    return {
        "experiment": key,
        "status": row.status,
        "metric": metric,
        "test": "two_proportion_z" if kind == "conversion" else "welch_t",
        "control": keys[0],
        "variants": variants,
        "exposures": sum(v["n"] for v in variants),
        "srm": {
            "chi_square": srm.statistic if srm else None,
            "p_value": srm.p_value if srm else None,
            "threshold": SRM_THRESHOLD,
            "mismatch": bool(srm and srm.p_value < SRM_THRESHOLD),
        },
        "unknown_variants": sorted(set(totals) - set(keys)),
    }


def _variant(
    kind: str,
    index: int,
    variant: str,
    weight: float,
    arm: tuple[int, int, float, float],
    control: tuple[int, int, float, float],
) -> dict[str, Any]:
    """One variant's results against the control (the first variant, `index` 0): a
    conversion rate (two-proportion z) or a mean (Welch's t)."""
    n0, c0, t0, s0 = control
    mean0 = t0 / n0 if n0 else None
    var0 = (s0 - n0 * mean0 * mean0) / (n0 - 1) if n0 > 1 and mean0 is not None else 0.0
    n, converted, total, squares = arm
    item: dict[str, Any] = {"key": variant, "weight": weight, "n": n}
    if kind == "conversion":
        rate = converted / n if n else None
        base_rate = c0 / n0 if n0 else None
        item |= {"conversions": converted, "rate": rate}
        interval = stats.wilson_interval(converted, n)
        test = stats.two_proportion_z(c0, n0, converted, n) if index else None
        value, base = rate, base_rate
    else:
        mean = total / n if n else None
        variance = (squares - n * mean * mean) / (n - 1) if n > 1 and mean is not None else 0.0
        item |= {"conversions": converted, "mean": mean, "total": total}
        interval = stats.mean_interval(mean, variance, n) if mean is not None else None
        test = stats.welch_t(mean0 or 0.0, var0, n0, mean or 0.0, variance, n) if index else None
        value, base = mean, mean0
    item["ci"] = list(interval) if interval else None
    item["lift"] = value / base - 1.0 if index and value is not None and base else None
    item["p_value"] = test.p_value if test else None
    item["statistic"] = test.statistic if test else None
    if test is not None and test.df is not None:
        item["df"] = test.df
    return item
