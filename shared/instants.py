"""Instants and days a client may send: between 1970 and 2999.

Pydantic takes any year from 1 to 9999, but the services cannot do anything with the ends of
that range: year 1 at +14:00 is year 0 in UTC, and 9999-12-31 plus a validity period or a
day of a timezone is past Python's last datetime. Both would fail deep inside a handler or
asyncpg's encoder as a 500 (the fuzzer found them). Refused at validation instead, as 422.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

FIRST_YEAR, LAST_YEAR = 1970, 2999
_EARLIEST = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)
_AFTER_LATEST = datetime(LAST_YEAR + 1, 1, 1, tzinfo=UTC)


def _instant(value: datetime) -> datetime:
    # comparing aware datetimes subtracts their offsets without building a new datetime,
    # so this is safe at the very ends of the range
    if not _EARLIEST <= value < _AFTER_LATEST:
        raise ValueError(f"must be between {FIRST_YEAR} and {LAST_YEAR}")
    return value


def _day(value: date) -> date:
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"must be between {FIRST_YEAR} and {LAST_YEAR}")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_instant)]
Day = Annotated[date, AfterValidator(_day)]
