"""The shared package has no import cycles, and nothing reaches into its private names."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names imported from it) for every import in the file, at any depth."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def shared_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in (ROOT / "shared").rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, names in imports_of(path):
            # `from shared.x import y` may name a module y or an attribute of shared.x
            for candidate in [target, *(f"{target}.{n}" for n in names)]:
                if candidate in modules and candidate != name:
                    graph[name].add(candidate)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_shared_has_no_import_cycles() -> None:
    graph = shared_graph()
    assert "shared.messaging.consumer.loop" in graph  # the scan sees the package
    assert find_cycle(graph) is None


def test_nothing_imports_a_private_name_from_shared() -> None:
    offenders = []
    for folder in ("services", "tests", "chaos", "bench", "shared"):
        for path in (ROOT / folder).rglob("*.py"):
            for target, names in imports_of(path):
                if not target.startswith("shared"):
                    continue
                private = [n for n in names if n.startswith("_")]
                if private or any(part.startswith("_") for part in target.split(".")):
                    offenders.append(f"{path.relative_to(ROOT)}: {target} {private}")
    assert offenders == []
