"""Every service's HTTP API, fuzzed by schemathesis from its own OpenAPI document.

Each run generates valid and invalid requests (the schema's examples, its boundary values —
empty and over-long strings, NUL characters, numbers past int64, wrong types, bytes that are
not JSON — and random ones) and sends them with the admin token, so they reach validation
and the handlers instead of stopping at the door. Every answer must:
- not be a server error (5xx),
- have a status the operation documents, with the documented content type and schema
  (errors: the one `{error, message}` shape).

`make test` runs a bounded, reproducible pass (a fixed seed, JIFEN_FUZZ_EXAMPLES per
operation); `make fuzz` runs a deeper one with a fresh seed and the stateful phase. The
fuzzer writes junk through admin routes (tasks, items, adjustments, badges), so these tests
run after every other test against the shared suite (see `pytest_collection_modifyitems`
in tests/conftest.py). Afterwards the ledger must still balance: hostile input may be
refused, never half-booked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services.suite import SERVICES
from tests.conftest import ADMIN

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)
# every service of the suite (the console publishes no OpenAPI: its own tests cover it)
API_SERVICES = list(SERVICES)  # in port order


def fuzz_command(url: str, report: Path) -> list[str]:
    examples = os.environ.get("JIFEN_FUZZ_EXAMPLES", "20")
    deep = os.environ.get("JIFEN_FUZZ_DEEP") == "1"
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: {ADMIN['Authorization']}",
        "--checks",
        CHECKS,
        "--max-examples",
        examples,
        # one worker: schemathesis's threads trip a CPython 3.11 ast race ("AST constructor
        # recursion depth mismatch") while building strategies
        "--workers",
        "1",
        "--phases",
        "examples,coverage,fuzzing,stateful" if deep else "examples,coverage,fuzzing",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        # the documents declare their credentials (an ingest key, bearer tokens): without
        # this, schemathesis adds made-up ones beside the admin token, and about half the
        # requests stop at the door as 401 instead of reaching validation and the handlers
        "--generation-with-security-parameters",
        "false",
        # its 503 is a verdict (the business is critical), not a server error; it reads no input
        "--exclude-path",
        "/v1/health/business",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
    ]
    if not deep:
        command += ["--seed", os.environ.get("JIFEN_FUZZ_SEED", "20261201")]
    return command


@pytest.mark.parametrize("service", API_SERVICES)
def test_no_server_errors_and_every_answer_is_documented(service: str, stack, tmp_path) -> None:
    run = subprocess.run(
        fuzz_command(stack.url(service), tmp_path / f"{service}.xml"),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    # the report names each failing operation, the check, and a curl line that reproduces it
    assert run.returncode == 0, f"{service}:\n{run.stdout[-20000:]}\n{run.stderr[-4000:]}"


def test_the_books_still_balance_after_the_fuzzing(stack) -> None:
    """Runs last in this module: whatever the fuzzer got the ledger to accept is whole."""
    answer = httpx.get(f"{stack.url('rewards_ledger')}/v1/reconciliation", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True, answer.json()
