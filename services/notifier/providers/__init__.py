"""Where a push goes: Apple's APNs (HTTP/2, token auth: an ES256 JWT signed with the team's
.p8 key), Firebase Cloud Messaging's HTTP v1 API (an OAuth2 access token from google-auth:
application default credentials such as workload identity, or a service-account key file), a
generic webhook, and `log` (appends a JSON line to a file: the `make run` default, no
credentials needed).

Each provider turns one request into an `Outcome`: `sent` (with the provider's message id),
`retry` (429, 5xx, a network failure, an expired provider token: the dispatcher tries again
later, honouring Retry-After), `invalid_token` (APNs 410 / BadDeviceToken / Unregistered, FCM
UNREGISTERED: the device is deactivated) or `failed` (a request the provider will never
accept). Device tokens are secrets of a kind: they go to the provider and nowhere else (logs
and attempt records carry a digest).
"""

from services.notifier.providers.apns import ApnsProvider
from services.notifier.providers.base import (
    Outcome,
    OutcomeKind,
    Provider,
    Push,
    device_digest,
)
from services.notifier.providers.fcm import FcmProvider
from services.notifier.providers.logfile import LogProvider
from services.notifier.providers.registry import Providers, build_providers
from services.notifier.providers.webhook import WebhookProvider

__all__ = [
    "ApnsProvider",
    "FcmProvider",
    "LogProvider",
    "Outcome",
    "OutcomeKind",
    "Provider",
    "Providers",
    "Push",
    "WebhookProvider",
    "build_providers",
    "device_digest",
]
