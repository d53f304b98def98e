"""The dev stack stops exactly what it started: `make run` killed with SIGKILL leaves nothing
running (its services, the embedded broker, Valkey and PostgreSQL stop within seconds, so the
next `make run` finds its ports free), and stopping a scratch PostgreSQL leaves the others."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from services.devstack import (
    free_port,
    port_open,
    start_embedded_postgres,
    stop_embedded_postgres,
)
from services.suite import SERVICES

ROOT = Path(__file__).resolve().parents[2]
PORTS_PER_SUITE = max(SERVICES.values()) + 1  # the console on the base port, services above


def free_base_port() -> int:
    for base in range(21000, 30000, 50):
        if not any(port_open("127.0.0.1", base + i) for i in range(PORTS_PER_SUITE)):
            return base
    raise RuntimeError("no free port range")


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (read from /proc: parent ids)."""
    parent_of: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent_of[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parent_of.items() if parent in frontier}
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_kill_9_of_make_run_leaves_nothing_running(tmp_path: Path) -> None:
    base, broker = free_base_port(), free_port()
    ports = [base + i for i in range(PORTS_PER_SUITE)] + [broker]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIFEN_")}
    args = ["--data-dir", str(tmp_path), "--base-port", str(base), "--broker-port", str(broker)]
    runner = subprocess.Popen(
        [sys.executable, "-m", "services", "--no-seed", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_until(lambda: all(port_open("127.0.0.1", p) for p in ports), 240), (
            "the suite did not start"
        )
        started = descendants(runner.pid)
        postmaster = int((tmp_path / "postgres" / "postmaster.pid").read_text().split()[0])
        assert started and alive(postmaster)

        runner.send_signal(signal.SIGKILL)
        runner.wait()

        assert wait_until(lambda: not any(port_open("127.0.0.1", p) for p in ports), 15)
        assert wait_until(lambda: not any(alive(p) for p in started | {postmaster}), 15), [
            p for p in started | {postmaster} if alive(p)
        ]
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def test_stopping_a_scratch_postgres_leaves_the_others_running(tmp_path: Path) -> None:
    """A test session's server outlives a scratch one started and stopped inside it (the
    chaos test does this; the session's server went down with it once)."""
    start_embedded_postgres(tmp_path / "kept")
    start_embedded_postgres(tmp_path / "scratch")
    kept = int((tmp_path / "kept" / "postmaster.pid").read_text().split()[0])
    scratch = int((tmp_path / "scratch" / "postmaster.pid").read_text().split()[0])
    try:
        stop_embedded_postgres(tmp_path / "scratch")
        assert wait_until(lambda: not alive(scratch), 15)
        assert alive(kept)
    finally:
        stop_embedded_postgres(tmp_path / "kept")
    assert wait_until(lambda: not alive(kept), 15)
