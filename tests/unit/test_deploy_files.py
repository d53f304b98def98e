"""The production descriptors match the services that exist (no Docker engine here to start them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

from services.suite import SERVICES
from tests.unit.test_k8s_kustomize import generated, rendered

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_every_service_on_its_contract_port_with_health_checks() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert "postgres" in compose
    for service, offset in SERVICES.items():
        assert (ROOT / "services" / service / "main.py").exists()
        entry = compose[service]
        port = str(8000 + offset)
        assert entry["command"][1] == f"services.{service}.main:app"
        command = entry["command"]
        assert command[command.index("--port") + 1] == port and f"{port}:{port}" in entry["ports"]
        assert entry["environment"]["PORT"] == port
        assert "health/ready" in " ".join(entry["healthcheck"]["test"])
        assert entry["environment"]["JIFEN_KAFKA_ENABLE_IDEMPOTENCE"] == "true"
        assert entry["depends_on"]["kafka"]["condition"] == "service_healthy"
    app_services = {
        name for name, e in compose.items() if "command" in e and "services." in e["command"][1]
    }
    assert {e["command"][1].split(".")[1] for n, e in compose.items() if n in app_services} == set(
        SERVICES
    )


def test_kubernetes_manifests_cover_every_service_with_probes() -> None:
    docs = rendered()  # what `kubectl kustomize deploy/k8s` makes (test_k8s_kustomize.py)
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    for service in SERVICES:
        mine = [d for d in deployments if d["metadata"]["labels"]["service"] == service]
        assert {d["metadata"]["labels"]["role"] for d in mine} == {"api", "worker"}
        for d in mine:
            container = d["spec"]["template"]["spec"]["containers"][0]
            assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
            assert f"services.{service}.main:app" in container["command"]


def test_alert_rules_parse_and_watch_metrics_the_services_export() -> None:
    import importlib

    import console.metrics  # noqa: F401  (the console exports consumer lag)
    import shared.metrics  # noqa: F401  (importing a metrics module registers its metrics)

    for service in SERVICES:
        if (ROOT / "services" / service / "metrics.py").exists():
            importlib.import_module(f"services.{service}.metrics")

    exported = {sample.name for family in REGISTRY.collect() for sample in family.samples} | {
        family.name for family in REGISTRY.collect()
    }
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        names = re.findall(r"\bjifen_[a-z_]+", rule["expr"])
        assert names, rule["alert"]
        for name in names:
            # a labelled family shows no samples until first used: match it by its base name
            base = re.sub(r"_(total|bucket|count|sum)$", "", name)
            assert name in exported or base in exported, (rule["alert"], name)


def test_exchange_reaches_the_ledger_by_its_service_name_everywhere() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("exchange", "exchange_worker"):
        assert compose[name]["environment"]["JIFEN_LEDGER_URL"] == "http://rewards_ledger:8003"
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "exchange.yaml").read_text()))
    for d in docs:
        if d and d["kind"] == "Deployment":
            env = {
                e["name"]: e.get("value") or e.get("valueFrom")
                for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
            }
            assert env["JIFEN_LEDGER_URL"] == "http://rewards-ledger:8003"
            # ... with its own scoped credential, not the admin token (kept in a Secret)
            token = env["JIFEN_SERVICE_TOKEN"]
            key = "JIFEN_EXCHANGE_SERVICE_TOKEN"
            assert token == {"secretKeyRef": {"name": "jifen-secrets", "key": key}}
    for name in ("exchange", "exchange_worker"):
        assert ":?" in compose[name]["environment"]["JIFEN_SERVICE_TOKEN"]


def test_the_console_runs_on_8000_everywhere_with_its_secrets_required() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["console"]
    assert compose["command"][1] == "console.main:app" and "8000:8000" in compose["ports"]
    assert "health/ready" in " ".join(compose["healthcheck"]["test"])
    for name in ("JIFEN_CONSOLE_USERS", "JIFEN_CONSOLE_SECRET"):
        assert ":?" in compose["environment"][name]  # compose refuses to start without them
    urls = json.loads(compose["environment"]["JIFEN_CONSOLE_SERVICE_URLS"])
    assert set(SERVICES) <= set(urls)
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy/k8s/console.yaml").read_text()) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "console.main:app" in container["command"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": 8000}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["JIFEN_CONSOLE_COOKIE_SECURE"] == "true"
    assert set(SERVICES) <= set(json.loads(env["JIFEN_CONSOLE_SERVICE_URLS"]))
    example = (ROOT / "deploy/k8s/secrets.env.example").read_text()
    refs = {e["name"]: e.get("valueFrom") for e in container["env"]}
    for name in ("JIFEN_CONSOLE_SECRET", "JIFEN_CONSOLE_USERS"):
        assert refs[name] == {"secretKeyRef": {"name": "jifen-secrets", "key": name}}
        assert f"\n{name}=" in example  # the operator's secrets.env has it
    assert "COPY console ./console" in (ROOT / "Dockerfile").read_text()


def test_every_calling_service_presents_its_own_credential_everywhere() -> None:
    """Each service in SERVICE_SCOPES gets its token (JIFEN_<SERVICE>_SERVICE_TOKEN: a key of
    the k8s jifen-secrets, a required variable in compose) in every Deployment it runs in; the
    console is never given the admin token. (`jifen init` makes the credentials map from
    SERVICE_SCOPES: tests/unit/test_init.py.)"""
    from shared.settings import SERVICE_SCOPES

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    docs = rendered()
    secrets = generated(docs, "Secret", "jifen-secrets")
    tokens = {k for k in secrets["data"] if k.endswith("_SERVICE_TOKEN")}
    assert tokens == {f"JIFEN_{s.upper()}_SERVICE_TOKEN" for s in SERVICE_SCOPES}
    for caller in SERVICE_SCOPES:
        deployments = [
            d
            for d in docs
            if d["kind"] == "Deployment" and d["metadata"]["labels"]["service"] == caller
        ]
        assert deployments, caller
        for d in deployments:
            env = {
                e["name"]: e.get("valueFrom")
                for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
            }
            key = f"JIFEN_{caller.upper()}_SERVICE_TOKEN"
            ref = {"secretKeyRef": {"name": secrets["metadata"]["name"], "key": key}}
            assert env.get("JIFEN_SERVICE_TOKEN") == ref, d["metadata"]["name"]
        for name, entry in compose.items():
            command = " ".join(entry.get("command", []))
            if f"services.{caller}.main:app" in command or f"{caller}.main:app" in command:
                token = entry["environment"]["JIFEN_SERVICE_TOKEN"]
                assert f"JIFEN_{caller.upper()}_SERVICE_TOKEN:?" in token, name
    assert "JIFEN_ADMIN_TOKEN" not in compose["console"]["environment"]
    (console,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "console"
    ]
    container = console["spec"]["template"]["spec"]["containers"][0]
    assert all("secretRef" not in source for source in container["envFrom"])
    assert "JIFEN_ADMIN_TOKEN" not in {e["name"] for e in container["env"]}
