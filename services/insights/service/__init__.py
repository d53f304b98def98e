"""Insights use cases, by area: the rollups of consumed events (`rollups`), KPIs (`kpis`), A/B
experiments (`experiments`), recommendations (`recommendations`), the KPI targets (`targets`)
and the business health (`health`). The request-time ones run
inside the caller's unit of work and only flush.

Callers keep writing `service.apply_batch(...)`, `service.summary(...)`: the public use cases
are re-exported here.
"""

from services.insights.service.experiments import (
    OUTCOME_KINDS,
    SRM_THRESHOLD,
    assignment,
    assignment_of,
    change_status,
    create_experiment,
    get_experiment,
    list_experiments,
    results,
)
from services.insights.service.health import business_health
from services.insights.service.kpis import MAX_KPI_DAYS, SUMMARY_DAYS, kpi_series, summary, window
from services.insights.service.recommendations import Recommender, recommendations
from services.insights.service.rollups import Batch, apply_batch, period_key
from services.insights.service.targets import (
    current_targets,
    list_targets,
    set_target,
    target_history,
)

__all__ = [
    "MAX_KPI_DAYS",
    "OUTCOME_KINDS",
    "SRM_THRESHOLD",
    "SUMMARY_DAYS",
    "Batch",
    "Recommender",
    "apply_batch",
    "assignment",
    "assignment_of",
    "business_health",
    "change_status",
    "create_experiment",
    "current_targets",
    "get_experiment",
    "kpi_series",
    "list_experiments",
    "list_targets",
    "period_key",
    "recommendations",
    "results",
    "set_target",
    "summary",
    "target_history",
    "window",
]
