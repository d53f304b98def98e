"""Typed configuration shared by every service (environment variables with the JIFEN_ prefix)."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.registry import GROUP_PREFIX

DEV_ADMIN_TOKEN = "dev-admin-token"
DEV_JWT_SECRET = "dev-jwt-secret-change-me-in-production"
DEV_INGEST_KEY = "dev-ingest-key"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

Role = Literal["all", "api", "worker"]

# What each calling service may do at another (the scopes its credential carries). A service
# presents JIFEN_SERVICE_TOKEN; the called service looks it up in JIFEN_SERVICE_CREDENTIALS.
SERVICE_SCOPES: dict[str, tuple[str, ...]] = {
    # quick options read the recommender (for the user) and the task rules besides the ledger
    "exchange": (
        "ledger:debit",
        "ledger:refund",
        "ledger:read",
        "insights:recommendations",
        "tasks:rules",
    ),
    "task_progress": ("ledger:assets", "ledger:debit"),
    "notifier": ("ledger:reports",),
    # insights copies reference data (the whole catalog, the task rules, the expiring lots)
    # and reads both reconciliations for the business health (ledger:overview: the ledger's
    # reconciliation and liability; exchange:reconciliation: the exchange's report only)
    "insights": (
        "exchange:catalog",
        "tasks:rules",
        "ledger:expiring",
        "ledger:overview",
        "exchange:reconciliation",
    ),
    # the operations console: exactly the reads and operator writes its pages make
    # (the README, "Scaling and production", lists the endpoints each scope opens)
    "console": (
        "ledger:accounts",
        "ledger:adjust",
        "ledger:overview",
        "tasks:read",
        "tasks:write",
        "exchange:catalog",
        "exchange:read",
        "exchange:items",
        "exchange:fulfil",
        "exchange:redeem",
        "engagement:read",
        "engagement:rebuild",
        "behavior:read",
        "behavior:decide",
        "notifier:read",
        "insights:read",
    ),
}


def dev_service_token(service: str) -> str:
    return f"dev-{service}-service-token"


def dev_service_credentials() -> dict[str, ServiceCredential]:
    return {
        dev_service_token(service): ServiceCredential(service=service, scopes=list(scopes))
        for service, scopes in SERVICE_SCOPES.items()
    }


class ServiceCredential(BaseModel):
    """One calling service's credential: who it is and what it may do."""

    service: str = Field(min_length=1, max_length=64)
    scopes: list[str] = Field(default_factory=list, max_length=50)


class JifenSettings(BaseSettings):
    """Settings common to all services. Each service subclasses this and names its database."""

    # The environment only: a `.env` in the working directory is docker compose's (`jifen init`
    # writes production secrets there), and must not leak into `make run` or the tests.
    model_config = SettingsConfigDict(env_prefix="JIFEN_", extra="ignore")

    service_name: str = "jifen"
    env: Literal["dev", "test", "prod"] = "dev"
    role: Role = Field(
        "all", description="api: HTTP only; worker: consumers and relay only; all: both"
    )

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="PostgreSQL server URL; each service uses its own database jifen_<service> on it",
    )
    database_name: str = ""
    db_pool_size: int = Field(8, ge=1, le=200)
    db_max_overflow: int = Field(4, ge=0, le=200)
    migrate_on_start: bool = True
    seed_demo: bool = False

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_enable_idempotence: bool = Field(
        False, description="true on real Kafka; the embedded broker cannot do idempotent producers"
    )
    kafka_topic_partitions: int = Field(6, ge=1, le=1024)
    kafka_replication_factor: int = Field(1, ge=1, le=10)
    kafka_session_timeout_ms: int = Field(
        30_000, ge=1_000, le=300_000, description="how long a silent consumer keeps its partitions"
    )
    kafka_heartbeat_interval_ms: int = Field(3_000, ge=100, le=60_000)
    kafka_fetch_max_wait_ms: int = Field(
        50,
        ge=1,
        le=10_000,
        description="how long a fetch may wait at the broker for data (a floor on each hop's latency)",
    )
    kafka_background_fetch_max_wait_ms: int = Field(
        500,
        ge=1,
        le=10_000,
        description="the same for consumers nobody waits on (insights, the notifier, the tier "
        "copies): an idle consumer's fetches cost the embedded broker about 1 ms of CPU each, "
        "20 a second at 50 ms (docs/BENCHMARKS.md, issue 30); real Kafka answers a waiting "
        "fetch as soon as data arrives, so there the longer wait costs no latency",
    )
    consumer_batch_size: int = Field(
        1000,
        ge=1,
        le=10_000,
        description="most records a consumer applies in one database transaction (under a "
        "backlog; a trickle goes in small batches at once)",
    )
    consumer_poll_ms: int = Field(200, ge=1, le=60_000)
    consumer_top_up_ms: int = Field(
        20,
        ge=0,
        le=1_000,
        description="after a long batch, wait up to this long for records that arrived meanwhile",
    )
    consumer_linger_ms: int = Field(
        0,
        ge=0,
        le=1_000,
        description="after a batch smaller than JIFEN_CONSUMER_BATCH_SIZE, let this long pass "
        "before taking the next, so that records gather into fewer, fuller batches at low "
        "rates (a floor on each hop's latency at those rates; 0 takes each batch at once)",
    )
    consumer_commit_interval_ms: int = Field(
        0,
        ge=0,
        le=10_000,
        description="commit consumed offsets at most this often (always after the database "
        "commit, and on a rebalance or stop); 0 commits after every batch",
    )
    consumer_stall_restart_s: float = Field(
        60.0,
        ge=5,
        le=3600,
        description="a consumer whose join has brought no assignment after this long, or "
        "with no partitions that sees records waiting behind group offsets that have not "
        "moved for this long, leaves and rejoins its group",
    )
    relay_batch_size: int = Field(
        50,
        ge=1,
        le=10_000,
        description="outbox rows the relay sends per step; a row holds the messages of one "
        "transaction (up to a few per consumed record)",
    )
    relay_poll_ms: int = Field(
        1000, ge=5, le=60_000, description="how often the relay sweeps the outbox for rows to send"
    )
    outbox_publish_on_commit: bool = Field(
        True,
        description="publish a transaction's outbox rows as soon as it commits; when off, the "
        "relay alone publishes (woken by each commit in the process)",
    )
    outbox_sweep_after_ms: int = Field(
        5000,
        ge=0,
        le=3_600_000,
        description="the relay leaves younger rows to the publisher that runs after their commit",
    )
    outbox_publish_queue: int = Field(
        20_000,
        ge=1,
        description="rows waiting to be published on commit, past which the relay "
        "is left to send them (bounds memory while the broker is away)",
    )
    dedupe_retention_hours: int = Field(
        336,
        ge=1,
        le=87_600,
        description="how long a consumer's inbox rows (and behavior_sensor's received "
        "behaviors and anti-farming counters) are kept; keep it at least the topics' retention "
        "plus the longest outage, or a redelivered message older than this is applied again",
    )
    retention_sweep_interval_s: float = Field(
        300, ge=0.1, le=86_400, description="how often rows past the retention are purged"
    )
    retention_batch_size: int = Field(5000, ge=1, le=100_000)
    reconciliation_interval_s: float = Field(
        600,
        ge=1,
        le=86_400,
        description="the ledger's and the exchange's workers: how often their reconciliation "
        "runs on its own, for jifen_reconciliation_violations and its alert",
    )
    worker_linger_ms: int = Field(
        5, ge=0, le=1_000, description="relay/processor: gather a burst this long after a wake-up"
    )
    retry_backoff_max_s: float = Field(10.0, gt=0)

    admin_token: SecretStr = SecretStr(DEV_ADMIN_TOKEN)
    jwt_secret: SecretStr = Field(
        SecretStr(DEV_JWT_SECRET),
        description="HS256 secret for user tokens (development); unused once "
        "JIFEN_JWT_JWKS_URL is set",
    )
    jwt_jwks_url: str = Field(
        "",
        max_length=2048,
        description="the identity provider's JWKS (e.g. https://idp/.well-known/jwks.json): "
        "user tokens are then verified with its keys (RS256/ES256/EdDSA, chosen by the key), "
        "and tokens signed with JIFEN_JWT_SECRET are refused",
    )
    jwt_issuer: str = Field("", max_length=2048, description="when set, a token's iss must be it")
    jwt_audience: str = Field(
        "", max_length=2048, description="when set, a token's aud must name it"
    )
    jwt_user_claim: str = Field(
        "sub", min_length=1, max_length=128, description="the claim that holds the user id"
    )
    jwt_leeway_s: float = Field(
        30, ge=0, le=600, description="clock skew allowed when checking exp, nbf and iat"
    )
    jwt_jwks_refresh_s: float = Field(
        300,
        ge=5,
        le=86_400,
        description="how often the JWKS is fetched again in the background",
    )
    jwt_jwks_min_refetch_s: float = Field(
        10,
        ge=1,
        le=3600,
        description="a token naming a kid not cached fetches the JWKS at once, but at most "
        "this often (so made-up kids cannot flood the identity provider)",
    )
    service_credentials: dict[str, ServiceCredential] = Field(
        default_factory=dev_service_credentials,
        description='token -> {"service", "scopes"}: the services that may call this one, and '
        "for what (the admin token may do everything; a service only what its scopes say)",
    )
    service_token: SecretStr = Field(
        SecretStr(""),
        description="the credential this service presents when it calls another (empty: the "
        "dev one for its name, refused when JIFEN_ENV=prod)",
    )
    ingest_keys: dict[str, list[str]] = Field(
        default_factory=lambda: {DEV_INGEST_KEY: ["*"]},
        description='API key -> sources it may publish for ("*" = any), e.g. {"k1": ["app"]}',
    )

    rate_limit_key_per_s: float = Field(
        2000, ge=0, le=1_000_000, description="requests/s per ingest key (0: no limit)"
    )
    rate_limit_key_burst: float = Field(4000, ge=1, le=10_000_000)
    rate_limit_user_per_s: float = Field(
        20, ge=0, le=1_000_000, description="requests/s per user token (0: no limit)"
    )
    rate_limit_user_burst: float = Field(50, ge=1, le=10_000_000)
    rate_limit_ip_per_s: float = Field(
        100, ge=0, le=1_000_000, description="anonymous requests/s per client IP (0: no limit)"
    )
    rate_limit_ip_burst: float = Field(200, ge=1, le=10_000_000)
    max_body_bytes: int = Field(
        8 * 1024 * 1024,  # a campaign of 100,000 user ids is under 7 MB
        ge=1024,
        le=256 * 1024 * 1024,
        description="a request body larger than this is refused with 413 before it is parsed",
    )

    gc_young_threshold: int = Field(
        50_000,
        ge=0,
        le=10_000_000,
        description="allocations between young-generation garbage collections (Python's "
        "default is 700); the objects that exist once the service has started are frozen out "
        "of collection. 0 leaves the interpreter's defaults alone",
    )
    opentelemetry: bool = Field(
        False,
        description="record OpenTelemetry spans (HTTP requests, messages consumed and "
        "published) and export them as the standard OTEL_* variables say (OTLP to "
        "OTEL_EXPORTER_OTLP_ENDPOINT by default; shared/tracing.py). Off, a traceparent that "
        "arrives is still carried through every hop, into logs and error bodies, and nothing "
        "else is done",
    )

    business_timezone: str = "Asia/Shanghai"
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("business_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @field_validator("jwt_jwks_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("JIFEN_JWT_JWKS_URL must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_prod(self) -> JifenSettings:
        if self.env == "prod":
            if self.admin_token.get_secret_value() == DEV_ADMIN_TOKEN:
                raise ValueError(
                    "JIFEN_ADMIN_TOKEN must be set to a real secret when JIFEN_ENV=prod"
                )
            # with a JWKS the secret verifies nothing, so it need not be set at all
            secret = self.jwt_secret.get_secret_value()
            if not self.jwt_jwks_url and secret == DEV_JWT_SECRET:
                raise ValueError(
                    "JIFEN_JWT_SECRET must be set to a real secret when JIFEN_ENV=prod "
                    "(or JIFEN_JWT_JWKS_URL to the identity provider's keys)"
                )
            if DEV_INGEST_KEY in self.ingest_keys:
                raise ValueError(
                    "JIFEN_INGEST_KEYS must not contain the dev key when JIFEN_ENV=prod"
                )
            if not self.jwt_jwks_url and len(secret) < 32:
                raise ValueError("JIFEN_JWT_SECRET must be at least 32 characters")
            dev_tokens = set(dev_service_credentials())
            if dev_tokens & set(self.service_credentials):
                raise ValueError(
                    "JIFEN_SERVICE_CREDENTIALS must not contain the dev tokens when JIFEN_ENV=prod"
                )
            if self.service_token.get_secret_value() in dev_tokens:
                raise ValueError("JIFEN_SERVICE_TOKEN must be a real secret when JIFEN_ENV=prod")
        return self

    @property
    def outbound_token(self) -> str:
        """What this service presents when it calls another one."""
        token = self.service_token.get_secret_value()
        if token:
            return token
        if self.env == "prod":
            raise ValueError(f"JIFEN_SERVICE_TOKEN must be set for {self.service_name} in prod")
        return dev_service_token(self.service_name)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.business_timezone)

    @property
    def serves_api(self) -> bool:
        return self.role in ("all", "api")

    @property
    def runs_workers(self) -> bool:
        return self.role in ("all", "worker")

    @property
    def consumer_group_prefix(self) -> str:
        return GROUP_PREFIX
