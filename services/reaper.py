"""The dev stack's reaper: what `make run` (or a test session, bench, chaos) started goes away
when the runner dies, however it dies.

The runner's own clean stop drains and stops everything. A runner killed with SIGKILL cannot:
its services run in sessions of their own (a terminal's Ctrl-C reaches only the runner, which
drains first), so they used to keep listening and the next `make run` stopped on "port ...
already in use". The reaper is a small process the runner starts first and tells, on a pipe,
each process it starts. It reads that pipe until end of file, which the kernel delivers when the
runner's last copy of the write end closes, that is when the runner is gone, by any signal.
It then asks every process it was told of to stop (SIGTERM, SIGINT for PostgreSQL's fast
shutdown), and kills what is left after a grace period.

`python -m services.reaper` is the process; `Reaper` is the runner's side.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

GRACE_S = 5.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group_or_pid(pid: int, sig: int) -> None:
    """The process's whole group when it leads one (a service and what it forked), else it."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap(watched: dict[int, int], grace_s: float = GRACE_S) -> None:
    """Stop every watched pid (pid -> the signal that asks it to stop), then kill the rest."""
    for pid, sig in watched.items():
        _signal_group_or_pid(pid, sig)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(pid) for pid in watched):
        time.sleep(0.1)
    for pid in watched:
        if _alive(pid):
            _signal_group_or_pid(pid, signal.SIGKILL)


def main() -> int:
    """Read "<pid> <signal>" lines (and "-<pid>" when the runner stopped it itself) until the
    runner is gone, then reap what is still watched."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the end of the pipe ends the watch
    watched: dict[int, int] = {}
    for line in sys.stdin:
        word = line.strip()
        if word.startswith("-"):
            watched.pop(int(word[1:]), None)
        elif word:
            pid, sig = word.split()
            watched[int(pid)] = int(sig)
    reap({pid: sig for pid, sig in watched.items() if _alive(pid)})
    return 0


class Reaper:
    """The runner's side: started on first use, told of each process the runner starts."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()  # chaos starts services from its supervisor thread too

    def _pipe(self) -> subprocess.Popen[str]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "services.reaper"],
                stdin=subprocess.PIPE,
                text=True,
                start_new_session=True,  # a terminal's Ctrl-C must not end the watch early
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
            )
        return self._process

    def _say(self, line: str) -> None:
        with self._lock:
            process = self._pipe()
            assert process.stdin is not None
            try:
                process.stdin.write(line + "\n")
                process.stdin.flush()
            except BrokenPipeError:  # the reaper died: start another on the next watch
                self._process = None

    def watch(self, pid: int, sig: int = signal.SIGTERM) -> None:
        self._say(f"{pid} {int(sig)}")

    def forget(self, pid: int) -> None:
        if self._process is not None:
            self._say(f"-{pid}")


REAPER = Reaper()

if __name__ == "__main__":
    sys.exit(main())
