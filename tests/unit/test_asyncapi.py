"""docs/asyncapi.yaml describes every topic as the code publishes and reads it: regenerated
from the event models it must equal the committed file, it must be a valid AsyncAPI 3.0.0
document (the official JSON schema from the npm package @asyncapi/specs, fetched once by
this test into .data/), and it must name every topic and consumer group the suite uses."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from services import asyncapi
from services.suite import CONSUMER_GROUPS
from shared import events

ROOT = Path(__file__).resolve().parents[2]
SPECS_VERSION = "6.11.1"
SCHEMA = "package/schemas/3.0.0-without-$id.json"


@pytest.fixture(scope="module")
def asyncapi_schema() -> dict[str, Any]:
    """The official AsyncAPI 3.0.0 JSON schema, from the npm registry (cached in .data/)."""
    cache = ROOT / ".data" / f"asyncapi-specs-{SPECS_VERSION}"
    target = cache / SCHEMA
    if not target.exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed once to fetch @asyncapi/specs (Node.js's package manager)"
        cache.mkdir(parents=True, exist_ok=True)
        packed = (
            subprocess.run(
                [npm, "pack", f"@asyncapi/specs@{SPECS_VERSION}", "--silent"],
                cwd=cache,
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        with tarfile.open(cache / packed) as archive:
            archive.extract(SCHEMA, cache, filter="data")
    return dict(json.loads(target.read_text()))


def test_the_committed_document_is_what_the_models_generate() -> None:
    committed = (ROOT / "docs" / "asyncapi.yaml").read_text()
    assert committed == asyncapi.render(), (
        "docs/asyncapi.yaml is stale: run `python -m services.asyncapi > docs/asyncapi.yaml`"
    )


def test_it_is_a_valid_asyncapi_3_document(asyncapi_schema: dict[str, Any]) -> None:
    validator = jsonschema.validators.validator_for(asyncapi_schema)(asyncapi_schema)
    doc = asyncapi.document()
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []
    # ... and the check can fail: an operation with an action AsyncAPI 3 does not have.
    broken = copy.deepcopy(doc)
    next(iter(broken["operations"].values()))["action"] = "publish"
    assert list(validator.iter_errors(broken))


def test_every_topic_and_consumer_group_is_described() -> None:
    doc = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    addresses = {c["address"] for c in doc["channels"].values()}
    declared = {
        value
        for name, value in vars(events).items()
        if name.isupper() and isinstance(value, str) and "." in value and " " not in value
    }
    declared = {t for t in declared if not t.startswith("http")}
    for topic in declared | {t for ts in CONSUMER_GROUPS.values() for t in ts}:
        assert topic in addresses, f"{topic} is not in docs/asyncapi.yaml"
        assert events.dlq_topic(topic) in addresses
    groups = {
        op["bindings"]["kafka"]["groupId"]["enum"][0]
        for op in doc["operations"].values()
        if op["action"] == "receive"
    }
    assert groups == set(CONSUMER_GROUPS)


def test_payload_schemas_follow_the_models() -> None:
    schemas = asyncapi.document()["components"]["schemas"]
    ledger = schemas["LedgerEvent"]
    assert set(ledger["required"]) >= {"type", "entry_id", "user_id", "points", "balance_after"}
    assert "pending" in ledger["properties"] and "debt" in ledger["properties"]
    notify = schemas["NotifyEvent"]["properties"]["type"]
    assert set(notify["enum"]) == {"sent", "opened"}
