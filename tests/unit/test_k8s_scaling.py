"""The production manifests let ops scale each service on its own (issue 25): every api
Deployment has a HorizontalPodAutoscaler, every worker a KEDA ScaledObject on its consumer
groups' lag capped at the partition count, every Deployment a PodDisruptionBudget, requests
and limits; the NetworkPolicies keep the console away from the data stores. Every core
object is validated offline against the Kubernetes schemas (kubernetes-validate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.suite import CONSUMER_GROUPS, SERVICES

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
VERSION = "1.31"


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


@pytest.mark.parametrize(
    "doc",
    [d for d in documents() if d["apiVersion"] != "keda.sh/v1alpha1"],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_every_object_is_valid_for_kubernetes(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_every_api_scales_on_cpu_and_every_worker_on_its_lag() -> None:
    deployments = by_kind("Deployment")
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind("HorizontalPodAutoscaler").values()
    }
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in by_kind("ScaledObject").values()}
    partitions = int(by_kind("ConfigMap")["jifen-config"]["data"]["JIFEN_KAFKA_TOPIC_PARTITIONS"])
    apis = [n for n, d in deployments.items() if d["metadata"]["labels"].get("role") == "api"]
    workers = [n for n, d in deployments.items() if d["metadata"]["labels"].get("role") == "worker"]
    assert len(workers) == len(SERVICES) and len(apis) == len(SERVICES) + 1  # + the console
    for name in apis:
        assert name in hpas, f"{name} has no HorizontalPodAutoscaler"
        assert hpas[name]["spec"]["minReplicas"] >= 2
    for name in workers:
        assert name in scaled, f"{name} has no ScaledObject"
        spec = scaled[name]["spec"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
        service = deployments[name]["metadata"]["labels"]["service"]
        watched = {
            (t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in spec["triggers"]
        }
        wanted = {
            (group, topic)
            for group, topics in CONSUMER_GROUPS.items()
            if group.startswith(f"jifen.{service}.")
            for topic in topics
        }
        assert wanted and watched == wanted, (name, watched ^ wanted)


def test_every_deployment_has_a_disruption_budget_and_resources() -> None:
    budgets = list(by_kind("PodDisruptionBudget").values())
    for name, deployment in by_kind("Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            b
            for b in budgets
            if all(labels.get(k) == v for k, v in b["spec"]["selector"]["matchLabels"].items())
        ]
        assert covering, f"{name} has no PodDisruptionBudget"
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            resources = container.get("resources", {})
            assert resources.get("requests", {}).get("cpu"), f"{name}: no CPU request"
            assert resources.get("limits", {}).get("memory"), f"{name}: no memory limit"


def test_the_console_cannot_reach_the_data_stores_and_workers_take_no_traffic() -> None:
    policies = by_kind("NetworkPolicy")
    stores = policies["jifen-data-stores"]["spec"]["ingress"][0]["from"][0]["podSelector"]
    excluded = next(e for e in stores["matchExpressions"] if e["operator"] == "NotIn")
    assert "console" in excluded["values"]
    workers = policies["jifen-workers"]["spec"]
    assert workers["podSelector"]["matchLabels"]["role"] == "worker"
    assert all("podSelector" not in peer for rule in workers["ingress"] for peer in rule["from"])
    apis = policies["jifen-apis"]["spec"]["ingress"][0]["from"]
    assert {"app": "jifen", "service": "console"} in [
        p.get("podSelector", {}).get("matchLabels") for p in apis
    ]
