"""`jifen init`: every secret of a first production run, generated into one env file.

    jifen init                                              # .env, read by docker compose
    jifen init --target k8s --env-file deploy/k8s/secrets.env

It imports the standard library, typer and pydantic (via the service scopes and the console's
password hashing) and nothing of the dev stack, so it runs inside the production image too:
`docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/out" jifen jifen init --env-file /out/.env`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer

from console.passwords import PasswordHash
from shared.settings import SERVICE_SCOPES

Target = Literal["compose", "k8s"]
MIN_PASSWORD = 12  # what `python -m console.passwords` asks of a password
# an admin name goes into JSON that both env-file parsers must take verbatim: no quotes,
# backslashes, `$`, `#` or spaces
_NAME = re.compile(r"^[\w.@-]{1,64}$")
_PLAIN = re.compile(r"^[A-Za-z0-9_.:/@+-]*$")
_KEY_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def service_token_variable(service: str) -> str:
    """JIFEN_EXCHANGE_SERVICE_TOKEN etc.: what compose and the k8s Secret hand each caller as
    its JIFEN_SERVICE_TOKEN."""
    return f"JIFEN_{service.upper()}_SERVICE_TOKEN"


def _token() -> str:
    return secrets.token_urlsafe(32)  # 43 characters, URL- and shell-safe


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def generate(
    target: Target, admin_user: str, admin_password: str, ingest_sources: list[str]
) -> dict[str, str]:
    """The variables of the env file, every secret fresh from `secrets`."""
    postgres_password = secrets.token_urlsafe(24)
    tokens = {service: _token() for service in SERVICE_SCOPES}
    values = {
        "POSTGRES_PASSWORD": postgres_password,
        "JIFEN_ADMIN_TOKEN": _token(),
        "JIFEN_JWT_SECRET": secrets.token_urlsafe(48),
        "JIFEN_INGEST_KEYS": _json({_token(): ingest_sources}),
        **{service_token_variable(s): token for s, token in tokens.items()},
        "JIFEN_SERVICE_CREDENTIALS": _json(
            {
                token: {"service": service, "scopes": list(SERVICE_SCOPES[service])}
                for service, token in tokens.items()
            }
        ),
        "JIFEN_CONSOLE_SECRET": secrets.token_urlsafe(48),
        "JIFEN_CONSOLE_USERS": _json(
            {
                admin_user: {
                    "role": "admin",
                    "password_hash": PasswordHash.create(admin_password).encode(),
                }
            }
        ),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(24),
    }
    if target == "k8s":
        # compose builds this URL from POSTGRES_PASSWORD itself; the k8s Secret carries it whole
        values["JIFEN_DATABASE_URL"] = (
            f"postgresql://jifen:{postgres_password}@postgres:5432/postgres"
        )
    return values


def quote(value: str, target: Target) -> str:
    """How a value is written so that its reader gets it back verbatim. kustomize's env files
    take everything after the first `=` literally (quotes included); docker compose expands `$`
    in bare and double-quoted values (a password hash is full of them) and takes single-quoted
    ones literally."""
    if "\n" in value or "\r" in value or value != value.strip():
        raise ValueError("a value must be one line without surrounding spaces")
    if target == "k8s" or _PLAIN.match(value):
        return value
    if "'" in value:
        raise ValueError("a single quote cannot be written in a compose env file")
    return f"'{value}'"


def render(values: dict[str, str], target: Target) -> str:
    reader = (
        "kustomize's secretGenerator (deploy/k8s/kustomization.yaml)"
        if target == "k8s"
        else "docker compose (interpolated into docker-compose.yml)"
    )
    lines = [
        f"# Written by `jifen init --target {target}` at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"# for {reader}.",
        "# Secrets: keep this file private (mode 0600) and out of version control.",
        "# Optional variables to add yourself (push, timezone...): see "
        + ("deploy/k8s/secrets.env.example." if target == "k8s" else ".env.example."),
    ]
    lines += [f"{name}={quote(value, target)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def _names_in(path: Path) -> list[str]:
    """The variable names an existing env file sets (never its values)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [m.group(1) for line in text.splitlines() if (m := _KEY_LINE.match(line))]


def write_private(path: Path, text: str, *, replace: bool) -> None:
    """Write `text` to `path` with mode 0600 from the first byte. Without `replace` an existing
    file is refused atomically (O_EXCL); with it a finished file is swapped in whole, so a
    failed write leaves no half of the secrets behind."""
    if replace:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        written = Path(temporary)
    else:
        fd, written = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), path
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)  # whatever the umask
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(written, path)
    except BaseException:
        written.unlink(missing_ok=True)
        raise


def _admin_password(from_stdin: bool) -> tuple[str, bool]:
    """The console admin's password and whether it was generated (then it is printed)."""
    if not from_stdin:
        return secrets.token_urlsafe(18), True
    line = sys.stdin.readline().rstrip("\r\n")
    if len(line) < MIN_PASSWORD:
        raise typer.BadParameter(
            f"the password read from stdin must have at least {MIN_PASSWORD} characters",
            param_hint="--admin-password-stdin",
        )
    from console.settings import DEV_CONSOLE_PASSWORD

    if line == DEV_CONSOLE_PASSWORD:
        raise typer.BadParameter(
            "that is the dev password, refused in prod", param_hint="--admin-password-stdin"
        )
    return line, False


def _still_to_supply(target: Target, env_file: Path) -> list[str]:
    """What only the operator can give: push credentials and where alerts go."""
    example = "deploy/k8s/secrets.env.example" if target == "k8s" else ".env.example"
    lines = [
        f"Still to supply yourself (optional; the variables go into {env_file}, {example} "
        "documents each):",
        "  push: until then the notifier only logs what it would send.",
        "    iOS: JIFEN_IOS_PROVIDER=apns, JIFEN_APNS_TEAM_ID, JIFEN_APNS_KEY_ID, JIFEN_APNS_TOPIC",
        "    Android / web: JIFEN_ANDROID_PROVIDER=fcm, JIFEN_WEB_PROVIDER=fcm, JIFEN_FCM_PROJECT_ID",
        "    key files: AuthKey.p8 (APNs) and service-account.json (FCM) into deploy/k8s/push/",
    ]
    if target == "k8s":
        lines += [
            "      then enable the `push` component in deploy/k8s/kustomization.yaml "
            "(deploy/k8s/push/README.md)",
            "  alerting: load deploy/prometheus/alerts.yml into your Prometheus and give your "
            "Alertmanager its receivers",
            "  before applying: the image, namespaces, PostgreSQL and Kafka "
            "(deploy/k8s/kustomization.yaml's header)",
        ]
    else:
        lines += [
            "      (docker compose mounts it into the notifier; readable by uid 10001)",
            "  alerting: the webhook URL every alert goes to (and SMTP, WeCom, DingTalk "
            "credentials) as files in deploy/alertmanager/secrets/ (its README)",
        ]
    return lines


def init(
    env_file: Annotated[
        Path, typer.Option("--env-file", help="where to write the variables")
    ] = Path(".env"),
    target: Annotated[
        Target,
        typer.Option(
            help="compose: .env for docker compose; k8s: deploy/k8s/secrets.env for kustomize "
            "(also writes JIFEN_DATABASE_URL)"
        ),
    ] = "compose",
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="replace an existing file: every secret in it changes, nothing is kept"
        ),
    ] = False,
    admin_user: Annotated[str, typer.Option(help="the first console operator (role admin)")] = (
        "admin"
    ),
    admin_password_stdin: Annotated[
        bool,
        typer.Option(
            "--admin-password-stdin",
            help="read the admin's password from the first line of stdin instead of generating one",
        ),
    ] = False,
    ingest_source: Annotated[
        list[str] | None,
        typer.Option(
            help="the upstream source the generated ingest key may publish for (repeatable; "
            '"*" = any)'
        ),
    ] = None,
) -> None:
    """Write the secrets of a first production run into an env file (mode 0600).

    Generated: the database password, admin token, JWT secret, an ingest key, each calling
    service's token and credential, the console's secret and first admin, Grafana's admin
    password. An existing file is never overwritten without --force."""
    if not _NAME.match(admin_user):
        raise typer.BadParameter(
            "letters, digits and . _ @ - only (1-64)", param_hint="--admin-user"
        )
    sources = ingest_source or ["app"]
    for source in sources:
        if not (source == "*" or _NAME.match(source)):
            raise typer.BadParameter(
                f"{source!r}: letters, digits and . _ @ - only (1-64), or *",
                param_hint="--ingest-source",
            )
    existing = env_file.exists()
    if existing and not force:
        typer.echo(
            f"error: {env_file} exists; jifen init does not overwrite secrets that may be in "
            "use (--force replaces every one of them)",
            err=True,
        )
        raise typer.Exit(1)
    if existing and env_file.is_dir():
        typer.echo(f"error: {env_file} is a directory", err=True)
        raise typer.Exit(1)
    old_names = _names_in(env_file) if existing else []

    password, generated = _admin_password(admin_password_stdin)
    values = generate(target, admin_user, password, sources)
    try:
        write_private(env_file, render(values, target), replace=force)
    except FileExistsError:
        typer.echo(f"error: {env_file} appeared meanwhile; left untouched", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"error: cannot write {env_file}: {exc}", err=True)
        if isinstance(exc, PermissionError):
            typer.echo(
                "  (from the image, run it as the owner of the folder: docker run --rm "
                '--user "$(id -u):$(id -g)" -v "$PWD:/out" jifen jifen init --env-file /out/.env)',
                err=True,
            )
        raise typer.Exit(1) from None

    echo = typer.echo
    echo(f"wrote {env_file} (mode 0600): {len(values)} variables for {target}")
    if existing:
        dropped = sorted(set(old_names) - set(values))
        echo(f"--force: the old {env_file} is gone; every secret above is new, none was kept:")
        echo("  restart every service with the new file; give upstreams the new ingest key;")
        echo("  the console's operators are now just the admin below.")
        echo(
            "  PostgreSQL keeps the password its data volume was created with: on an existing "
            "volume set the new POSTGRES_PASSWORD there (ALTER USER jifen PASSWORD ...) or the "
            "services cannot connect."
        )
        if dropped:
            echo(f"  dropped (not written by jifen init; add them again): {', '.join(dropped)}")
    if generated:
        echo(
            f"console admin {admin_user!r}, password (shown once, only its hash is stored): "
            f"{password}"
        )
    else:
        echo(
            f"console admin {admin_user!r}: the password read from stdin (only its hash is stored)"
        )
    echo(
        f"ingest key for source(s) {', '.join(sources)}: the key of JIFEN_INGEST_KEYS in "
        f"{env_file} (the upstream sends it as X-Api-Key)"
    )
    echo("")
    for line in _still_to_supply(target, env_file):
        echo(line)
    echo("")
    here = env_file.resolve().parent == Path.cwd().resolve()
    if target == "k8s":
        echo("Next: kubectl apply -k deploy/k8s")
        if env_file.resolve() != (Path.cwd() / "deploy" / "k8s" / "secrets.env").resolve():
            echo(f"  (kustomize reads deploy/k8s/secrets.env: put {env_file} there)")
        echo(
            "  then: kubectl -n jifen port-forward svc/console 8000:8000 and open "
            f"http://localhost:8000/ as {admin_user!r}"
        )
    else:
        if env_file.name != ".env":
            echo(f"Next: docker compose --env-file {env_file} up -d")
        elif here:
            echo("Next: docker compose up -d")
        else:  # e.g. written from inside the image into a mounted folder
            echo(
                "Next: docker compose up -d  (in the folder holding docker-compose.yml and this .env)"
            )
        echo(
            f"  then open the console at http://localhost:8000/ as {admin_user!r} (its cookie is "
            "HTTPS-only: browsers allow it on localhost; elsewhere serve it behind TLS, or set "
            "JIFEN_CONSOLE_COOKIE_SECURE=false on a trusted network) and Grafana at "
            "http://localhost:3000 (admin / GRAFANA_ADMIN_PASSWORD)"
        )
