"""The console's configuration: operators, the session, and where the services answer."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from console.passwords import PasswordHash
from shared.settings import JifenSettings, dev_service_credentials

DEV_CONSOLE_SECRET = "dev-console-secret-change-me-in-production"
DEV_CONSOLE_PASSWORD = "dev-console-password"
ROLES = ("viewer", "operator", "admin")


class Operator(BaseModel):
    role: str
    password_hash: str = Field(
        description="from `python -m console.passwords` (argon2id; an older scrypt hash still "
        "works and is upgraded at the operator's next sign-in)"
    )

    @field_validator("role")
    @classmethod
    def _known_role(cls, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        return role

    @field_validator("password_hash")
    @classmethod
    def _parses(cls, value: str) -> str:
        PasswordHash.parse(value)
        return value


def default_service_urls(base_port: int = 8000, host: str = "127.0.0.1") -> dict[str, str]:
    from services.suite import SERVICES

    return {name: f"http://{host}:{base_port + offset}" for name, offset in SERVICES.items()}


class Settings(JifenSettings):
    service_name: str = "console"
    database_name: str = "jifen_console"
    db_pool_size: int = Field(4, ge=1, le=200)

    console_users: dict[str, Operator] = Field(
        default_factory=dict,
        description='operators: {"name": {"role": "viewer|operator|admin", "password_hash": '
        '"$argon2id$..."}}; empty outside prod means the dev operators admin, operator and '
        "viewer with the dev password",
    )
    console_secret: SecretStr = Field(
        SecretStr(DEV_CONSOLE_SECRET), description="signs the session cookie"
    )
    console_session_ttl_s: int = Field(
        8 * 3600, ge=60, le=7 * 86_400, description="a session ends this long after sign-in"
    )
    console_idle_timeout_s: int = Field(
        1800, ge=60, le=86_400, description="a session ends after this long without a request"
    )
    console_signin_failures: int = Field(
        5,
        ge=0,
        le=1000,
        description="wrong passwords in a row an operator name may take before sign-in for it "
        "slows to one attempt per console_signin_cooldown_s (0: no throttle); a client "
        "address may take four times as many across names",
    )
    console_signin_cooldown_s: float = Field(60.0, gt=0, le=86_400)
    redis_url: str = Field(
        "",
        description="Valkey (or Redis) where the sign-in throttle counts wrong passwords, "
        "shared by every console replica (the server engagement uses will do); unset, or "
        "while it cannot be reached, each process counts its own",
    )
    redis_timeout_s: float = Field(
        0.5, gt=0, le=10, description="per call to Valkey before a sign-in is throttled locally"
    )
    console_cookie_secure: bool = Field(
        False, description="send the session cookie over HTTPS only (set true behind TLS)"
    )
    console_allowed_origins: list[str] = Field(
        default_factory=list,
        description="origins a write may come from besides the console's own (behind a proxy "
        "that rewrites Host, name the public origin here)",
    )
    console_service_urls: dict[str, str] = Field(
        default_factory=default_service_urls,
        description="where each service answers, e.g. "
        '{"rewards_ledger": "http://rewards_ledger:8003", ...}',
    )
    console_service_timeout_s: float = Field(5.0, gt=0, le=60)
    console_status_interval_s: float = Field(
        30.0, ge=1, le=3600, description="how often reconciliation and consumer lag are re-read"
    )

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_prod(self) -> Settings:
        """Replaces the services' check of the same name: the console accepts no calls
        (operators sign in with passwords), so the admin token, the JWT secret, the ingest
        keys and the service credentials are not its to hold. It needs its own secrets."""
        if self.env == "prod":
            if self.console_secret.get_secret_value() == DEV_CONSOLE_SECRET:
                raise ValueError("JIFEN_CONSOLE_SECRET must be set when JIFEN_ENV=prod")
            if len(self.console_secret.get_secret_value()) < 32:
                raise ValueError("JIFEN_CONSOLE_SECRET must be at least 32 characters")
            if not self.console_users:
                raise ValueError("JIFEN_CONSOLE_USERS must name the operators when JIFEN_ENV=prod")
            for name, operator in self.console_users.items():
                # one hash per operator, once at start-up
                if PasswordHash.parse(operator.password_hash).verify(DEV_CONSOLE_PASSWORD):
                    raise ValueError(f"JIFEN_CONSOLE_USERS: {name} has the dev password")
            token = self.service_token.get_secret_value()
            if not token or token in dev_service_credentials():
                raise ValueError(
                    "JIFEN_SERVICE_TOKEN must be the console's real credential when JIFEN_ENV=prod"
                )
        return self

    def operators(self) -> dict[str, Operator]:
        """The configured operators; outside prod with none configured, the dev three."""
        if self.console_users:
            return dict(self.console_users)
        dev_hash = PasswordHash.create(DEV_CONSOLE_PASSWORD).encode()
        return {role: Operator(role=role, password_hash=dev_hash) for role in ROLES}
