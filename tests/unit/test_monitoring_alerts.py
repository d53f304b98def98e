"""The rule files Prometheus loads (deploy/prometheus/alerts.yml, targets.yml, slo.yml) pass
`promtool check rules` and their unit tests (every *_test.yml there: alerts_test.yml,
slo_test.yml), and every alert has a unit test in which it fires.

promtool comes from Debian's `prometheus` package when it is not on PATH (tests/tools.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.tools import debian_tool

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTMANAGER = ROOT / "deploy" / "alertmanager"


@pytest.fixture(scope="module")
def promtool() -> Path:
    return debian_tool("promtool", "prometheus")


def run(tool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )


def unit_test_files() -> list[str]:
    return sorted(path.name for path in PROMETHEUS.glob("*_test.yml"))


def rule_files() -> list[str]:
    """The rule files Prometheus loads (prometheus.yml), each loaded by some unit test file."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    tested = [
        name
        for test in unit_test_files()
        for name in yaml.safe_load((PROMETHEUS / test).read_text())["rule_files"]
    ]
    assert sorted(set(tested)) == sorted(config["rule_files"])
    return list(config["rule_files"])


def alert_rules() -> list[dict]:
    return [
        rule
        for name in rule_files()
        for group in yaml.safe_load((PROMETHEUS / name).read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_alert_rules_check(promtool: Path) -> None:
    result = run(promtool, "check", "rules", *rule_files())
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests(promtool: Path) -> None:
    assert {"alerts_test.yml", "slo_test.yml"} <= set(unit_test_files())
    result = run(promtool, "test", "rules", *unit_test_files())
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(unit_test_files()), result.stdout


def test_every_alert_has_a_unit_test_in_which_it_fires() -> None:
    tests = [
        test
        for name in unit_test_files()
        for test in yaml.safe_load((PROMETHEUS / name).read_text())["tests"]
    ]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    defined = {rule["alert"] for rule in alert_rules()}
    assert fired == defined, {"never fired in a test": defined - fired, "unknown": fired - defined}


def test_every_alert_has_a_routed_severity_and_a_summary() -> None:
    routes = yaml.safe_load((ALERTMANAGER / "alertmanager.yml").read_text())["route"]["routes"]
    routed = {m.split("=")[1].strip('"') for r in routes for m in r["matchers"]}
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        assert rule["labels"]["severity"] in routed, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_every_business_alert_waits_before_firing() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    [business] = [g for g in rules["groups"] if g["name"] == "jifen-business"]
    for rule in business["rules"]:
        assert rule.get("for"), rule["alert"]  # a KPI dip between two refreshes never pages


def test_lag_and_reconciliation_are_watched() -> None:
    """The operations the money depends on: per-partition lag, reconciliation findings and
    freshness (3 x the default 600 s interval), each with its severity."""
    by_name = {rule["alert"]: rule for rule in alert_rules()}
    lag = by_name["JifenConsumerLagHigh"]
    assert "jifen_consumer_lag" in lag["expr"] and "partition" in lag["expr"]
    assert lag["for"] == "10m"
    stalled = by_name["JifenConsumerStalled"]
    assert "resets(jifen_consumer_lag" in stalled["expr"]
    assert stalled["labels"]["severity"] == "critical"
    violations = by_name["JifenReconciliationViolations"]
    assert "jifen_reconciliation_violations" in violations["expr"]
    assert violations["labels"]["severity"] == "critical"
    assert "> 1800" in by_name["JifenReconciliationStale"]["expr"]
    missing = by_name["JifenReconciliationMissing"]["expr"]
    assert 'service="rewards_ledger"' in missing and 'service="exchange"' in missing
