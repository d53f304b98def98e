"""The production manifests let ops scale each service on its own (issue 25): every api
Deployment has a HorizontalPodAutoscaler, every worker a KEDA ScaledObject on its consumer
groups' lag capped at the partition count, every Deployment a PodDisruptionBudget, requests
and limits. Checked on what `kubectl kustomize deploy/k8s` renders (test_k8s_kustomize.py:
schemas, names, security, references; test_k8s_network.py: who reaches whom)."""

from __future__ import annotations

from typing import Any

from services.suite import CONSUMER_GROUPS, SERVICES
from tests.unit.test_k8s_kustomize import generated, matches, of_kind, rendered


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return of_kind(rendered(), kind)


def test_every_api_scales_on_cpu_and_every_worker_on_its_lag() -> None:
    deployments = by_kind("Deployment")
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind("HorizontalPodAutoscaler").values()
    }
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in by_kind("ScaledObject").values()}
    config = generated(rendered(), "ConfigMap", "jifen-config")
    partitions = int(config["data"]["JIFEN_KAFKA_TOPIC_PARTITIONS"])
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


def test_no_disruption_budget_blocks_a_drain_at_the_minimum_scale() -> None:
    """At its autoscaler's minimum, each Deployment can still lose a pod to a drain: a
    budget of minAvailable 1 over a worker KEDA runs once would refuse every eviction."""
    minimum = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"]["minReplicas"]
        for h in by_kind("HorizontalPodAutoscaler").values()
    } | {
        s["spec"]["scaleTargetRef"]["name"]: s["spec"]["minReplicaCount"]
        for s in by_kind("ScaledObject").values()
    }
    for name, deployment in by_kind("Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        [budget] = [
            b
            for b in by_kind("PodDisruptionBudget").values()
            if matches(b["spec"]["selector"], labels)
        ]
        floor = minimum.get(name, deployment["spec"].get("replicas", 1))
        allowed = (
            floor - budget["spec"]["minAvailable"]
            if "minAvailable" in budget["spec"]
            else budget["spec"]["maxUnavailable"]
        )
        assert allowed >= 1, f"{name}: a drain could never evict its last pods"
