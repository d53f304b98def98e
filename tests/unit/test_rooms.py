"""Every service has the same rooms, and each kind of thing lives in its room.

The rooms are listed in docs/ADDING_A_SERVICE.md; a room that outgrows one module becomes a
package of the same name (`service/`, `repository/`, `api/`). This test reads the source (no
import), so it also holds for a service that has not been started.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from services.suite import SERVICES

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ("main", "settings", "models", "schemas", "api", "service", "domain", "repository")
PRODUCTION = ("services", "shared", "console", "cli")
MAX_LINES = 600
MAX_TYPE_IGNORES = 2


def python_files(*folders: str) -> Iterator[Path]:
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def room_of(path: Path) -> str | None:
    """The room a module of a service belongs to: `api` for api.py and for api/*.py."""
    parts = path.relative_to(ROOT / "services").parts
    if len(parts) < 2:
        return None
    return parts[1].removesuffix(".py")


def service_modules() -> Iterator[tuple[str, Path, ast.Module]]:
    for service in SERVICES:
        for path in python_files(f"services/{service}"):
            yield service, path, ast.parse(path.read_text(), str(path))


def base_names(node: ast.ClassDef) -> set[str]:
    return {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}


def calls_to(tree: ast.Module, names: set[str]) -> bool:
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in names
        for n in ast.walk(tree)
    )


def test_every_service_has_the_required_rooms() -> None:
    missing = [
        f"{service}/{room}"
        for service in SERVICES
        for room in REQUIRED
        if not (ROOT / "services" / service / f"{room}.py").exists()
        and not (ROOT / "services" / service / room / "__init__.py").exists()
    ]
    assert missing == []


def test_handlers_workers_routes_and_metrics_live_in_their_rooms() -> None:
    misplaced: list[str] = []
    for _, path, tree in service_modules():
        room = room_of(path)
        where = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = base_names(node)
            if "BatchHandler" in bases and room != "consumer":
                misplaced.append(f"{where}: Kafka handler {node.name} (consumer.py)")
            if bases & {"PollingWorker", "Worker"} and room != "workers":
                misplaced.append(f"{where}: worker {node.name} (workers.py)")
        if calls_to(tree, {"APIRouter"}) and room != "api":
            misplaced.append(f"{where}: a router (api.py)")
        if calls_to(tree, {"Counter", "Gauge", "Histogram", "Summary"}) and room != "metrics":
            if "prometheus_client" in path.read_text():
                misplaced.append(f"{where}: a metric (metrics.py)")
    assert misplaced == []


def test_no_module_is_too_long_to_read_in_one_sitting() -> None:
    long = [
        f"{path.relative_to(ROOT)} ({n} lines)"
        for path in python_files("services", "shared", "console")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    ]
    assert long == []


def test_production_code_does_not_import_the_dev_stack_and_shared_imports_no_service() -> None:
    offenders: list[str] = []
    for path in python_files(*PRODUCTION):
        relative = str(path.relative_to(ROOT))
        if relative in ("services/devstack.py", "services/__main__.py"):
            continue  # the dev stack itself and `make run`
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for module in modules:
                if module.startswith("services.devstack"):
                    offenders.append(f"{relative} imports the dev stack")
                if relative.startswith("shared/") and module.split(".")[0] == "services":
                    offenders.append(f"{relative} imports {module}: shared depends on no service")
    assert offenders == []


def test_one_http_client_library_between_services() -> None:
    """Services reach each other through shared/client.py (aiohttp): no second client."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in python_files("services", "shared", "console")
        if re.search(r"^\s*(import httpx|from httpx)", path.read_text(), re.M)
        and path.name != "devstack.py"  # the dev stack's readiness polls (not a service)
    ]
    assert offenders == []


def test_type_ignores_in_production_code_are_rare() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in python_files(*PRODUCTION)
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if "type: ignore" in line
    ]
    assert len(found) <= MAX_TYPE_IGNORES, found
