"""The SLOs (deploy/prometheus/slo.yml, docs/SLO.md): the seed's 99.9% availability and
p95 < 500 ms, recorded once as objectives, measured on the request histogram every service
exports, and watched by the SRE workbook's multiwindow burn-rate alerts; the operations
dashboard shows the error budget left. promtool checks the rules and runs their unit tests
(slo_test.yml) in test_monitoring_alerts.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from shared.metrics import HTTP_REQUESTS

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
SLO = PROMETHEUS / "slo.yml"
NOT_USER_TRAFFIC = ("/metrics", "/health/live", "/health/ready", "/v1/health/business")

# (long window, short window, burn rate, severity): page on the fast pairs, ticket on the slow
WORKBOOK = {
    ("1h", "5m", 14.4, "critical"),
    ("6h", "30m", 6.0, "critical"),
    ("1d", "2h", 3.0, "warning"),
    ("3d", "6h", 1.0, "warning"),
}


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(SLO.read_text())["groups"] for rule in group["rules"]]


def recorded() -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for rule in rules():
        if "record" in rule:
            found.setdefault(rule["record"], []).append(rule)
    return found


def test_objectives_are_recorded_once_with_their_budget() -> None:
    objectives = {r["labels"]["slo"]: r["expr"] for r in recorded()["slo:objective:ratio"]}
    assert objectives == {"availability": "vector(0.999)", "latency": "vector(0.95)"}
    [budget] = recorded()["slo:error_budget:ratio"]
    assert budget["expr"] == "1 - slo:objective:ratio"
    # no other rule writes a target of its own (p95 is the quantile the dashboard shows)
    for rule in rules():
        if rule.get("record") != "slo:objective:ratio":
            expr = rule["expr"].replace("histogram_quantile(0.95,", "")
            assert not re.search(r"0\.999|0\.95\b", expr), rule


def test_slis_read_the_request_histogram_without_probes_and_scrapes() -> None:
    assert HTTP_REQUESTS._name == "jifen_http_request_seconds"
    assert 0.5 in HTTP_REQUESTS._upper_bounds  # the latency SLO counts the le="0.5" bucket
    assert {"service", "status", "route"} <= set(HTTP_REQUESTS._labelnames)
    selectors = re.findall(r"jifen_http_request_seconds_\w+\{([^}]*)\}", SLO.read_text())
    assert len(selectors) >= 4
    for selector in selectors:
        [excluded] = re.findall(r'route!~"([^"]+)"', selector)
        for route in NOT_USER_TRAFFIC:
            assert re.fullmatch(excluded, route), (route, excluded)
        for route in ("/v1/redemptions", "/v1/users/{user_id}/balance", "unmatched"):
            assert not re.fullmatch(excluded, route), (route, excluded)
    [errors] = [
        r for r in recorded()["service:slo_errors:rate5m"] if r["labels"]["slo"] == "latency"
    ]
    assert 'le="0.5"' in errors["expr"]
    [errors] = [
        r for r in recorded()["service:slo_errors:rate5m"] if r["labels"]["slo"] == "availability"
    ]
    assert 'status=~"5.."' in errors["expr"]


def burn_pairs(rule: dict[str, Any]) -> set[tuple[str, str, float, str]]:
    """(long, short, factor, severity) of a burn-rate alert: both windows above one factor."""
    found = re.findall(
        r"service:slo_error_ratio:rate(\w+) > on \(slo\) group_left \(\) "
        r"\(?(?:([\d.]+) \* )?slo:error_budget:ratio\)?",
        rule["expr"],
    )
    windows = [w for w, _ in found]
    factors = {float(f or 1) for _, f in found}
    assert len(found) == 2 and len(factors) == 1 and "\nand (" in rule["expr"], rule["alert"]
    return {(windows[0], windows[1], factors.pop(), rule["labels"]["severity"])}


def test_burn_rate_alerts_are_the_workbooks_pairs() -> None:
    alerts = [rule for rule in rules() if "alert" in rule]
    pairs = set().union(*(burn_pairs(rule) for rule in alerts))
    assert pairs == WORKBOOK
    for long, short, _, _ in pairs:
        assert f"service:slo_error_ratio:rate{long}" in recorded()
        assert f"service:slo_error_ratio:rate{short}" in recorded()
    for rule in alerts:
        assert "for" not in rule, rule["alert"]  # the short window already debounces


def test_operations_dashboard_shows_the_error_budget_left() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/jifen-operations.json").read_text())
    exprs = {
        target["expr"]: panel
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }
    for expr in ("suite:slo_error_budget_left:ratio30d", "service:slo_error_budget_left:ratio30d"):
        [panel] = [p for e, p in exprs.items() if expr in e]
        assert panel["fieldConfig"]["defaults"]["unit"] == "percentunit", panel["title"]
        assert "budget" in panel["title"].lower()


def test_docs_state_the_slos_and_the_alert_policy() -> None:
    text = (ROOT / "docs" / "SLO.md").read_text()
    for fact in ("99.9%", "500 ms", "30 days", "14.4", "slo.yml", "JifenErrorBudgetBurn1h"):
        assert fact in text, fact
