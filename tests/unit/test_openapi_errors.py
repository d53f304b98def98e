"""Every `/v1` operation of every service documents the error answers it can give (401, 403,
404, 409, 422, 429, 503) with the one `{error, message}` schema (issue 25: a client or a
fuzzer meets no status the document does not describe)."""

from __future__ import annotations

import importlib

import pytest

from services.suite import SERVICES
from shared.openapi import ERRORS


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_operation_documents_its_errors(service: str) -> None:
    app = importlib.import_module(f"services.{service}.main").app
    document = app.openapi()
    assert document["components"]["schemas"]["Error"]["required"] == ["error", "message"]
    operations = [
        (path, method, op)
        for path, ops in document["paths"].items()
        if path.startswith("/v1/")
        for method, op in ops.items()
    ]
    assert operations, f"{service} has no /v1 operations"
    for path, method, op in operations:
        for status in ERRORS:
            answer = op["responses"].get(status)
            assert answer, f"{service} {method.upper()} {path} does not document {status}"
            schema = answer["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)
        assert "Retry-After" in op["responses"]["429"]["headers"]
