"""The provider for each platform, built once from the settings."""

from __future__ import annotations

import logging
from typing import Any

from services.notifier.providers.apns import ApnsProvider
from services.notifier.providers.base import (
    Provider,
)
from services.notifier.providers.fcm import FcmProvider
from services.notifier.providers.logfile import LogProvider
from services.notifier.providers.webhook import WebhookProvider

log = logging.getLogger(__name__)


class Providers:
    """The provider for each platform, built from the settings (one instance per kind)."""

    def __init__(self, by_platform: dict[str, Provider]) -> None:
        self.by_platform = by_platform

    def for_platform(self, platform: str) -> Provider:
        return self.by_platform[platform]

    async def close(self) -> None:
        seen: set[int] = set()
        for provider in self.by_platform.values():
            if id(provider) not in seen:
                seen.add(id(provider))
                try:
                    await provider.close()
                except Exception:
                    log.exception("closing %s", provider.name)


def build_providers(settings: Any) -> Providers:
    made: dict[str, Provider] = {}

    def make(kind: str) -> Provider:
        if kind not in made:
            if kind == "log":
                made[kind] = LogProvider(settings.log_path)
            elif kind == "webhook":
                made[kind] = WebhookProvider(
                    settings.webhook_url,
                    settings.webhook_secret.get_secret_value(),
                    settings.provider_timeout_s,
                    settings.provider_concurrency,
                )
            elif kind == "apns":
                made[kind] = ApnsProvider(
                    settings.apns_url,
                    settings.apns_topic,
                    settings.apns_team_id,
                    settings.apns_key_id,
                    settings.apns_key_path,
                    settings.apns_ca_file,
                    settings.provider_timeout_s,
                )
            elif kind == "fcm":
                made[kind] = FcmProvider(
                    settings.fcm_url,
                    settings.fcm_project_id,
                    settings.fcm_service_account_path,
                    settings.provider_timeout_s,
                    settings.provider_concurrency,
                )
            else:  # the settings' Literal types make this unreachable
                raise ValueError(f"unknown provider {kind}")
        return made[kind]

    return Providers(
        {
            "ios": make(settings.ios_provider),
            "android": make(settings.android_provider),
            "web": make(settings.web_provider),
        }
    )
