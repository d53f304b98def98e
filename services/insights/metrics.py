"""insights' own metrics: the KPIs as gauges (alerts and dashboards read these), and how its
copies of other services' data are doing."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

KPI = Gauge(
    "jifen_insights_kpi",
    "KPIs over the last 30 business days (dau / dau_yesterday: distinct active users of "
    "today / of yesterday; rates are ratios 0..1; earn_to_redeem_days in days; nps in points "
    "-100..100); set by the gauge worker",
    ["kpi"],
)
KPI_TARGET = Gauge(
    "jifen_insights_kpi_target",
    "Each KPI's target as stored (GET/PUT /v1/kpis/targets; the seed's until an operator "
    "changes it): the business alerts compare jifen_insights_kpi with it",
    ["kpi"],
)
KPI_TARGET_MET = Gauge(
    "jifen_insights_kpi_target_met",
    "1 when the KPI meets its stored target over the last 30 days, 0 when it does not",
    ["kpi"],
)
POINTS_EXPIRING = Gauge(
    "jifen_insights_points_expiring",
    "Points in active lots that expire within the expiring window (7 days by default)",
)
REFERENCE_SYNCS = Counter(
    "jifen_insights_reference_syncs_total",
    "Copies of another service's reference data (catalog, task_rules, expiring_points)",
    ["data", "outcome"],
)
GAUGES_UPDATED = Gauge(
    "jifen_insights_gauges_updated_timestamp_seconds",
    "When the KPI gauges were last recomputed (unix time)",
)
