"""How long earned points stay valid, as loyalty programmes state it, and the one function that
turns that into an expiry instant.

- `days`: N days (of 24 hours) after earning.
- `months_end`: until the end of the Nth month after the month of earning, in the business
  timezone (earned 2026-03-15, N=12: valid through 2027-03-31, expiring 2027-04-01 00:00).
  N=0 is the end of the month of earning.
- `year_end`: until the end of the Nth year after the year of earning (N=1 "valid until the end
  of next year"; N=0 "年底清零", this year's end).

The calendar modes expire at local midnight on the first day after the last valid one. Where a
timezone skips that midnight (a DST change at 00:00), the expiry is the first instant of that
day; where it repeats it, the earlier of the two.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

ValidityMode = Literal["days", "months_end", "year_end"]
VALIDITY_MODES: tuple[ValidityMode, ...] = ("days", "months_end", "year_end")
# The largest N per mode: about a century each, so an expiry stays well inside datetime's range.
MAX_N: dict[str, int] = {"days": 36500, "months_end": 1200, "year_end": 100}
# The business timezone's default (JifenSettings.business_timezone): for callers given none.
DEFAULT_TZ = ZoneInfo("Asia/Shanghai")


class Validity(BaseModel):
    """How long a lot stays valid: `{mode: days | months_end | year_end, n}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: ValidityMode = Field("days", description="days | months_end | year_end")
    n: int = Field(
        ge=0,
        le=36500,
        description="days (at least 1); or months / years after the one of earning "
        "(0: the end of that month / year)",
    )

    @model_validator(mode="after")
    def _n_fits_the_mode(self) -> Validity:
        if self.mode == "days" and self.n < 1:
            raise ValueError("a validity in days needs n >= 1")
        if self.n > MAX_N[self.mode]:
            raise ValueError(f"n is at most {MAX_N[self.mode]} for {self.mode}")
        return self

    @classmethod
    def of_days(cls, days: int) -> Validity:
        return cls(mode="days", n=days)

    @property
    def days(self) -> int | None:
        """N when the mode is days (what the older `*_validity_days` fields hold), else None."""
        return self.n if self.mode == "days" else None


def expires_at_for(earned_at: datetime, validity: Validity, tz: tzinfo = DEFAULT_TZ) -> datetime:
    """The instant points earned at `earned_at` (aware) expire, `tz` being the business
    timezone the calendar modes count in. Returned in UTC for the calendar modes."""
    if validity.mode == "days":
        return earned_at + timedelta(days=validity.n)
    local = earned_at.astimezone(tz)
    if validity.mode == "months_end":
        # months since year 0 of the first month after the last valid one
        index = local.year * 12 + (local.month - 1) + validity.n + 1
        year, month0 = divmod(index, 12)
        boundary = datetime(year, month0 + 1, 1, tzinfo=tz)
    else:
        boundary = datetime(local.year + validity.n + 1, 1, 1, tzinfo=tz)
    return _first_instant(boundary).astimezone(UTC)


def _first_instant(wall: datetime) -> datetime:
    """`wall` (local midnight) as a real instant: fold=0 takes the earlier of a repeated time;
    a skipped one maps past the gap, to the first instant of the new local day."""
    instant = wall.replace(fold=0)
    utc = instant.astimezone(UTC)
    if utc.astimezone(wall.tzinfo).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return instant
    # Skipped: the offset before the change put it at the change itself or after; the
    # instant of the change is the first of the day. Walk back to it (a gap is under a day).
    before = utc - timedelta(hours=24)
    while before.astimezone(wall.tzinfo).replace(tzinfo=None) < wall.replace(tzinfo=None):
        before += timedelta(minutes=15)
    return before.astimezone(UTC)


def validity_of(validity: Validity | dict[str, object] | None, days: int | None) -> Validity | None:
    """A stored validity (a `{mode, n}` object) or, for rows from before the modes, the number
    of days they kept."""
    if validity is not None:
        return validity if isinstance(validity, Validity) else Validity.model_validate(validity)
    return Validity.of_days(days) if days else None
