"""Request and response bodies of the notifier's API."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.instants import Instant

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"
KEY = Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")
TEXT_NO_NUL = r"^[^\x00]*$"


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    platform: Literal["ios", "android", "web"]
    token: str = Field(min_length=8, max_length=4096, pattern=r"^[A-Za-z0-9_:\-.]+$")


class DeviceOut(BaseModel):
    user_id: str
    platform: str
    active: bool
    created: bool


class DeviceView(BaseModel):
    platform: str
    device: str = Field(description="a digest of the token (the token itself is never shown)")
    active: bool
    deactivated_reason: str | None
    created_at: datetime
    updated_at: datetime


class DeviceList(BaseModel):
    items: list[DeviceView]


class CategoriesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transactional: bool | None = Field(None, description="always on: false is refused")
    reminders: bool | None = None
    marketing: bool | None = None


class QuietHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    start: str | None = Field(None, pattern=HHMM)
    end: str | None = Field(None, pattern=HHMM)


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    categories: CategoriesIn | None = None
    quiet_hours: QuietHoursIn | None = None
    timezone: str | None = Field(None, max_length=64)
    locale: Literal["zh-CN", "en"] | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value


class QuietHoursOut(BaseModel):
    enabled: bool
    start: str
    end: str


class PreferencesOut(BaseModel):
    user_id: str
    categories: dict[str, bool]
    quiet_hours: QuietHoursOut
    timezone: str
    locale: str


class DeliveryOut(BaseModel):
    """What became of the notification on one device."""

    model_config = ConfigDict(from_attributes=True)

    device: str = Field(description="a digest of the device's token")
    platform: str
    provider: str
    status: Literal["sent", "retry", "invalid_token", "failed"]
    attempts: int
    status_code: int | None
    error: str | None
    provider_message_id: str | None
    sent_at: datetime | None
    updated_at: datetime


class NotificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # read from a stored Notification

    id: str
    user_id: str
    category: str
    trigger: str
    template: str | None
    title: str
    body: str
    data: dict[str, str] = Field(description="the trigger's variables, as sent to the device")
    status: Literal["queued", "deferred", "claimed", "sending", "suppressed", "sent", "failed"]
    reason: str | None
    due_at: datetime
    attempts: int
    provider: str | None
    provider_message_id: str | None
    campaign_id: str | None
    experiment: str | None
    variant: str | None
    created_at: datetime
    sent_at: datetime | None = Field(description="when the first device got it")
    opened_at: datetime | None
    deliveries: list[DeliveryOut] = Field(
        default_factory=list,
        description="one per device it went to (the notification is `sent` once every "
        "device is settled and one has it)",
    )


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    device: str
    provider: str
    outcome: str
    status_code: int | None
    detail: str | None
    provider_message_id: str | None
    created_at: datetime


class NotificationDetail(NotificationOut):
    attempt_log: list[AttemptOut]


class NotificationList(BaseModel):
    items: list[NotificationOut]


class Texts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200, pattern=TEXT_NO_NUL)
    body: str = Field(min_length=1, max_length=2000, pattern=TEXT_NO_NUL)


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: Literal["transactional", "reminders", "marketing"]
    texts: dict[Literal["zh-CN", "en"], Texts] = Field(min_length=1)
    variables: list[str] = Field(default_factory=list, max_length=50)

    @field_validator("variables")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.isidentifier() or len(name) > 64:
                raise ValueError(f"{name!r} is not a variable name")
        return value


class TemplateOut(BaseModel):
    code: str
    category: str
    texts: dict[str, dict[str, str]]
    variables: list[str]
    builtin: bool


class TemplateList(BaseModel):
    items: list[TemplateOut]


class Audience(BaseModel):
    """Exactly one of: a list of user ids, a tier, or everyone holding more than N points."""

    model_config = ConfigDict(extra="forbid")

    user_ids: list[Annotated[str, Field(max_length=64)]] | None = Field(
        None, min_length=1, max_length=100_000
    )
    tier: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[^\x00]+$")
    min_balance: int | None = Field(None, ge=0, le=10**15, description="balance over this")

    @field_validator("user_ids")
    @classmethod
    def _ids(cls, value: list[str] | None) -> list[str] | None:
        for user_id in value or []:
            if not 1 <= len(user_id) <= 64 or "\x00" in user_id:
                raise ValueError("user ids are 1 to 64 characters")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Audience:
        given = [v for v in (self.user_ids, self.tier, self.min_balance) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of user_ids, tier, min_balance")
        return self


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    idempotency_key: str = KEY
    name: str = Field(min_length=1, max_length=200, pattern=TEXT_NO_NUL)
    audience: Audience
    category: Literal["reminders", "marketing"] = "marketing"
    template: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.]*$")
    title: str | None = Field(None, min_length=1, max_length=200, pattern=TEXT_NO_NUL)
    body: str | None = Field(None, min_length=1, max_length=2000, pattern=TEXT_NO_NUL)
    variables: dict[str, str] = Field(default_factory=dict, max_length=50)
    send_at: Instant | None = Field(None, description="default: now")

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not name.isidentifier() or len(name) > 64:
                raise ValueError(f"{name!r} is not a variable name")
            if len(text) > 500 or "\x00" in text:
                raise ValueError(f"variable {name} is too long or holds a NUL character")
        return value

    @model_validator(mode="after")
    def _text(self) -> CampaignIn:
        if (self.template is None) == (self.title is None or self.body is None):
            raise ValueError("give a template, or a title and a body")
        return self


class CampaignOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # reads repository.Campaign

    id: str
    name: str
    audience: dict[str, Any]
    category: str
    template: str | None
    title: str | None
    body: str | None
    send_at: datetime
    status: Literal["scheduled", "expanding", "done"]
    recipients: int
    counts: dict[str, int] = Field(description="its notifications by status")
    created_at: datetime
    expanded_at: datetime | None


class CampaignList(BaseModel):
    items: list[CampaignOut]


class TriggerRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    day: date = Field(
        description="the local day to run the trigger for, within a year of today (a missed "
        "day, or one ahead to rehearse what it will send)"
    )
    timezone: str | None = Field(None, max_length=64, description="default: every timezone")
    immediate: bool = Field(True, description="due now, not at the trigger's local time")

    @field_validator("day")
    @classmethod
    def _recent(cls, value: date) -> date:
        # a run reads the ledger's lots and users' streaks as they are now: a day years away
        # means nothing (and year 27 has no UTC offset PostgreSQL or the ledger would take)
        today = datetime.now(UTC).date()
        if abs((value - today).days) > 366:
            raise ValueError("day must be within 366 days of today")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return PreferencesIn._zone(value)


class TriggerRunOut(BaseModel):
    trigger: str
    timezone: str
    day: date
    status: str
    queued: int


class TriggerRunList(BaseModel):
    items: list[TriggerRunOut]
