"""The notifier's pure rules: quiet hours, caps and opt-outs, which day reminds whom about
which expiring points, templates, backoff."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifier import domain
from services.notifier.domain import Caps, DayCount, Expiring, Preferences
from services.notifier.templates import BUILTIN

SH = ZoneInfo("Asia/Shanghai")


def at(hour: int, minute: int = 0, day: date = date(2026, 12, 1), zone: ZoneInfo = SH) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)


def test_quiet_hours_across_midnight_end_at_eight_local() -> None:
    prefs = Preferences()  # 22:00-08:00 Shanghai
    assert prefs.quiet_until(at(23, 30)) == at(8, 0, date(2026, 12, 2))
    assert prefs.quiet_until(at(3, 0)) == at(8, 0)
    assert prefs.quiet_until(at(22, 0)) == at(8, 0, date(2026, 12, 2))
    assert prefs.quiet_until(at(8, 0)) is None
    assert prefs.quiet_until(at(21, 59)) is None
    # The same instant seen from UTC: 15:30 UTC is 23:30 in Shanghai.
    assert prefs.quiet_until(datetime(2026, 12, 1, 15, 30, tzinfo=UTC)) == at(
        8, 0, date(2026, 12, 2)
    )


def test_a_daytime_window_and_a_disabled_one() -> None:
    nap = Preferences(quiet_start=time(13), quiet_end=time(14))
    assert nap.quiet_until(at(13, 30)) == at(14)
    assert nap.quiet_until(at(23)) is None
    assert Preferences(quiet_enabled=False).quiet_until(at(23)) is None
    assert Preferences(quiet_start=time(9), quiet_end=time(9)).quiet_until(at(9)) is None


def test_the_window_is_in_the_users_own_timezone_through_a_dst_change() -> None:
    prefs = Preferences(timezone="America/New_York")
    ny = ZoneInfo("America/New_York")
    # 2026-11-01 is the night clocks go back in New York: 08:00 is still 08:00 local.
    night = datetime(2026, 11, 1, 1, 30, tzinfo=ny)
    assert prefs.quiet_until(night) == datetime(2026, 11, 1, 8, 0, tzinfo=ny)


def test_opt_out_comes_first_then_quiet_hours_then_caps() -> None:
    caps = Caps(daily=3, marketing_daily=1)
    off = Preferences(reminders=False)
    assert domain.decide("reminders", off, {}, caps, at(23)).reason == "opted_out:reminders"
    deferred = domain.decide("reminders", Preferences(), {}, caps, at(23))
    assert (deferred.action, deferred.until) == ("defer", at(8, 0, date(2026, 12, 2)))
    # Transactional: never opted out, never capped, not held by quiet hours by default.
    for _ in range(10):
        assert domain.decide("transactional", off, {}, caps, at(23)).action == "send"
    held = domain.decide("transactional", Preferences(), {}, caps, at(23), quiet_transactional=True)
    assert held.action == "defer"


def test_the_fourth_of_a_day_is_suppressed_and_the_next_day_starts_over() -> None:
    caps, prefs, counts = Caps(3, 1), Preferences(), {}
    seen = [domain.decide("reminders", prefs, counts, caps, at(10 + i)) for i in range(4)]
    assert [d.action for d in seen] == ["send", "send", "send", "suppress"]
    assert seen[3].reason == "daily_cap:3"
    tomorrow = domain.decide("reminders", prefs, counts, caps, at(10, day=date(2026, 12, 2)))
    assert tomorrow.action == "send" and tomorrow.day == date(2026, 12, 2)


def test_marketing_has_its_own_smaller_cap_inside_the_daily_one() -> None:
    caps, prefs, counts = Caps(3, 1), Preferences(), {}
    assert domain.decide("marketing", prefs, counts, caps, at(10)).action == "send"
    second = domain.decide("marketing", prefs, counts, caps, at(11))
    assert (second.action, second.reason) == ("suppress", "marketing_cap:1")
    assert domain.decide("reminders", prefs, counts, caps, at(12)).action == "send"
    assert counts[date(2026, 12, 1)] == DayCount(capped=2, marketing=1)


@given(
    st.lists(st.sampled_from(["transactional", "reminders", "marketing"]), max_size=40),
    st.integers(0, 5),
    st.integers(0, 5),
)
def test_no_sequence_gets_more_than_the_caps_through(
    categories: list[str], daily: int, marketing: int
) -> None:
    caps, prefs, counts = Caps(daily, marketing), Preferences(quiet_enabled=False), {}
    sent = [c for c in categories if domain.decide(c, prefs, counts, caps, at(12)).action == "send"]
    capped = [c for c in sent if c != "transactional"]
    assert len(capped) <= daily
    assert sent.count("marketing") <= marketing
    assert sent.count("transactional") == categories.count("transactional")


def lots(*items: tuple[date, int]) -> Expiring:
    return Expiring("u", [(at(12, day=d), p) for d, p in items])


def test_expiry_reminders_fire_at_t7_t3_t1_with_the_total_and_the_first_date() -> None:
    x = date(2026, 12, 20)
    two = lots((x, 100), (x + timedelta(days=2), 50))
    seven = domain.expiry_reminder(x - timedelta(days=7), SH, two, [7, 3, 1])
    assert seven is not None
    assert (seven.points, seven.earliest, seven.days_left, seven.marks) == (100, x, 7, (7,))
    assert domain.expiry_reminder(x - timedelta(days=6), SH, two, [7, 3, 1]) is None
    three = domain.expiry_reminder(x - timedelta(days=3), SH, two, [7, 3, 1])
    assert three is not None and (three.points, three.days_left) == (150, 3)
    one = domain.expiry_reminder(x - timedelta(days=1), SH, two, [7, 3, 1])
    assert one is not None and one.marks == (1, 3) and one.points == 150
    # The day itself is too late for a reminder, and lots already expired do not count.
    assert domain.expiry_reminder(x, SH, lots((x, 100)), [7, 3, 1]) is None


def test_expiry_days_are_local_days() -> None:
    # 23:30 UTC on Dec 19 is already Dec 20 in Shanghai.
    late = Expiring("u", [(datetime(2026, 12, 19, 23, 30, tzinfo=UTC), 10)])
    assert domain.expiry_reminder(date(2026, 12, 13), SH, late, [7]) is not None
    assert domain.expiry_reminder(date(2026, 12, 12), SH, late, [7]) is None
    start, end = domain.expiry_window(date(2026, 12, 13), SH, [7, 3, 1])
    assert start == at(0, day=date(2026, 12, 14)) and end == at(0, day=date(2026, 12, 21))


def test_templates_render_in_the_locale_and_fall_back_to_chinese() -> None:
    texts = BUILTIN["points_expiring"].texts
    variables = {"points": 120, "expiry_date": "2026-12-20", "days_left": 3, "value_yuan": "1.2"}
    title, body = domain.render(texts, "en", variables)
    assert title == "Points expiring soon"
    assert body == "120 points expire on 2026-12-20. Redeem them now!"
    _, zh = domain.render(texts, "ja", variables)
    assert zh.startswith("您有120积分将于2026-12-20过期")
    _, value = domain.render(BUILTIN["points_expiring.value"].texts, "zh-CN", variables)
    assert "可兑换价值¥1.2" in value
    _, streak = domain.render(BUILTIN["streak_at_risk"].texts, "zh-CN", {"streak": 5})
    assert streak == "连续签到5天,今日签到可获得额外积分!"


def test_every_builtin_template_declares_what_it_uses() -> None:
    for template in BUILTIN.values():
        domain.check_texts(template.texts, template.variables)


@pytest.mark.parametrize(
    "texts",
    [
        {"en": {"title": "t", "body": "b"}},  # no Chinese text
        {"zh-CN": {"title": "t", "body": "{undeclared}"}},
        {"zh-CN": {"title": "t", "body": "{user.__class__}"}},
        {"zh-CN": {"title": "t", "body": "{points"}},
        {"zh-CN": {"title": "t", "body": "b"}, "fr": {"title": "t", "body": "b"}},
    ],
)
def test_a_bad_template_is_refused(texts: dict) -> None:
    with pytest.raises(domain.TemplateError):
        domain.check_texts(texts, ["points"])


def test_backoff_doubles_up_to_the_cap_and_honours_retry_after() -> None:
    assert [domain.retry_delay(n, 2, 30, None) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 16, 30]
    assert domain.retry_delay(1, 2, 30, 10) == 10
    assert domain.retry_delay(1, 2, 30, 3600) == 30


def test_notification_ids_come_from_the_cause() -> None:
    a = domain.notification_id("points_expiring", "alice", "2026-12-01")
    assert a == domain.notification_id("points_expiring", "alice", "2026-12-01")
    assert a != domain.notification_id("points_expiring", "alice", "2026-12-02")
    assert len(a) == 36
