"""Validity modes: days, the end of the Nth month and the end of the Nth year after earning, in
the business timezone; how assets, rules, grants and settings state them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.rewards_ledger.schemas import AssetIn, CreditRequest
from services.rewards_ledger.service import grant_to_credit
from services.rewards_ledger.settings import Settings
from services.task_progress.domain import Rule
from services.task_progress.events import Output
from services.task_progress.schemas import TaskCreate, TaskPatch, sync_validity
from services.task_progress.service.rules import rule_snapshot
from shared.events import GrantCommand
from shared.validity import Validity, expires_at_for, validity_of

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def at(tz: ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=tz)


def expiry(earned: datetime, mode: str, n: int, tz: ZoneInfo = SHANGHAI) -> datetime:
    return expires_at_for(earned, Validity.model_validate({"mode": mode, "n": n}), tz)


# --- the date math -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("earned", "n", "end"),
    [
        ((2026, 3, 15, 10), 12, (2027, 4, 1)),  # the brief's example
        ((2026, 3, 15, 10), 0, (2026, 4, 1)),  # this month's end
        ((2026, 11, 20), 2, (2027, 2, 1)),  # across a year
        ((2026, 12, 31, 23, 59), 13, (2028, 2, 1)),
        ((2027, 1, 31), 1, (2027, 3, 1)),  # February has 28 days in 2027
        ((2028, 1, 31), 1, (2028, 3, 1)),  # and 29 in 2028
        ((2028, 2, 29), 0, (2028, 3, 1)),
        ((2026, 1, 1), 1200, (2126, 2, 1)),
    ],
)
def test_months_end_expires_at_the_first_local_midnight_after_the_nth_month(
    earned: tuple[int, ...], n: int, end: tuple[int, int, int]
) -> None:
    got = expiry(at(SHANGHAI, *earned), "months_end", n)
    assert got == at(SHANGHAI, *end)
    assert got.tzinfo is UTC


@pytest.mark.parametrize(
    ("earned", "n", "end_year"),
    [
        ((2026, 1, 1), 1, 2028),  # "valid until the end of next year"
        ((2026, 12, 31, 23, 59, 59), 1, 2028),  # any day of 2026
        ((2026, 6, 30), 0, 2027),  # 年底清零: this year's end
        ((2024, 2, 29), 0, 2025),  # a leap day
        ((2026, 5, 1), 3, 2030),
    ],
)
def test_year_end_expires_at_new_year_after_the_nth_year(
    earned: tuple[int, ...], n: int, end_year: int
) -> None:
    assert expiry(at(SHANGHAI, *earned), "year_end", n) == at(SHANGHAI, end_year, 1, 1)


def test_the_month_and_the_year_of_earning_are_the_business_timezones() -> None:
    # 2026-12-31 17:00 UTC is already 2027-01-01 01:00 in Shanghai
    earned = datetime(2026, 12, 31, 17, tzinfo=UTC)
    assert expiry(earned, "year_end", 0) == at(SHANGHAI, 2028, 1, 1)
    assert expiry(earned, "year_end", 0, NEW_YORK) == at(NEW_YORK, 2027, 1, 1)
    assert expiry(earned, "months_end", 0) == at(SHANGHAI, 2027, 2, 1)
    assert expiry(earned, "months_end", 0, NEW_YORK) == at(NEW_YORK, 2027, 1, 1)


def test_shanghai_has_no_dst_the_boundaries_are_always_16_00_utc() -> None:
    for month in range(1, 13):
        got = expiry(at(SHANGHAI, 2026, month, 10), "months_end", 0)
        assert (got.hour, got.minute) == (16, 0)


def test_a_timezone_with_dst_uses_the_offset_of_the_boundary_itself() -> None:
    earned = at(BERLIN, 2026, 3, 15, 12)  # CET (+01:00), before the change of 29 March
    assert expiry(earned, "months_end", 3, BERLIN) == datetime(2026, 6, 30, 22, tzinfo=UTC)
    assert expiry(earned, "months_end", 7, BERLIN) == datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert expiry(earned, "year_end", 0, BERLIN) == datetime(2026, 12, 31, 23, tzinfo=UTC)
    summer = at(NEW_YORK, 2026, 7, 4)
    assert expiry(summer, "months_end", 0, NEW_YORK) == datetime(2026, 8, 1, 4, tzinfo=UTC)
    assert expiry(summer, "months_end", 4, NEW_YORK) == datetime(2026, 12, 1, 5, tzinfo=UTC)


def test_a_skipped_midnight_expires_at_the_first_instant_of_the_day() -> None:
    # Paraguay moved its clocks from 00:00 to 01:00 on 1 October 2023: that midnight never was
    asuncion = ZoneInfo("America/Asuncion")
    got = expiry(at(asuncion, 2023, 9, 15), "months_end", 0, asuncion)
    assert got == datetime(2023, 10, 1, 4, tzinfo=UTC)
    assert got.astimezone(asuncion).replace(tzinfo=None) == datetime(2023, 10, 1, 1)
    assert (got - timedelta(microseconds=1)).astimezone(asuncion).day == 30


def test_days_are_periods_of_24_hours_from_earning_whatever_the_timezone() -> None:
    earned = at(BERLIN, 2026, 3, 28, 12)  # the night before the clocks go forward
    assert expiry(earned, "days", 2, BERLIN) == earned + timedelta(days=2)
    assert expiry(at(SHANGHAI, 2028, 2, 28, 9), "days", 2) == at(SHANGHAI, 2028, 3, 1, 9)


def test_a_validity_is_checked_per_mode() -> None:
    for bad in (
        {"mode": "days", "n": 0},
        {"mode": "months_end", "n": 1201},
        {"mode": "year_end", "n": 101},
        {"mode": "year_end", "n": -1},
        {"mode": "weeks", "n": 1},
        {"mode": "days", "n": 3, "extra": 1},
    ):
        with pytest.raises(ValidationError):
            Validity.model_validate(bad)
    assert Validity.model_validate({"n": 30}) == Validity.of_days(30)
    assert validity_of({"mode": "year_end", "n": 1}, 30) == Validity(mode="year_end", n=1)
    assert validity_of(None, 30) == Validity.of_days(30)
    assert validity_of(None, None) is None


# --- where validities are stated --------------------------------------------------------------


def grant(**fields: object) -> GrantCommand:
    base = {
        "grant_id": "g",
        "user_id": "u",
        "points": 5,
        "task_id": "t",
        "period_key": "p",
        "completion": 1,
        "causation_event_id": "b",
        "occurred_at": at(SHANGHAI, 2026, 3, 15, 10),
    }
    return GrantCommand.model_validate({**base, **fields})


def test_the_ledger_takes_the_grants_instant_else_its_validity_else_the_default() -> None:
    default = Validity(mode="months_end", n=12)
    assert grant_to_credit(grant(), default, True, SHANGHAI).expires_at == at(SHANGHAI, 2027, 4, 1)
    own = grant(validity={"mode": "year_end", "n": 1})
    assert grant_to_credit(own, default, True, SHANGHAI).expires_at == at(SHANGHAI, 2028, 1, 1)
    instant = at(SHANGHAI, 2026, 9, 9)
    told = grant(validity={"mode": "year_end", "n": 1}, expires_at=instant.isoformat())
    assert grant_to_credit(told, default, True, SHANGHAI).expires_at == instant
    assert grant_to_credit(own, default, False, SHANGHAI).expires_at is None
    # a number is days, as before the modes
    assert grant_to_credit(grant(), 10, True).expires_at == at(SHANGHAI, 2026, 3, 25, 10)


def test_a_grant_without_validity_reads_as_before() -> None:
    old = json.loads(grant().model_dump_json())
    old.pop("validity")
    assert GrantCommand.model_validate(old).validity is None


def test_points_default_validity_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().points_validity == Validity.of_days(365)
    monkeypatch.setenv("JIFEN_DEFAULT_POINTS_VALIDITY", '{"mode": "year_end", "n": 1}')
    assert Settings().points_validity == Validity(mode="year_end", n=1)


def test_an_asset_states_its_default_validity_either_way() -> None:
    base = {"code": "lantern", "name": "灯笼", "spendable": True, "expires": True}
    by_days = AssetIn.model_validate({**base, "default_validity_days": 30})
    assert by_days.default_validity == Validity.of_days(30)
    year_end = AssetIn.model_validate({**base, "default_validity": {"mode": "year_end", "n": 0}})
    assert year_end.default_validity_days is None
    with pytest.raises(ValidationError):
        AssetIn.model_validate(
            {**base, "default_validity_days": 30, "default_validity": {"mode": "year_end", "n": 0}}
        )
    with pytest.raises(ValidationError):
        CreditRequest.model_validate(
            {
                "points": 1,
                "idempotency_key": "k",
                "reason": "r",
                "validity_days": 3,
                "validity": {"mode": "days", "n": 3},
            }
        )


def test_a_rule_states_its_validity_either_way() -> None:
    base = {"name": "n", "action": "like", "reward_points": 1}
    assert TaskCreate.model_validate({**base, "points_validity_days": 30}).validity == (
        Validity.of_days(30)
    )
    months = TaskCreate.model_validate({**base, "validity": {"mode": "months_end", "n": 12}})
    assert months.points_validity_days is None
    days = TaskCreate.model_validate({**base, "validity": {"mode": "days", "n": 7}})
    assert days.points_validity_days == 7
    with pytest.raises(ValidationError):
        TaskCreate.model_validate(
            {**base, "points_validity_days": 30, "validity": {"mode": "year_end", "n": 1}}
        )


def test_a_patch_keeps_both_fields_in_step() -> None:
    year_end = Validity(mode="year_end", n=1)

    def patched(body: dict, current: Validity | None = None) -> dict:
        changes = TaskPatch.model_validate(body).model_dump(exclude_unset=True)
        sync_validity(changes, current)
        return changes

    assert patched({"validity": {"mode": "year_end", "n": 1}}) == {
        "validity": {"mode": "year_end", "n": 1},
        "points_validity_days": None,
    }
    assert patched({"points_validity_days": 9}) == {
        "validity": {"mode": "days", "n": 9},
        "points_validity_days": 9,
    }
    assert patched({"validity": None}, year_end) == {"validity": None, "points_validity_days": None}
    # a form that sends its days field empty does not wipe a year-end validity...
    assert patched({"points_validity_days": None}, year_end)["validity"] == year_end.model_dump()
    # ... and clears one in days
    assert patched({"points_validity_days": None}, Validity.of_days(3))["validity"] is None
    assert patched({"name": "x"}) == {"name": "x"}
    with pytest.raises(ValueError, match="not both"):
        patched({"validity": {"mode": "year_end", "n": 1}, "points_validity_days": 3})


def test_a_rules_version_records_its_validity() -> None:
    base = {"name": "n", "action": "like", "reward_points": 1}
    days = rule_snapshot(
        TaskCreate.model_validate({**base, "points_validity_days": 30}).model_dump()
    )
    months = rule_snapshot(
        TaskCreate.model_validate(
            {**base, "validity": {"mode": "months_end", "n": 30}}
        ).model_dump()
    )
    assert days["validity"] == {"mode": "days", "n": 30}
    assert months["validity"] == {"mode": "months_end", "n": 30} and days != months


def test_a_grant_of_a_rule_with_a_validity_carries_it_and_its_instant() -> None:
    rule = Rule(
        id="t1",
        action="like",
        kind="count",
        reward_points=3,
        period="day",
        validity=Validity(mode="year_end", n=0),
    )
    earned = datetime(2026, 12, 31, 17, tzinfo=UTC)  # 2027 in Shanghai
    for tz, end in ((SHANGHAI, at(SHANGHAI, 2028, 1, 1)), (NEW_YORK, at(NEW_YORK, 2027, 1, 1))):
        out = Output(tz=tz)
        kw = {"period_key": "p", "completion": 1, "cause": "b", "available_at": None, "what": ""}
        out.grant(rule, "u", grant_id="g", asset="points", points=3, occurred_at=earned, **kw)
        sent = GrantCommand.model_validate_json(str(out.outgoing[0].payload))
        assert sent.expires_at == end == out.grant_rows[0]["expires_at"]
        assert sent.validity == Validity(mode="year_end", n=0)
    none = Output()
    none.grant(
        Rule(id="t2", action="like", kind="count", reward_points=3, period="day"),
        "u",
        grant_id="g2",
        asset="points",
        points=3,
        occurred_at=earned,
        **kw,
    )
    sent = GrantCommand.model_validate_json(str(none.outgoing[0].payload))
    assert (sent.expires_at, sent.validity) == (None, None)  # the ledger's default applies
