from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from shared.settings import JifenSettings

IosProvider = Literal["apns", "webhook", "log"]
AndroidProvider = Literal["fcm", "webhook", "log"]


class Settings(JifenSettings):
    service_name: str = "notifier"
    database_name: str = "jifen_notifier"
    ledger_url: str = Field(
        "http://127.0.0.1:8003", description="rewards_ledger, asked which points expire soon"
    )
    ledger_timeout_s: float = Field(10.0, gt=0, le=120)
    expiry_scan_page: int = Field(
        10_000, ge=100, le=50_000, description="expiring lots read from the ledger per page"
    )

    # Delivery: which provider each platform's devices go to.
    ios_provider: IosProvider = Field("log", description="apns in production")
    android_provider: AndroidProvider = Field("log", description="fcm in production")
    web_provider: AndroidProvider = Field("log", description="fcm (web push) or a webhook")
    log_path: str = Field(
        ".data/notifications.log",
        description="the log provider appends one JSON line per message here",
    )
    webhook_url: str = Field("http://127.0.0.1:9/push", description="the webhook provider's URL")
    apns_url: str = Field("https://api.push.apple.com", description="APNs HTTP/2 endpoint")
    apns_topic: str = Field("com.example.jifen", description="the app's bundle id")
    apns_team_id: str = Field("TEAMID0000", min_length=1, max_length=20)
    apns_key_id: str = Field("KEYID00000", min_length=1, max_length=20)
    apns_key_path: str = Field("", description="the .p8 token-signing key (ES256)")
    apns_ca_file: str = Field(
        "", description="extra CA bundle to trust (a test server's); empty: the system's"
    )
    fcm_url: str = Field("https://fcm.googleapis.com", description="FCM HTTP v1 endpoint")
    fcm_project_id: str = Field(
        "", max_length=100, description="the Firebase project; empty: the credentials' project"
    )
    fcm_service_account_path: str = Field(
        "",
        description="a service-account key file (JSON); empty or no file there: application "
        "default credentials (workload identity, GOOGLE_APPLICATION_CREDENTIALS)",
    )
    webhook_secret: SecretStr = SecretStr("")
    provider_timeout_s: float = Field(10.0, gt=0, le=120)
    provider_concurrency: int = Field(
        64, ge=1, le=2_000, description="requests in flight to the providers per replica"
    )

    # The dispatcher.
    dispatch_batch: int = Field(500, ge=1, le=10_000, description="notifications per claim")
    dispatch_poll_s: float = Field(1.0, gt=0, le=3600)
    dispatch_loops: int = Field(
        2,
        ge=1,
        le=16,
        description="dispatch loops per replica: while one waits on the providers another "
        "claims and records its batch",
    )
    dispatch_lease_s: float = Field(
        120.0,
        ge=5,
        le=3600,
        description="a claimed notification not recorded within this long (its replica "
        "died mid-send) is claimed again",
    )
    max_attempts: int = Field(6, ge=1, le=50, description="attempts before a delivery fails")
    retry_base_s: float = Field(2.0, gt=0, le=3600, description="first retry delay; doubles")
    retry_max_s: float = Field(600.0, gt=0, le=86_400)

    # Not too much: quiet hours and caps (per user's calendar day in their timezone).
    quiet_start: str = Field("22:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    quiet_end: str = Field("08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    quiet_hours_transactional: bool = Field(
        False, description="also hold transactional messages (shipping, tier) in quiet hours"
    )
    cap_daily: int = Field(
        3, ge=0, le=100, description="reminders + marketing per user per local day"
    )
    cap_marketing_daily: int = Field(1, ge=0, le=100, description="marketing per user per day")

    # Triggers: the local time each daily trigger fires.
    expiry_reminder_at: str = Field("09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    expiry_reminder_days: list[int] = Field(
        default_factory=lambda: [7, 3, 1],
        description="remind this many days before points expire",
    )
    streak_reminder_at: str = Field("20:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    streak_reminder_min: int = Field(2, ge=1, le=365)
    tasks_reminder_at: str = Field("18:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    tasks_reminder_lookback_days: int = Field(
        7, ge=1, le=60, description="a daily task done within this many days counts as a habit"
    )
    trigger_poll_s: float = Field(30.0, gt=0, le=3600)
    campaign_chunk: int = Field(1000, ge=1, le=50_000, description="recipients per chunk")
    campaign_poll_s: float = Field(2.0, gt=0, le=3600)
    expiry_copy_experiment: str = Field(
        "expiry_reminder_copy",
        max_length=64,
        description="the A/B experiment choosing the expiry reminder's copy ('' turns it off)",
    )
    yuan_per_100_points: float = Field(
        1.0, gt=0, le=10_000, description="what 100 points are worth, for the 'value' copy"
    )
    records_days_kept: int = Field(
        180, ge=1, le=3650, description="notifications and attempts kept this long"
    )

    @property
    def records_hours(self) -> float:
        """Never less than the dedupe retention: a notification's id is what keeps its cause,
        read again from Kafka, from queueing it a second time."""
        return max(self.records_days_kept * 24.0, float(self.dedupe_retention_hours))
