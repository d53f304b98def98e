"""deploy/k8s as an operator applies it for the first time: `kubectl kustomize` renders it from
a fresh clone once secrets.env is copied from its example, and what comes out is what the API
server accepts and runs. Schemas are not enough (kubernetes-validate passes a container named
`rewards_ledger`, which the API server refuses), so this checks the rules behind them: names,
the "restricted" Pod Security profile, every Secret and ConfigMap reference (key included),
autoscaled Deployments without `replicas`, selectors that select, the settings in one place.
Reachability through the network policies: test_k8s_network.py; checkov: test_k8s_checkov.py.

Label values keep the services' Python names (`service: rewards_ledger`: underscores are valid
in label values, and they match the metrics, consumer groups and services/suite.py); object
and container names use hyphens (DNS-1123).

kubectl: tests/tools.py (PATH, else extracted once under .data/tools/kubectl/).
"""

from __future__ import annotations

import base64
import functools
import importlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.suite import SERVICES
from shared.settings import SERVICE_SCOPES
from tests.tools import kubectl

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TOOLS = ROOT / ".data" / "tools"
SCHEMA_VERSION = "1.32"
USER = 10001  # the image's user and group (Dockerfile: USER 10001:10001)
# what the committed push/ folder holds; anything else there is an operator's key file
PUSH_COMMITTED = {".gitignore", "README.md", "kustomization.yaml"}

Doc = dict[str, Any]


# --- rendering ------------------------------------------------------------------------------


def _committed_only(folder: str, names: list[str]) -> set[str]:
    """What a fresh clone would not have: the operator's secrets.env and push key files."""
    here = Path(folder)
    if here == K8S:
        return {"secrets.env"} & set(names)
    if here == K8S / "push":
        return set(names) - PUSH_COMMITTED
    return set()


def render(edit: Callable[[Path], None] | None = None, secrets_env: str | None = None) -> list[Doc]:
    """`kubectl kustomize` of a copy of deploy/k8s as a fresh clone has it, with secrets.env
    copied from secrets.env.example (or `secrets_env`), after `edit(copy)`."""
    with tempfile.TemporaryDirectory(prefix="jifen-k8s-") as tmp:
        tree = Path(tmp) / "k8s"
        shutil.copytree(K8S, tree, ignore=_committed_only)
        if secrets_env is None:
            secrets_env = (tree / "secrets.env.example").read_text()
        (tree / "secrets.env").write_text(secrets_env)
        if edit is not None:
            edit(tree)
        done = subprocess.run(
            [str(kubectl()), "kustomize", str(tree)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, f"kubectl kustomize deploy/k8s: {done.stderr}"
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@functools.cache
def _rendered() -> tuple[Doc, ...]:
    return tuple(render())


def rendered() -> list[Doc]:
    return list(_rendered())


def of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def generated(docs: list[Doc], kind: str, name: str) -> Doc:
    """A generated ConfigMap or Secret by its name before kustomize's hash suffix."""
    [found] = [
        d
        for d in docs
        if d["kind"] == kind and re.fullmatch(rf"{name}-[a-z0-9]{{10}}", d["metadata"]["name"])
    ]
    return found


def secret_values(secret: Doc) -> dict[str, str]:
    values = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return values | dict(secret.get("stringData") or {})


def workloads(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(object, pod template) of every object that makes pods."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            yield doc, doc["spec"]["template"]
        elif doc["kind"] == "CronJob":
            yield doc, doc["spec"]["jobTemplate"]["spec"]["template"]
        elif doc["kind"] == "Pod":
            yield doc, doc


def containers(pod_spec: Doc) -> list[Doc]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def matches(selector: Doc, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels AND matchExpressions; {} = all)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        assert op in ("In", "NotIn", "Exists", "DoesNotExist"), op
    return True


def kustomization() -> Doc:
    loaded: Doc = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return loaded


# --- what comes out -------------------------------------------------------------------------


def test_renders_from_a_fresh_clone_into_one_namespace_with_one_image_setting() -> None:
    docs = rendered()
    namespace = kustomization()["namespace"]
    [ns] = of_kind(docs, "Namespace").values()
    assert ns["metadata"]["name"] == namespace
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, doc["metadata"]["name"]
    # the image and its tag are set once, in kustomization.yaml: the manifests name no tag
    [jifen] = [i for i in kustomization()["images"] if i["name"] == "jifen"]
    wanted = f"{jifen['newName']}:{jifen['newTag']}"
    for path in K8S.glob("*.yaml"):
        for tagged in re.findall(r"image: (\S+)", path.read_text()):
            assert ":" not in tagged and "@" not in tagged, f"{path.name}: {tagged}"
    images = [c["image"] for _, pod in workloads(docs) for c in containers(pod["spec"])]
    assert images.count(wanted) == 2 * len(SERVICES) + 1  # api + worker each, the console
    for image in images:
        assert re.search(r":[\w.-]+$|@sha256:", image) and not image.endswith(":latest"), image


def test_every_object_passes_the_kubernetes_schema() -> None:
    errors = []
    for doc in rendered():
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: test_k8s_scaling.py checks what KEDA reads
        try:
            kubernetes_validate.validate(doc, SCHEMA_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)


DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
SUBDOMAIN = re.compile(rf"{DNS1123_LABEL.pattern}(\.{DNS1123_LABEL.pattern})*")
NAME_PART = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
DATA_KEY = re.compile(r"[-._a-zA-Z0-9]+")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_label(name: str) -> bool:
    return len(name) <= 63 and DNS1123_LABEL.fullmatch(name) is not None


def is_subdomain(name: str) -> bool:
    return len(name) <= 253 and SUBDOMAIN.fullmatch(name) is not None


def is_qualified_name(key: str) -> bool:
    """A label or annotation key: [DNS subdomain prefix /] name of 63 at most."""
    prefix, _, name = key.rpartition("/")
    if prefix and not is_subdomain(prefix):
        return False
    return len(name) <= 63 and NAME_PART.fullmatch(name) is not None


def is_label_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and NAME_PART.fullmatch(value) is not None)


def is_port_name(name: str) -> bool:
    return (
        len(name) <= 15
        and PORT_NAME.fullmatch(name) is not None
        and "--" not in name
        and re.search("[a-z]", name) is not None
    )


def label_maps(doc: Doc) -> Iterator[tuple[str, dict[str, str]]]:
    yield "labels", doc["metadata"].get("labels") or {}
    if doc["kind"] != "Pod":
        for _, pod in workloads([doc]):
            yield "template labels", pod["metadata"].get("labels") or {}
    spec = doc.get("spec") or {}
    selector = spec.get("selector")
    if isinstance(selector, dict):
        yield "selector", selector if doc["kind"] == "Service" else selector.get("matchLabels", {})


def selectors(doc: Doc) -> Iterator[Doc]:
    """Every label selector of an object, a NetworkPolicy's peers included."""
    spec = doc.get("spec") or {}
    if doc["kind"] == "NetworkPolicy":
        yield spec["podSelector"]
        for rule in [*spec.get("ingress", []), *spec.get("egress", [])]:
            for peer in [*rule.get("from", []), *rule.get("to", [])]:
                yield from (peer[k] for k in ("podSelector", "namespaceSelector") if k in peer)
    elif isinstance(spec.get("selector"), dict) and doc["kind"] != "Service":
        yield spec["selector"]


def test_every_name_key_and_label_is_valid_for_the_api_server() -> None:
    bad: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            bad.append(what)

    for doc in rendered():
        kind, name = doc["kind"], doc["metadata"]["name"]
        where = f"{kind}/{name}"
        if kind == "Service":
            check(len(name) <= 63 and DNS1035_LABEL.fullmatch(name) is not None, where)
        elif kind in ("Namespace", "Deployment"):
            check(is_label(name), where)  # a Deployment's name starts its pods' host names
        else:
            check(is_subdomain(name), where)
        for key in doc["metadata"].get("annotations") or {}:
            check(is_qualified_name(key), f"{where}: annotation {key}")
        for what, labels in label_maps(doc):
            for key, value in labels.items():
                check(is_qualified_name(key), f"{where}: {what} key {key}")
                check(is_label_value(str(value)), f"{where}: {what} {key}={value}")
        for selector in selectors(doc):
            for key, value in (selector.get("matchLabels") or {}).items():
                check(is_qualified_name(key) and is_label_value(value), f"{where}: {key}")
            for expr in selector.get("matchExpressions") or []:
                check(is_qualified_name(expr["key"]), f"{where}: {expr['key']}")
                for value in expr.get("values") or []:
                    check(is_label_value(value), f"{where}: {expr['key']} {value}")
        if kind in ("Secret", "ConfigMap"):
            for key in [*(doc.get("data") or {}), *(doc.get("stringData") or {})]:
                check(len(key) <= 253 and DATA_KEY.fullmatch(key) is not None, f"{where}: {key}")
        if kind == "Service":
            for port in doc["spec"]["ports"]:
                check(is_port_name(port.get("name", "x")), f"{where}: port {port}")
    for doc, pod in workloads(rendered()):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        for volume in pod["spec"].get("volumes", []):
            check(is_label(volume["name"]), f"{where}: volume {volume['name']}")
        for container in containers(pod["spec"]):
            check(is_label(container["name"]), f"{where}: container {container['name']}")
            for port in container.get("ports", []):
                check("name" not in port or is_port_name(port["name"]), f"{where}: {port}")
            for env in container.get("env", []):
                check(ENV_NAME.fullmatch(env["name"]) is not None, f"{where}: {env['name']}")
    assert not bad, "refused by the API server:\n" + "\n".join(bad)


ALLOWED_VOLUMES = {"emptyDir", "secret", "configMap", "projected", "downwardAPI", "csi"}


def restricted_violations(pod_spec: Doc) -> list[str]:
    """What the "restricted" Pod Security profile (and this project's stricter wish: the
    image's user, read-only root, no token) finds wrong with one pod spec."""
    out = []
    context = pod_spec.get("securityContext") or {}
    wanted = {"runAsNonRoot": True, "runAsUser": USER, "runAsGroup": USER, "fsGroup": USER}
    for key, value in wanted.items():
        if context.get(key) != value:
            out.append(f"pod securityContext.{key} = {context.get(key)!r}, not {value!r}")
    if (context.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        out.append("pod seccompProfile is not RuntimeDefault")
    if pod_spec.get("automountServiceAccountToken") is not False:
        out.append("a service-account token is mounted")
    if pod_spec.get("serviceAccountName", "default") == "default":
        out.append("runs as the default service account")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(key):
            out.append(key)
    for volume in pod_spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            out.append(f"volume {volume['name']}: {kinds}")
    for container in containers(pod_spec):
        name = container["name"]
        sc = container.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation is not false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            out.append(f"{name}: capabilities are not all dropped")
        if set((sc.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: adds capabilities")
        if sc.get("readOnlyRootFilesystem") is not True:
            out.append(f"{name}: the root filesystem is writable")
        if sc.get("privileged") or sc.get("runAsNonRoot") is False or sc.get("runAsUser") == 0:
            out.append(f"{name}: privileged or root")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            out.append(f"{name}: seccomp Unconfined")
        if any("hostPort" in port for port in container.get("ports", [])):
            out.append(f"{name}: hostPort")
    return out


def test_every_pod_meets_the_restricted_pod_security_profile() -> None:
    problems = {}
    volumes_of = {}
    for doc, pod in workloads(rendered()):
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if found := restricted_violations(pod["spec"]):
            problems[name] = found
        volumes_of[name] = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        for container in containers(pod["spec"]):
            if container["image"].split(":")[0].endswith("jifen"):
                # the app writes /tmp only: a writable scratch there, on a read-only root
                [tmp] = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
                assert "emptyDir" in volumes_of[name][tmp["name"]], name
    assert not problems, json.dumps(problems, indent=1)
    assert len(volumes_of) == 2 * len(SERVICES) + 2  # + the console and Valkey


def test_the_profile_check_catches_what_the_api_server_would_refuse() -> None:
    """The checker above is only as good as what it catches: the manifests as they were
    before this kustomization (no securityContext) fail it."""
    bare = {"containers": [{"name": "rewards-ledger", "image": "jifen"}]}
    found = " ".join(restricted_violations(bare))
    for expected in ("runAsNonRoot", "seccompProfile", "allowPrivilegeEscalation", "dropped"):
        assert expected in found
    assert not is_label("rewards_ledger") and is_label_value("rewards_ledger")
    assert not is_port_name("a-very-long-port-name") and is_port_name("http")


def references(pod_spec: Doc) -> Iterator[tuple[str, str, str | None, bool]]:
    """(kind, name, key or None, optional) of every ConfigMap, Secret and ServiceAccount a pod
    spec needs."""
    yield "ServiceAccount", pod_spec.get("serviceAccountName", "default"), None, False
    for container in containers(pod_spec):
        for source in container.get("envFrom", []):
            for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if field in source:
                    ref = source[field]
                    yield kind, ref["name"], None, bool(ref.get("optional"))
        for env in container.get("env", []):
            value_from = env.get("valueFrom") or {}
            for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if field in value_from:
                    ref = value_from[field]
                    yield kind, ref["name"], ref["key"], bool(ref.get("optional"))
    for volume in pod_spec.get("volumes", []):
        if "secret" in volume:
            ref = volume["secret"]
            yield "Secret", ref["secretName"], None, bool(ref.get("optional"))
        if "configMap" in volume:
            ref = volume["configMap"]
            yield "ConfigMap", ref["name"], None, bool(ref.get("optional"))
        for source in (volume.get("projected") or {}).get("sources", []):
            for field, kind in (("secret", "Secret"), ("configMap", "ConfigMap")):
                if field in source:
                    ref = source[field]
                    yield kind, ref["name"], None, bool(ref.get("optional"))
    for pull in pod_spec.get("imagePullSecrets", []):
        yield "Secret", pull["name"], None, False


def test_every_secret_and_config_map_a_pod_reads_is_defined_with_its_keys() -> None:
    docs = rendered()
    defined: dict[tuple[str, str], set[str]] = {("ServiceAccount", "default"): set()}
    for doc in docs:
        keys = {*(doc.get("data") or {}), *(doc.get("stringData") or {})}
        defined[doc["kind"], doc["metadata"]["name"]] = keys | set(doc.get("binaryData") or {})
    missing = []
    for doc, pod in workloads(docs):
        for kind, name, key, optional in references(pod["spec"]):
            where = f"{doc['metadata']['name']} -> {kind}/{name}" + (f"[{key}]" if key else "")
            if (kind, name) not in defined:
                missing.append(where)  # even an optional reference names something defined
            elif key is not None and key not in defined[kind, name] and not optional:
                missing.append(where)
    assert not missing, "\n".join(missing)
    # the generators ran: every pod reads the hashed names, so a change rolls them out
    config = generated(docs, "ConfigMap", "jifen-config")["metadata"]["name"]
    secrets = generated(docs, "Secret", "jifen-secrets")["metadata"]["name"]
    generated(docs, "Secret", "jifen-push")
    names = {n for _, pod in workloads(docs) for _, n, _, _ in references(pod["spec"])}
    assert {config, secrets} <= names


def test_no_container_gets_a_secret_it_does_not_use() -> None:
    """Secrets are taken key by key: never the whole jifen-secrets (every caller's token, the
    console's operators) through envFrom; the console has no admin token; each caller
    presents its own credential."""
    for doc, pod in workloads(rendered()):
        labels = pod["metadata"]["labels"]
        for container in containers(pod["spec"]):
            assert all("secretRef" not in s for s in container.get("envFrom", [])), doc
            refs = {
                e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
                for e in container.get("env", [])
                if "secretKeyRef" in (e.get("valueFrom") or {})
            }
            for name, key in refs.items():
                assert name == key or name == "JIFEN_SERVICE_TOKEN", (doc, name, key)
            if "JIFEN_SERVICE_TOKEN" in refs:
                assert (
                    refs["JIFEN_SERVICE_TOKEN"]
                    == f"JIFEN_{labels['service'].upper()}_SERVICE_TOKEN"
                )
            if labels.get("service") == "console":
                assert "JIFEN_ADMIN_TOKEN" not in refs


def test_autoscaled_deployments_leave_the_replica_count_to_their_autoscaler() -> None:
    docs = rendered()
    deployments = of_kind(docs, "Deployment")
    targets = {}
    for hpa in of_kind(docs, "HorizontalPodAutoscaler").values():
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["name"] in deployments, ref
        targets[ref["name"]] = hpa["metadata"]["name"]
    for scaled in of_kind(docs, "ScaledObject").values():
        ref = scaled["spec"]["scaleTargetRef"]
        assert ref.get("kind", "Deployment") == "Deployment" and ref["name"] in deployments, ref
        assert ref["name"] not in targets, f"{ref['name']}: two autoscalers"
        targets[ref["name"]] = scaled["metadata"]["name"]
    for name, deployment in deployments.items():
        if deployment["spec"]["template"]["metadata"]["labels"].get("role") in ("api", "worker"):
            assert name in targets, f"{name} has no autoscaler"
        if name in targets:
            assert "replicas" not in deployment["spec"], f"{name}: each apply would reset it"
        else:
            assert deployment["spec"].get("replicas", 1) >= 1


def test_services_and_budgets_select_pods_and_ports_that_exist() -> None:
    docs = rendered()
    pods = [pod for _, pod in workloads(docs)]
    for service in of_kind(docs, "Service").values():
        chosen = [
            p
            for p in pods
            if matches({"matchLabels": service["spec"]["selector"]}, p["metadata"]["labels"])
        ]
        assert len(chosen) == 1, f"Service {service['metadata']['name']} selects {len(chosen)}"
        ports = {
            p.get("name"): p["containerPort"]
            for c in chosen[0]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in ports or target in ports.values(), (service["metadata"], port)
    for budget in of_kind(docs, "PodDisruptionBudget").values():
        chosen = [p for p in pods if matches(budget["spec"]["selector"], p["metadata"]["labels"])]
        assert len(chosen) == 1, f"PodDisruptionBudget {budget['metadata']['name']}"
    for doc, pod in workloads(docs):
        assert matches(doc["spec"]["selector"], pod["metadata"]["labels"]), doc["metadata"]


def test_the_push_component_fills_the_secret_the_notifier_mounts() -> None:
    def enable_push(tree: Path) -> None:
        (tree / "push" / "AuthKey.p8").write_text("-----BEGIN PRIVATE KEY-----\n")
        (tree / "push" / "service-account.json").write_text("{}\n")
        text = (tree / "kustomization.yaml").read_text()
        enabled = text.replace("  # - push", "  - push")
        assert enabled != text, "kustomization.yaml: no `# - push` line to uncomment"
        (tree / "kustomization.yaml").write_text(enabled)

    docs = render(enable_push)
    push = generated(docs, "Secret", "jifen-push")
    assert set(push["data"]) == {"AuthKey.p8", "service-account.json"}
    worker = of_kind(docs, "Deployment")["notifier-worker"]["spec"]["template"]["spec"]
    [volume] = [v for v in worker["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == push["metadata"]["name"]
    [container] = worker["containers"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    for variable in ("JIFEN_APNS_KEY_PATH", "JIFEN_FCM_SERVICE_ACCOUNT_PATH"):
        assert Path(env[variable]).parent == Path(mount["mountPath"])
        assert Path(env[variable]).name in push["data"]


def test_the_settings_are_edited_in_one_place() -> None:
    """The namespace, and the namespaces of the ingress controller, Prometheus and KEDA, each
    set once, land everywhere they are used."""

    def move(tree: Path) -> None:
        text = (tree / "kustomization.yaml").read_text()
        (tree / "kustomization.yaml").write_text(
            text.replace("\nnamespace: jifen\n", "\nnamespace: points\n")
        )
        settings = (tree / "settings.yaml").read_text()
        for old, new in (("ingress-nginx", "edge"), ("monitoring", "obs"), ("keda", "autoscale")):
            settings = re.sub(rf"(Namespace: ){old}\n", rf"\g<1>{new}\n", settings)
        (tree / "settings.yaml").write_text(settings)

    docs = render(move)
    assert {d["metadata"].get("namespace", "points") for d in docs} == {"points"}
    assert set(of_kind(docs, "Namespace")) == {"points"}
    bootstrap = generated(docs, "ConfigMap", "jifen-config")["data"]["JIFEN_KAFKA_BOOTSTRAP"]
    assert bootstrap == "kafka.points.svc:9092"
    for scaled in of_kind(docs, "ScaledObject").values():
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["metadata"]["bootstrapServers"] == bootstrap
    namespaces = set()
    for policy in of_kind(docs, "NetworkPolicy").values():
        for rule in [*policy["spec"].get("ingress", []), *policy["spec"].get("egress", [])]:
            for peer in [*rule.get("from", []), *rule.get("to", [])]:
                labels = (peer.get("namespaceSelector") or {}).get("matchLabels") or {}
                namespaces.add(labels.get("kubernetes.io/metadata.name"))
    assert namespaces == {None, "edge", "obs", "autoscale", "kube-system"}


def test_a_secrets_env_from_jifen_init_starts_every_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the file `jifen init --target k8s` writes, each container's environment (its
    ConfigMap, its secret keys, its own values) passes its process's settings, prod checks
    included: no placeholder, the JSON values parse, each caller's token is its credential."""
    from cli.init import generate
    from cli.init import render as env_file

    values = generate("k8s", "admin", "a-long-enough-password", ["app"])
    docs = render(secrets_env=env_file(values, "k8s"))
    config = generated(docs, "ConfigMap", "jifen-config")
    secrets = secret_values(generated(docs, "Secret", "jifen-secrets"))
    credentials = json.loads(secrets["JIFEN_SERVICE_CREDENTIALS"])
    for doc, pod in workloads(docs):
        [container] = pod["spec"]["containers"]
        service = pod["metadata"]["labels"]["service"]
        if service == "valkey":
            continue
        env = dict(config["data"])
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            elif (
                "secretKeyRef" in item["valueFrom"]
                and item["valueFrom"]["secretKeyRef"]["key"] in secrets
            ):
                env[item["name"]] = secrets[item["valueFrom"]["secretKeyRef"]["key"]]
        module = "console.settings" if service == "console" else f"services.{service}.settings"
        settings_class = importlib.import_module(module).Settings
        with monkeypatch.context() as patch:
            for name in [n for n in os.environ if n.startswith("JIFEN_")]:
                patch.delenv(name)
            for name, value in env.items():
                patch.setenv(name, value)
            settings = settings_class(_env_file=None)
        assert settings.env == "prod"
        token = settings.service_token.get_secret_value()
        assert bool(token) == (service in SERVICE_SCOPES), doc["metadata"]["name"]
        if token:
            assert credentials[token]["service"] == service, doc["metadata"]["name"]
        if service == "notifier":  # the log provider's file: the root filesystem is read-only
            assert Path(settings.log_path).is_relative_to("/tmp"), settings.log_path
