"""The alert rules pass `promtool test rules` (their unit tests in
deploy/prometheus/alerts_test.yml) and the Grafana dashboard is well formed.

promtool comes from Debian's `prometheus` package, no Prometheus service needed: when it is
not on PATH the fixture downloads the package with apt and extracts promtool under .data/
(CI is a clean machine with apt; the first run takes a few seconds, later ones reuse it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
TOOLS = ROOT / ".data" / "tools"


def fetch_promtool() -> Path:
    """promtool from PATH, from an earlier extraction, or from Debian's package now."""
    found = shutil.which("promtool")
    if found:
        return Path(found)
    extracted = TOOLS / "prometheus" / "usr" / "bin" / "promtool"
    if extracted.exists():
        return extracted
    with tempfile.TemporaryDirectory() as tmp:
        download = ["apt-get", "download", "-qq", "prometheus"]
        if subprocess.run(download, cwd=tmp, capture_output=True).returncode != 0:
            # a clean machine may not have the package lists yet
            subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
            subprocess.run(download, cwd=tmp, check=True, capture_output=True)
        [deb] = Path(tmp).glob("prometheus_*.deb")
        (TOOLS / "prometheus").mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["dpkg", "-x", str(deb), str(TOOLS / "prometheus")], check=True, capture_output=True
        )
    assert extracted.exists(), "the prometheus package carries no usr/bin/promtool"
    return extracted


@pytest.fixture(scope="session")
def promtool() -> Path:
    return fetch_promtool()


def run(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )


def test_alert_rules_check(promtool: Path) -> None:
    result = run(promtool, "check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests(promtool: Path) -> None:
    result = run(promtool, "test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_business_alert_has_a_for_and_a_unit_test() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    [business] = [g for g in rules["groups"] if g["name"] == "jifen-business"]
    tests = (PROMETHEUS / "alerts_test.yml").read_text()
    for rule in business["rules"]:
        assert rule.get("for"), rule["alert"]  # a KPI dip between two refreshes never pages
        assert rule["labels"]["severity"] in ("warning", "critical")
    tested = set(re.findall(r"alertname: (\w+)", tests))
    untested = {r["alert"] for r in business["rules"]} - tested
    # the warnings that mirror a tested critical rule on the same metric
    assert untested <= {
        "JifenActiveUsersGrowthBelowTarget",
        "JifenExpiringPileGrowing",
        "JifenTaskCompletionBelowTarget",
        "JifenPushOpenRateBelowTarget",
        "JifenEarnToRedeemSlow",
    }, untested


def dashboard_queries() -> list[str]:
    dashboard = json.loads((GRAFANA / "dashboards" / "jifen-business.json").read_text())
    return [t["expr"] for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"]]


def test_dashboard_is_provisioned_with_its_datasource() -> None:
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uids = {d["uid"] for d in datasources["datasources"]}
    dashboard = json.loads((GRAFANA / "dashboards" / "jifen-business.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in uids
        assert panel["targets"] and all(
            re.search(r"\bjifen_\w+", t["expr"]) for t in panel["targets"]
        )
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "jifen.yml").read_text())
    assert providers["providers"][0]["type"] == "file"
    assert dashboard_queries()
