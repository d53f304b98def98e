"""A static security scan of the rendered kustomization with checkov: no failed check.

checkov's open-source output carries no severities for most checks, so every failed check
counts: each is fixed in the manifests or skipped in deploy/k8s/.checkov.yaml with its reason
(the test refuses a skip without a comment above it, and a skip that no longer finds anything).

checkov (pinned) is installed once into its own venv under .data/tools/checkov-venv: its many
dependencies stay out of the project's environment. The first run takes about 40 s (pip),
later ones a few seconds. Without network access to the package index the test skips.
"""

from __future__ import annotations

import fcntl
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools import unavailable
from tests.unit.test_k8s_kustomize import K8S, TOOLS, render

CHECKOV = "checkov==3.3.30"
VENV = TOOLS / "checkov-venv"
CONFIG = K8S / ".checkov.yaml"


def checkov() -> Path:
    binary = VENV / "bin" / "checkov"
    stamp = VENV / ".installed"
    TOOLS.mkdir(parents=True, exist_ok=True)
    with open(TOOLS / ".checkov.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time; the others wait and reuse
        if stamp.exists() and stamp.read_text() == CHECKOV:
            return binary
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        done = subprocess.run(
            [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", CHECKOV],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            unavailable(f"cannot install {CHECKOV}: {done.stderr[-500:]}")
        stamp.write_text(CHECKOV)
    return binary


def scan(binary: Path, manifest: Path, *options: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(binary), "-f", str(manifest), "-o", "json", *options],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: some check failed
    report = json.loads(done.stdout)
    assert isinstance(report, dict), report  # a list: several frameworks ran
    return report


def failed(report: dict[str, Any]) -> list[str]:
    return sorted(
        f"{c['check_id']} {c['check_name']}: {c['resource']}"
        for c in report["results"]["failed_checks"]
    )


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("checkov") / "jifen.yaml"
    path.write_text(yaml.safe_dump_all(render(), sort_keys=False))
    return path


def test_checkov_finds_nothing_beyond_the_documented_skips(manifest: Path) -> None:
    binary = checkov()
    report = scan(binary, manifest, "--config-file", str(CONFIG))
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] > 50, report["summary"]
    assert not failed(report), "\n".join(failed(report))


def test_every_skip_has_a_reason_and_still_finds_something(manifest: Path) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    skips = config["skip-check"]
    text = CONFIG.read_text()
    for check in skips:
        # the comment block just above the entry names the check and says why
        assert re.search(rf"# {check} \"[^\"]+\": \S[^\n]*\n(  #[^\n]*\n)*  - {check}\n", text), (
            check
        )
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare.yaml"  # the same options, no skips
        bare.write_text(yaml.safe_dump({k: v for k, v in config.items() if k != "skip-check"}))
        report = scan(checkov(), manifest, "--config-file", str(bare))
    found = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert found == set(skips), {"stale skips": set(skips) - found, "new": found - set(skips)}
