from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.rewards_ledger.settings import Settings


def test_production_refuses_placeholder_secrets() -> None:
    with pytest.raises(ValidationError, match="JIFEN_ADMIN_TOKEN"):
        Settings(env="prod")
    ok = Settings(
        env="prod", admin_token="a" * 40, jwt_secret="b" * 40, ingest_keys={"k" * 32: ["app"]}
    )
    assert ok.env == "prod"


def test_unknown_timezone_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Settings(business_timezone="Mars/Olympus")
