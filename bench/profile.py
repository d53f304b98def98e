"""Sampling profiles of the running services with py-spy (BENCH_PROFILE=1 make bench).

Each service process gets a `py-spy record` in raw (collapsed stack) format for the length of
the run; at the end we print, per service, where its samples went: the busiest frames by own
time and the widest by inclusive time, plus how much of the time the process was idle.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# Frames that mean "waiting, not working": the event loop's selector and thread waits.
IDLE_MARKERS = ("select (selectors.py", "epoll", "_run_once (asyncio/base_events.py")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed (make install installs the dev extras)")
    return found


class Profiler:
    def __init__(self, out_dir: Path, rate: int = 97) -> None:
        self.out_dir = out_dir
        self.rate = rate
        self.running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self, pids: dict[str, int]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in pids.items():
            out = self.out_dir / f"profile-{name}.txt"
            proc = subprocess.Popen(
                [
                    py_spy(),
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(self.rate),
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.running[name] = (proc, out)

    def stop(self) -> dict[str, Path]:
        done = {}
        for name, (proc, out) in self.running.items():
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            if out.exists():
                done[name] = out
        self.running.clear()
        return done


def package(frame: str) -> str:
    """'visit (sqlalchemy/sql/compiler.py:12)' -> 'sqlalchemy'."""
    location = frame.rpartition("(")[2]
    return location.split("/")[0].split(".py")[0] if "/" in location else location.split(":")[0]


def summarize(path: Path, top: int = 12) -> str:
    """Own-time and inclusive-time leaders of one collapsed-stack file."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        if any(marker in frames[-1] for marker in IDLE_MARKERS) if frames else True:
            idle += count
            continue
        own[frames[-1]] += count
        by_package[package(frames[-1])] += count
        for frame in set(frames):
            if "(services/" in frame or "(shared/" in frame:
                inclusive[frame] += count
    if not total:
        return f"{path.name}: no samples"
    busy = total - idle
    lines = [f"{path.stem}: {total} samples, {100 * busy / total:.0f}% busy"]
    lines.append("  own time by package (of busy samples):")
    lines += [f"    {100 * c / max(busy, 1):5.1f}%  {f}" for f, c in by_package.most_common(top)]
    lines.append("  own time (of busy samples):")
    lines += [f"    {100 * c / max(busy, 1):5.1f}%  {f}" for f, c in own.most_common(top)]
    lines.append("  inclusive time in the project's own functions (of busy samples):")
    lines += [f"    {100 * c / max(busy, 1):5.1f}%  {f}" for f, c in inclusive.most_common(top)]
    return "\n".join(lines)
