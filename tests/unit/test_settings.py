from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.insights.settings import Settings as InsightsSettings
from services.rewards_ledger.settings import Settings
from shared.settings import SERVICE_SCOPES, JifenSettings, dev_service_token


def test_production_refuses_placeholder_secrets() -> None:
    with pytest.raises(ValidationError, match="JIFEN_ADMIN_TOKEN"):
        Settings(env="prod")
    ok = Settings(
        env="prod",
        admin_token="a" * 40,
        jwt_secret="b" * 40,
        ingest_keys={"k" * 32: ["app"]},
        service_credentials={"s" * 40: {"service": "exchange", "scopes": ["ledger:debit"]}},
    )
    assert ok.env == "prod"


def test_unknown_timezone_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Settings(business_timezone="Mars/Olympus")


def test_prod_refuses_the_dev_service_credentials() -> None:
    real = {
        "env": "prod",
        "admin_token": "a" * 40,
        "jwt_secret": "j" * 40,
        "ingest_keys": {"k" * 20: ["app"]},
    }
    with pytest.raises(ValidationError, match="JIFEN_SERVICE_CREDENTIALS"):
        JifenSettings.model_validate(real)
    creds = {"s" * 40: {"service": "exchange", "scopes": ["ledger:debit"]}}
    with pytest.raises(ValidationError, match="JIFEN_SERVICE_TOKEN"):
        JifenSettings.model_validate(
            {**real, "service_credentials": creds, "service_token": dev_service_token("exchange")}
        )
    unset = JifenSettings.model_validate({**real, "service_credentials": creds})
    with pytest.raises(ValueError, match="JIFEN_SERVICE_TOKEN must be set"):
        _ = unset.outbound_token
    ok = JifenSettings.model_validate(
        {**real, "service_credentials": creds, "service_token": "t" * 40}
    )
    assert ok.outbound_token == "t" * 40


@pytest.mark.parametrize("caller", ["insights", "console", "exchange", "task_progress", "notifier"])
def test_prod_refuses_every_callers_dev_token_accepted_or_presented(caller: str) -> None:
    real = {
        "env": "prod",
        "admin_token": "a" * 40,
        "jwt_secret": "j" * 40,
        "ingest_keys": {"k" * 20: ["app"]},
    }
    dev = dev_service_token(caller)
    accepted = {dev: {"service": caller, "scopes": list(SERVICE_SCOPES[caller])}}
    with pytest.raises(ValidationError, match="JIFEN_SERVICE_CREDENTIALS"):
        Settings.model_validate({**real, "service_credentials": accepted})
    creds = {"s" * 40: {"service": caller, "scopes": list(SERVICE_SCOPES[caller])}}
    with pytest.raises(ValidationError, match="JIFEN_SERVICE_TOKEN"):
        InsightsSettings.model_validate(
            {**real, "service_credentials": creds, "service_token": dev}
        )
