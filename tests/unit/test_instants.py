"""Instants and days a client sends are held to 1970-2999: the ends of Python's range (year
1 at +14:00, 9999-12-31 at -14:00) would otherwise fail inside a handler as a 500."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.instants import Day, Instant

INSTANT = TypeAdapter(Instant)
DAY = TypeAdapter(Day)


@pytest.mark.parametrize(
    "value",
    ["1970-01-01T00:00:00Z", "2026-12-01T09:00:00+08:00", "2999-12-31T09:59:59-14:00"],
)
def test_ordinary_instants_pass(value: str) -> None:
    assert INSTANT.validate_python(value).tzinfo is not None


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+14:00",  # year 0 in UTC: no Python datetime
        "9999-12-31T23:59:59-14:00",  # year 10000 in UTC
        "1969-12-31T23:59:59Z",
        "3000-01-01T00:00:00Z",
        "2026-12-01T09:00:00",  # no offset: ambiguous
    ],
)
def test_instants_out_of_range_or_naive_are_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        INSTANT.validate_python(value)


def test_days_are_held_to_the_same_years() -> None:
    assert DAY.validate_python("2026-12-01") == date(2026, 12, 1)
    for value in ("0001-01-01", "9999-12-31", "1969-12-31", "3000-01-01"):
        with pytest.raises(ValidationError):
            DAY.validate_python(value)
