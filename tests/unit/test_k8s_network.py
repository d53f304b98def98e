"""Reachability through the rendered NetworkPolicies: each workload reaches what it uses and
nothing else. A small evaluator of the NetworkPolicy semantics (podSelector, namespaceSelector,
ipBlock, ports with names and ranges, policyTypes, matchLabels and matchExpressions) answers
"may A open a connection to B on port P": B's ingress policies and A's egress policies must both
allow it. What each workload uses comes from its own settings (every http:// and redis:// URL
in its environment, resolved through the Services), plus PostgreSQL and Kafka for every Jifen
process; the matrix between Jifen's pods must equal that, exactly.

PostgreSQL and Kafka are the operator's, in the namespace with the labels network.yaml names;
the other namespaces are the defaults of settings.yaml.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from tests.unit.test_k8s_kustomize import K8S, matches, of_kind, rendered, workloads

Doc = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    name: str
    namespace: str = ""
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ports: tuple[tuple[str | None, int, str], ...] = ()  # (name, number, protocol)
    ip: str | None = None  # set for an address outside the cluster

    def port_numbers(self, name: str, protocol: str) -> set[int]:
        return {n for port_name, n, proto in self.ports if port_name == name and proto == protocol}


class Network:
    def __init__(self, policies: list[Doc], namespace_labels: dict[str, dict[str, str]]):
        self.policies = policies
        self.namespace_labels = namespace_labels

    def ns_labels(self, namespace: str) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": namespace} | self.namespace_labels.get(namespace, {})

    @staticmethod
    def types(policy: Doc) -> list[str]:
        spec = policy["spec"]
        return spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in spec else [])]

    def selecting(self, pod: Endpoint, direction: str) -> list[Doc]:
        if pod.ip is not None:
            return []  # outside the cluster: no policy applies
        return [
            p
            for p in self.policies
            if p["metadata"]["namespace"] == pod.namespace
            and direction in self.types(p)
            and matches(p["spec"]["podSelector"], pod.labels)
        ]

    def peer_matches(self, peer: Doc, policy_namespace: str, other: Endpoint) -> bool:
        if "ipBlock" in peer:
            if other.ip is None:
                return (
                    False  # pod addresses: treated as never in an ipBlock (implementation-defined)
                )
            address = ipaddress.ip_address(other.ip)
            block = peer["ipBlock"]
            inside = address in ipaddress.ip_network(block["cidr"])
            excluded = any(address in ipaddress.ip_network(c) for c in block.get("except", []))
            return inside and not excluded
        if other.ip is not None:
            return False
        if "namespaceSelector" in peer:
            ns_ok = matches(peer["namespaceSelector"], self.ns_labels(other.namespace))
        else:
            ns_ok = other.namespace == policy_namespace
        return ns_ok and matches(peer.get("podSelector", {}), other.labels)

    @staticmethod
    def ports_match(ports: list[Doc] | None, target: Endpoint, port: int, protocol: str) -> bool:
        if not ports:
            return True
        for rule in ports:
            if rule.get("protocol", "TCP") != protocol:
                continue
            if "port" not in rule:
                return True
            value = rule["port"]
            if isinstance(value, str):
                if port in target.port_numbers(value, protocol):
                    return True
            elif value <= port <= int(rule.get("endPort") or value):
                return True
        return False

    def side_allows(
        self,
        direction: str,
        subject: Endpoint,
        other: Endpoint,
        target: Endpoint,
        port: int,
        protocol: str,
    ) -> bool:
        policies = self.selecting(subject, direction)
        if not policies:
            return True
        rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for policy in policies:
            for rule in policy["spec"].get(rules_key) or []:
                peers = rule.get(peers_key) or []
                if peers and not any(
                    self.peer_matches(p, policy["metadata"]["namespace"], other) for p in peers
                ):
                    continue
                if self.ports_match(rule.get("ports"), target, port, protocol):
                    return True
        return False

    def allows(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        return self.side_allows("Egress", src, dst, dst, port, protocol) and self.side_allows(
            "Ingress", dst, src, dst, port, protocol
        )


# --- the cluster as the kustomization and its prerequisites make it -------------------------


def settings() -> dict[str, str]:
    data: dict[str, str] = yaml.safe_load((K8S / "settings.yaml").read_text())["data"]
    return data


def pod_endpoints(docs: list[Doc]) -> dict[str, Endpoint]:
    pods = {}
    for doc, pod in workloads(docs):
        ports = tuple(
            (p.get("name"), p["containerPort"], p.get("protocol", "TCP"))
            for c in pod["spec"]["containers"]
            for p in c.get("ports", [])
        )
        pods[doc["metadata"]["name"]] = Endpoint(
            doc["metadata"]["name"], doc["metadata"]["namespace"], pod["metadata"]["labels"], ports
        )
    return pods


Cluster = tuple[Network, dict[str, Endpoint], dict[str, Endpoint]]


def build_cluster(docs: list[Doc]) -> Cluster:
    """The policies, Jifen's pods, and the other endpoints that matter around them."""
    [namespace] = of_kind(docs, "Namespace")
    jifen = pod_endpoints(docs)
    s = settings()
    others = {
        "postgres": Endpoint(
            "postgres", namespace, {"component": "postgres"}, ((None, 5432, "TCP"),)
        ),
        "kafka": Endpoint(
            "kafka", namespace, {"component": "kafka"}, ((None, 9092, "TCP"), (None, 9093, "TCP"))
        ),
        "kafka-peer": Endpoint("kafka-peer", namespace, {"component": "kafka"}),
        "postgres-peer": Endpoint("postgres-peer", namespace, {"component": "postgres"}),
        "dns": Endpoint(
            "dns", "kube-system", {"k8s-app": "kube-dns"}, ((None, 53, "UDP"), (None, 53, "TCP"))
        ),
        "prometheus": Endpoint("prometheus", s["monitoringNamespace"], {"app": "prometheus"}),
        "ingress": Endpoint("ingress", s["ingressControllerNamespace"], {"app": "controller"}),
        "keda": Endpoint("keda", s["kedaNamespace"], {"app": "keda-operator"}),
        # another namespace's pod wearing Jifen's labels: labels alone must not let it in
        "stranger": Endpoint(
            "stranger", "default", {"app": "jifen", "service": "console", "role": "api"}
        ),
        "apns": Endpoint("apns", ip="17.188.143.10"),
        "private": Endpoint("private", ip="10.1.2.3"),
    }
    return Network(list(of_kind(docs, "NetworkPolicy").values()), {}), jifen, others


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    return build_cluster(rendered())


URL = re.compile(r"\b(?:https?|redis)://([a-z0-9-]+):(\d+)")


def used(docs: list[Doc]) -> set[tuple[str, str, int]]:
    """(workload, workload, port) of every URL in a workload's environment, through its
    Service: what the code will connect to."""
    services = of_kind(docs, "Service")
    pods = {doc["metadata"]["name"]: pod for doc, pod in workloads(docs)}
    edges = set()
    for source, pod in pods.items():
        for container in pod["spec"]["containers"]:
            text = json.dumps([e.get("value", "") for e in container.get("env", [])])
            for host, port in URL.findall(text):
                service = services[host]  # a URL to no Service would be a bug of its own
                [entry] = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
                [target] = [
                    name
                    for name, p in pods.items()
                    if matches(
                        {"matchLabels": service["spec"]["selector"]}, p["metadata"]["labels"]
                    )
                ]
                ports = {
                    (p.get("name"), p["containerPort"])
                    for c in pods[target]["spec"]["containers"]
                    for p in c.get("ports", [])
                }
                [number] = [n for name, n in ports if entry["targetPort"] in (name, n)]
                edges.add((source, target, number))
    return edges


def is_process(pod: Endpoint) -> bool:
    return pod.labels.get("role") in ("api", "worker")


def test_between_jifen_pods_exactly_what_their_settings_use_is_open(cluster: Cluster) -> None:
    network, jifen, _ = cluster
    wanted = used(rendered())
    assert ("exchange-api", "rewards-ledger-api", 8003) in wanted  # the URLs were found
    assert ("engagement-worker", "valkey", 6379) in wanted
    assert ("console", "valkey", 6379) in wanted
    assert len({t for s, t, _ in wanted if s == "console" and t != "valkey"}) == 7  # every api
    opened = {
        (src.name, dst.name, number)
        for src in jifen.values()
        for dst in jifen.values()
        for _, number, protocol in dst.ports
        if src is not dst and network.allows(src, dst, number, protocol)
    }
    assert opened == wanted, {"open but unused": opened - wanted, "used but shut": wanted - opened}


def test_every_jifen_process_reaches_postgresql_kafka_and_dns(cluster: Cluster) -> None:
    network, jifen, other = cluster
    for pod in jifen.values():
        assert network.allows(pod, other["dns"], 53, "UDP"), pod.name
        assert network.allows(pod, other["dns"], 53, "TCP"), pod.name
        assert not network.allows(pod, other["dns"], 443), pod.name
        for store, port in (("postgres", 5432), ("kafka", 9092)):
            # Valkey is the only pod that needs neither
            assert network.allows(pod, other[store], port) == is_process(pod), (pod.name, store)
    assert network.allows(jifen["console"], other["postgres"], 5432)  # sessions, audit, migrations
    assert network.allows(jifen["console"], other["kafka"], 9092)  # consumer lag
    # the stores' own replicas reach each other (replication, the KRaft quorum)
    assert network.allows(other["kafka-peer"], other["kafka"], 9093)
    assert network.allows(other["postgres-peer"], other["postgres"], 5432)
    assert not network.allows(other["kafka-peer"], other["postgres"], 5432)


def test_from_other_namespaces_only_the_ingress_controller_prometheus_and_keda(
    cluster: Cluster,
) -> None:
    network, jifen, other = cluster
    for pod in jifen.values():
        for _, number, protocol in pod.ports:
            public = pod.labels.get("role") == "api"
            assert network.allows(other["ingress"], pod, number, protocol) == public, pod.name
            assert network.allows(other["prometheus"], pod, number, protocol) == is_process(pod)
            assert not network.allows(other["keda"], pod, number, protocol), pod.name
            assert not network.allows(other["stranger"], pod, number, protocol), pod.name
    assert network.allows(other["keda"], other["kafka"], 9092)  # it scales the workers on lag
    for outsider in ("ingress", "prometheus", "keda", "stranger"):
        assert not network.allows(other[outsider], other["postgres"], 5432), outsider
        if outsider != "keda":
            assert not network.allows(other[outsider], other["kafka"], 9092), outsider


def test_the_brief_s_matrix(cluster: Cluster) -> None:
    network, jifen, other = cluster
    allows = network.allows
    assert allows(jifen["exchange-api"], jifen["rewards-ledger-api"], 8003)
    assert allows(jifen["exchange-worker"], jifen["rewards-ledger-api"], 8003)
    assert allows(jifen["task-progress-api"], jifen["rewards-ledger-api"], 8003)
    assert allows(jifen["notifier-worker"], jifen["rewards-ledger-api"], 8003)
    assert allows(jifen["insights-worker"], jifen["rewards-ledger-api"], 8003)
    assert allows(jifen["insights-worker"], jifen["exchange-api"], 8004)
    assert allows(jifen["insights-worker"], jifen["task-progress-api"], 8002)
    assert allows(jifen["engagement-api"], jifen["valkey"], 6379)
    assert allows(jifen["console"], jifen["behavior-sensor-api"], 8001)
    assert allows(jifen["console"], jifen["valkey"], 6379)  # the shared sign-in throttle
    assert not allows(jifen["console"], jifen["rewards-ledger-worker"], 8003)
    assert not allows(jifen["engagement-api"], jifen["rewards-ledger-api"], 8003)
    assert not allows(jifen["behavior-sensor-api"], jifen["rewards-ledger-api"], 8003)
    assert not allows(jifen["exchange-api"], jifen["valkey"], 6379)
    assert not allows(jifen["rewards-ledger-api"], jifen["exchange-api"], 8004)
    assert not allows(other["stranger"], jifen["rewards-ledger-api"], 8003)


def test_only_the_notifier_s_dispatcher_leaves_the_cluster_and_only_to_443(
    cluster: Cluster,
) -> None:
    network, jifen, other = cluster
    for pod in jifen.values():
        dispatcher = pod.name == "notifier-worker"
        assert network.allows(pod, other["apns"], 443) == dispatcher, pod.name
        assert not network.allows(pod, other["apns"], 80), pod.name
        assert not network.allows(pod, other["private"], 443), pod.name


def test_the_evaluator_follows_the_networkpolicy_rules() -> None:
    """The semantics the matrix above relies on, on small cases with known answers."""

    def policy(spec: Doc, namespace: str = "a") -> Doc:
        return {"metadata": {"name": "p", "namespace": namespace}, "spec": spec}

    web = Endpoint("web", "a", {"app": "web"}, (("http", 8080, "TCP"),))
    client = Endpoint("client", "a", {"app": "client"})
    elsewhere = Endpoint("elsewhere", "b", {"app": "client"})
    # no policy selects web: everything reaches it
    assert Network([], {}).allows(elsewhere, web, 8080)
    # a podSelector-only peer is in the policy's namespace; policyTypes defaults to Ingress
    only_clients = policy(
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                    "ports": [{"port": "http"}],
                }
            ],
        }
    )
    net = Network([only_clients], {})
    assert net.allows(client, web, 8080) and not net.allows(elsewhere, web, 8080)
    assert not net.allows(client, web, 9090)  # a named port is the pod's, not any port
    # both selectors in one peer: AND; an empty from: everyone; no rules at all: no one
    both = policy(
        {
            "podSelector": {},
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "b"}
                            },
                            "podSelector": {
                                "matchExpressions": [
                                    {"key": "app", "operator": "NotIn", "values": ["web"]}
                                ]
                            },
                        }
                    ]
                }
            ],
        }
    )
    assert Network([both], {}).allows(elsewhere, web, 8080)
    assert not Network([both], {}).allows(client, web, 8080)
    assert Network([policy({"podSelector": {}, "ingress": [{}]})], {}).allows(elsewhere, web, 1)
    deny = policy({"podSelector": {}, "policyTypes": ["Ingress"]})
    assert not Network([deny], {}).allows(client, web, 8080)
    # egress: the source's policies; an ipBlock with holes; port ranges
    out = policy(
        {
            "podSelector": {"matchLabels": {"app": "client"}},
            "egress": [
                {
                    "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
                    "ports": [{"port": 8000, "endPort": 8100}],
                }
            ],
        }
    )
    net = Network([out], {})
    assert net.allows(client, Endpoint("x", ip="8.8.8.8"), 8080)
    assert not net.allows(client, Endpoint("x", ip="10.0.0.1"), 8080)
    assert not net.allows(client, Endpoint("x", ip="8.8.8.8"), 443)
    assert not net.allows(client, web, 8080)  # a pod is not in an ipBlock here
    # with egress rules and no policyTypes, the policy isolates both directions: nothing in
    assert not net.allows(web, client, 1)
    out["spec"]["policyTypes"] = ["Egress"]
    assert net.allows(web, client, 1) and not net.allows(client, web, 8080)
