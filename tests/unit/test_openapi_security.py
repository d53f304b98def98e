"""Every service's OpenAPI document declares how a caller proves who it is (issue 33), so
/docs has an Authorize button and a generated client knows which header to send: a user's
JWT, the admin's or a service's bearer token, an ingest key. Every `/v1` operation names
the credentials it takes, read from its `principal` dependency; a route that authenticates
by hand (the hot paths) declares them itself, and only the public reads declare none."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import schemathesis

from services.suite import SERVICES
from shared.openapi import AUTHENTICATED, INGEST, SECURITY_SCHEMES

# reads anyone may make (the catalog item, the leaderboards, badges and tiers; the ranks show
# operators the user ids and a user their own entries: optional_principal)
PUBLIC = {
    ("engagement", "get", "/v1/leaderboards"),
    ("engagement", "get", "/v1/leaderboards/{code}"),
    ("engagement", "get", "/v1/badges"),
    ("engagement", "get", "/v1/tiers"),
    ("exchange", "get", "/v1/items/{item_id}"),
}
# public, and more for an authenticated caller (optional_principal)
OPTIONAL = [{}, *AUTHENTICATED]
INGESTING = {("behavior_sensor", "post", "/v1/events")}


def document(service: str) -> dict[str, Any]:
    app = importlib.import_module(f"services.{service}.main").app
    return app.openapi()  # type: ignore[no-any-return]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_operation_names_the_credentials_it_takes(service: str) -> None:
    doc = document(service)
    assert doc["components"]["securitySchemes"] == SECURITY_SCHEMES
    assert SECURITY_SCHEMES["userToken"]["bearerFormat"] == "JWT"
    assert SECURITY_SCHEMES["ingestKey"]["name"] == "X-Api-Key"
    for path, operations in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            where = (service, method, path)
            security = operation.get("security")
            if where in PUBLIC:
                assert security is None, where
            elif where in INGESTING:
                assert security == INGEST, where
            else:
                assert security in (AUTHENTICATED, OPTIONAL), (where, security)
            for requirement in security or []:
                assert set(requirement) <= set(SECURITY_SCHEMES), (where, requirement)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_fuzzer_reads_the_document_with_its_credentials(service: str) -> None:
    """schemathesis (tests/integration/test_fuzz.py) loads every operation, security included."""
    schema = schemathesis.openapi.from_dict(document(service))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    secured = [op for op in operations if list(op.security.iter_parameters())]
    assert secured, f"{service}: no operation takes credentials"
