from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

EXPERIMENT_KEY = r"^[a-z0-9][a-z0-9._\-]{0,63}$"
VARIANT_KEY = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$"


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=VARIANT_KEY)
    weight: float = Field(gt=0, le=1000, description="relative share of users (normalised)")


class MetricIn(BaseModel):
    """What the experiment measures per exposed user, within `window_days` of the exposure:
    a conversion (at least one such event; its denominator is the users exposed) or the
    mean of the events' amounts (points for redemption / points_spent)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["conversion", "mean"]
    event: Literal["redemption", "points_spent", "notification_opened"]
    window_days: int = Field(14, ge=1, le=90)


class NamespaceIn(BaseModel):
    """A slice of a namespace: experiments in one namespace with disjoint slices never
    share a user (GrowthBook's namespaces)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    start: float = Field(ge=0, le=1)
    end: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> NamespaceIn:
        if self.end <= self.start:
            raise ValueError("namespace end must be after its start")
        return self


class ExperimentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    key: str = Field(pattern=EXPERIMENT_KEY)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=5000)
    variants: list[VariantIn] = Field(min_length=2, max_length=10)
    metric: MetricIn
    namespace: NamespaceIn | None = None
    coverage: float = Field(1.0, gt=0, le=1, description="share of users in the experiment")
    seed: str | None = Field(None, min_length=1, max_length=64, description="default: the key")
    hash_version: Literal[1, 2] = 2
    status: Literal["draft", "running", "stopped"] = "draft"

    @model_validator(mode="after")
    def _distinct_variants(self) -> ExperimentCreate:
        keys = [v.key for v in self.variants]
        if len(set(keys)) != len(keys):
            raise ValueError("variant keys must be distinct")
        return self


class StatusPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["draft", "running", "stopped"]


class ExperimentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # read from a stored Experiment

    key: str
    name: str
    description: str
    variants: list[dict[str, Any]]
    metric: dict[str, Any]
    namespace: list[Any] | None
    coverage: float
    seed: str | None
    hash_version: int
    status: str
    created_at: datetime
    updated_at: datetime


class ExperimentList(BaseModel):
    items: list[ExperimentOut]
    total: int
    limit: int
    offset: int


class AssignmentOut(BaseModel):
    experiment: str
    user_id: str
    variant: str | None = Field(description="null: not in the experiment (or not running)")
    in_experiment: bool
    status: str


class VariantResult(BaseModel):
    key: str
    weight: float
    n: int = Field(description="users exposed")
    conversions: int = Field(description="exposed users with the metric's event in the window")
    rate: float | None = None
    mean: float | None = None
    total: float | None = None
    ci: list[float] | None = Field(description="95% interval of the rate (Wilson) or the mean")
    lift: float | None = Field(description="relative to the control (first) variant")
    p_value: float | None
    statistic: float | None
    df: float | None = None


class SrmOut(BaseModel):
    chi_square: float | None
    p_value: float | None
    threshold: float
    mismatch: bool


class ResultsOut(BaseModel):
    experiment: str
    status: str
    metric: dict[str, Any]
    test: str
    control: str
    variants: list[VariantResult]
    exposures: int
    srm: SrmOut
    unknown_variants: list[str]


class KpiDay(BaseModel):
    day: str
    dau: int
    tasks_started: int
    tasks_completed: int
    task_completion_rate: float | None
    push_sent: int
    push_opened: int
    push_open_rate: float | None
    redemptions: int
    redeemers: int
    holders: int
    redeemer_rate: float | None
    points_issued: int
    points_redeemed: int
    points_expired: int
    redemption_rate: float | None
    expiry_rate: float | None
    earn_to_redeem_days: float | None
    nps_responses: int
    nps_promoters: int
    nps_detractors: int
    nps: float | None = Field(description="% promoters (9-10) minus % detractors (0-6)")
    assets: dict[str, dict[str, int]]


class KpiSeries(BaseModel):
    from_: str = Field(alias="from")
    to: str
    asset: str
    items: list[KpiDay]


class KpiTarget(BaseModel):
    kpi: str
    value: float | None
    target: float
    comparison: str
    met: bool | None
    description: str


class KpiSummary(BaseModel):
    from_: str = Field(alias="from")
    to: str
    asset: str
    items: list[KpiTarget]
    values: dict[str, float | None]


KPI_NAME = r"^[a-z][a-z0-9_]{0,31}$"


class StoredKpiTarget(BaseModel):
    kpi: str
    target: float
    comparison: Literal[">=", "<="]
    description: str
    default: float = Field(description="the seed's target")
    updated_by: str | None = Field(description="who set it last (`seed`: the migration)")
    updated_at: datetime | None


class KpiTargets(BaseModel):
    items: list[StoredKpiTarget]


class KpiTargetPut(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    target: float = Field(ge=-1e9, le=1e9, allow_inf_nan=False)
    operator: str | None = Field(
        None, min_length=1, max_length=64, description="the person asking (audit), if known"
    )
    reason: str = Field("", max_length=500)


class KpiTargetChange(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # read from a stored TargetChange

    id: int
    kpi: str
    old_target: float
    new_target: float
    changed_by: str
    operator: str | None
    reason: str
    changed_at: datetime


class KpiTargetHistory(BaseModel):
    kpi: str
    items: list[KpiTargetChange]


class HealthReason(BaseModel):
    signal: str
    status: Literal["healthy", "warning", "critical"]
    value: float | None
    threshold: float | None
    message: str


class BusinessHealth(BaseModel):
    status: Literal["healthy", "warning", "critical"]
    reasons: list[HealthReason]
    checked_at: datetime


class RecommendedItem(BaseModel):
    item_id: str
    name: str
    category: str
    points_price: int
    score: float
    reason: str


class RecommendationsOut(BaseModel):
    user_id: str
    balance: int
    strategy: Literal["personalized", "popular"]
    recommender: Literal["item_item", "user_based"] = Field(
        description="the recommender that chose the items"
    )
    experiment: str | None = Field(
        description="the experiment that assigned it (exposure logged), null for the default"
    )
    items: list[RecommendedItem]
