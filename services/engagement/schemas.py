"""Requests and responses of the engagement API."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.engagement.names import NAME_MAX, NameDisplay, clean_name
from shared.events import ACTION_PATTERN, ASSET_PATTERN

CODE = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
NAME_DISPLAY = (
    "how the public reads show users: masked (张三丰 -> 张**, the default), full, or hidden "
    "(a pseudonym for everyone); never by id"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PrizeIn(_Strict):
    rank_from: int = Field(ge=1, le=100_000)
    rank_to: int = Field(ge=1, le=100_000)
    reward_type: str = Field("points", pattern=ASSET_PATTERN)
    amount: int = Field(gt=0, le=100_000_000)

    @model_validator(mode="after")
    def _ordered(self) -> PrizeIn:
        if self.rank_to < self.rank_from:
            raise ValueError("rank_to must not be below rank_from")
        return self


class BoardCreate(_Strict):
    code: str = Field(pattern=CODE)
    name: str = Field(min_length=1, max_length=200)
    metric: Literal["points_earned", "growth_earned", "action_count"]
    action: str | None = Field(None, pattern=ACTION_PATTERN)
    window: Literal["day", "week", "month", "all_time"]
    prizes: list[PrizeIn] = Field(default_factory=list, max_length=100)
    name_display: NameDisplay = Field("masked", description=NAME_DISPLAY)

    @model_validator(mode="after")
    def _consistent(self) -> BoardCreate:
        if self.metric == "action_count" and self.action is None:
            raise ValueError("an action_count board needs the action it counts")
        if self.metric != "action_count" and self.action is not None:
            raise ValueError("action applies only to action_count boards")
        if self.window == "all_time" and self.prizes:
            raise ValueError("an all_time board never closes, so it cannot pay prizes")
        ranges = sorted((p.rank_from, p.rank_to) for p in self.prizes)
        for (_, first_to), (second_from, _) in pairwise(ranges):
            if second_from <= first_to:
                raise ValueError("prize rank ranges must not overlap")
        return self


class BoardUpdate(_Strict):
    """What may change on a live board; fields left out stay as they are."""

    name: str | None = Field(None, min_length=1, max_length=200)
    name_display: NameDisplay | None = Field(None, description=NAME_DISPLAY)


class BoardOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # reads repository.Board

    code: str
    name: str
    metric: str
    action: str | None
    window: str
    prizes: list[dict[str, Any]]
    active: bool
    created_at: datetime
    name_display: NameDisplay


class BoardList(BaseModel):
    items: list[BoardOut]


class RankedOut(BaseModel):
    rank: int
    name: str = Field(description="the display name as the board shows it (never the user id)")
    avatar_url: str | None = None
    score: int
    me: bool = Field(False, description="the signed-in user's own entry")
    user_id: str | None = Field(None, description="to operators only (admin, engagement:read)")


class TopOut(BaseModel):
    board: str
    period: str
    closed: bool
    total: int
    items: list[RankedOut]


class UserRankOut(BaseModel):
    board: str
    period: str
    user_id: str | None = Field(None, description="to operators and the user themselves")
    name: str
    avatar_url: str | None = None
    me: bool = False
    score: int
    rank: int
    total: int
    percentile: int = Field(description="the top percent the user is in, 1..100")
    percentile_label: str = Field(description='"前X%"')
    around: list[RankedOut]


class HistoryPoint(BaseModel):
    day: str
    period: str
    rank: int | None
    score: int
    live: bool = False


class HistoryOut(BaseModel):
    board: str
    user_id: str | None = Field(None, description="to operators and the user themselves")
    days: list[HistoryPoint]


class RebuildOut(BaseModel):
    board: str
    period: str
    members: int


# -- profiles -------------------------------------------------------------------------------


class ProfileIn(_Strict):
    """Fields left out stay as they are; null clears one."""

    display_name: str | None = Field(None, min_length=1, max_length=NAME_MAX)
    avatar_url: str | None = Field(None, max_length=2000, pattern=r"^https?://\S+$")

    @field_validator("display_name")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is None:
            return None
        cleaned = clean_name(value)
        if cleaned is None:
            raise ValueError("the name has no printable character")
        return cleaned


class ProfileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # reads repository.Profile

    user_id: str
    display_name: str | None
    avatar_url: str | None
    updated_at: datetime | None


# -- badges ---------------------------------------------------------------------------------


class FirstAction(_Strict):
    type: Literal["first_action"]
    action: str = Field(pattern=ACTION_PATTERN)


class ActionCount(_Strict):
    type: Literal["action_count"]
    action: str = Field(pattern=ACTION_PATTERN)
    count: int = Field(ge=1, le=10_000_000)
    within_days: int | None = Field(None, ge=1, le=3650)


class Streak(_Strict):
    type: Literal["streak"]
    days: int = Field(ge=1, le=3650)


class TotalEarned(_Strict):
    type: Literal["total_earned"]
    asset: str = Field("points", pattern=ASSET_PATTERN)
    amount: int = Field(ge=1, le=10_000_000_000)


class Redemptions(_Strict):
    type: Literal["redemptions"]
    count: int = Field(ge=1, le=1_000_000)


Criteria = Annotated[
    FirstAction | ActionCount | Streak | TotalEarned | Redemptions, Field(discriminator="type")
]


class Reward(_Strict):
    reward_type: str = Field("points", pattern=ASSET_PATTERN)
    amount: int = Field(gt=0, le=100_000_000)


class BadgeCreate(_Strict):
    code: str = Field(pattern=CODE)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    icon_url: str | None = Field(None, max_length=2000, pattern=r"^https?://\S+$")
    criteria: Criteria
    reward: Reward | None = None


class BadgeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # reads repository.Badge

    code: str
    name: str
    description: str
    icon_url: str | None
    criteria: dict[str, Any]
    reward: dict[str, Any] | None
    active: bool
    created_at: datetime


class BadgeList(BaseModel):
    items: list[BadgeOut]


class Progress(BaseModel):
    current: int
    target: int


class EarnedBadge(BadgeOut):
    awarded_at: datetime


class LockedBadge(BadgeOut):
    progress: Progress


class UserBadges(BaseModel):
    user_id: str
    earned: list[EarnedBadge]
    locked: list[LockedBadge]


# -- tiers ----------------------------------------------------------------------------------


class TierIn(_Strict):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,31}$")
    name: str = Field(min_length=1, max_length=100)
    min_growth: int = Field(ge=0, le=10_000_000_000)
    multiplier: float = Field(1.0, ge=0.1, le=100)
    benefits: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=50
    )


class TiersIn(_Strict):
    tiers: list[TierIn] = Field(min_length=1, max_length=50)


class TierOut(BaseModel):
    code: str
    name: str
    level: int
    min_growth: int
    multiplier: float
    benefits: list[str]


class LadderOut(BaseModel):
    version: int
    tiers: list[TierOut]


class AtRisk(BaseModel):
    date: str
    growth_needed: int


class UserTierOut(BaseModel):
    user_id: str
    tier: TierOut | None
    growth_in_window: int
    qualification_days: int
    window_starts: str
    since: datetime | None
    term_ends_at: datetime | None
    next_tier: TierOut | None
    growth_to_next: int | None
    at_risk: AtRisk | None
