"""Every number and every string a client can send is bounded in the service's OpenAPI, so
validation refuses it (422) before it reaches PostgreSQL (issue 25): an integer past int64
overflows a bigint column, a string of megabytes overflows a btree index row — both would be
500s. The fuzzer (tests/integration/test_fuzz.py) tries such values; this test makes sure a
new field cannot forget its bounds in the first place.

Walked: path and query parameters and JSON request bodies, nested objects and arrays
included. A free-form JSON object (`attributes`, `metadata`) is bounded by the body's size
limit instead and is named in FREE_FORM.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest

from services.suite import SERVICES

# where the document deliberately takes any JSON (validated by the route, stored as jsonb)
FREE_FORM = {"attributes", "metadata", "conditions", "context", "variables", "data"}
INT64 = 2**63 - 1


def bounded_pattern(pattern: str | None) -> bool:
    """An anchored pattern with no open-ended repetition admits strings of bounded length."""
    if not pattern or not (pattern.startswith("^") and pattern.endswith("$")):
        return False
    return re.search(r"(?<!\\)[*+]|\{\d+,\}", pattern) is None


def _resolve(node: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = document["components"]["schemas"][name]
    return node


def unbounded(node: Any, where: str, document: dict[str, Any], seen: frozenset[str]) -> list[str]:
    """The places under `node` where a number or a string has no upper bound."""
    if not isinstance(node, dict):
        return []
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        return unbounded(_resolve(node, document), where, document, seen | {name})
    found: list[str] = []
    for key in ("anyOf", "oneOf", "allOf"):
        for option in node.get(key, []):
            found += unbounded(option, where, document, seen)
    kind = node.get("type")
    if kind in ("integer", "number") and not ("enum" in node or "const" in node):
        top = node.get("maximum", node.get("exclusiveMaximum"))
        bottom = node.get("minimum", node.get("exclusiveMinimum"))
        if top is None or bottom is None or top > INT64 or bottom < -INT64:
            found.append(f"{where}: {kind} without both bounds")
    elif kind == "string":
        if not ("maxLength" in node or "enum" in node or "const" in node or "format" in node):
            if not bounded_pattern(node.get("pattern")):
                found.append(f"{where}: string without maxLength")
    elif kind == "array":
        if "maxItems" not in node:
            found.append(f"{where}: array without maxItems")
        found += unbounded(node.get("items", {}), f"{where}[]", document, seen)
    if kind == "object" or "properties" in node:
        for name, child in node.get("properties", {}).items():
            if name in FREE_FORM:
                continue
            found += unbounded(child, f"{where}.{name}", document, seen)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra and where.rsplit(".", 1)[-1] not in FREE_FORM:
            found += unbounded(extra, f"{where}.*", document, seen)
    return found


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_input_is_bounded(service: str) -> None:
    document = importlib.import_module(f"services.{service}.main").app.openapi()
    problems: list[str] = []
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            name = f"{method.upper()} {path}"
            for parameter in op.get("parameters", []):
                problems += unbounded(
                    parameter.get("schema", {}),
                    f"{name} {parameter['in']}.{parameter['name']}",
                    document,
                    frozenset(),
                )
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            problems += unbounded(body.get("schema", {}), f"{name} body", document, frozenset())
    assert not problems, "\n".join(problems)
