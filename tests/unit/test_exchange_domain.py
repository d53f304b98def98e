from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.exchange import domain
from shared.errors import DomainError

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_limit_periods_follow_the_business_timezone() -> None:
    late_utc = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # already 1 December in Shanghai
    assert domain.limit_period_key("day", late_utc, SHANGHAI) == "d2026-12-01"
    assert domain.limit_period_key("month", late_utc, SHANGHAI) == "m2026-12"
    assert domain.limit_period_key("lifetime", late_utc, SHANGHAI) == "lifetime"
    with pytest.raises(ValueError):
        domain.limit_period_key("week", late_utc, SHANGHAI)


def test_vip_days_extend_an_active_membership_and_restart_an_expired_one() -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    active = now + timedelta(days=3)
    assert domain.extended_vip(active, now, 7) == active + timedelta(days=7)
    assert domain.extended_vip(now - timedelta(days=3), now, 7) == now + timedelta(days=7)
    assert domain.extended_vip(None, now, 30) == now + timedelta(days=30)


def test_availability_window() -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    assert domain.unavailable_reason(True, None, None, now) is None
    assert domain.unavailable_reason(False, None, None, now)
    assert domain.unavailable_reason(True, now + timedelta(seconds=1), None, now)
    assert domain.unavailable_reason(True, None, now, now)  # ends_at is exclusive


def test_quick_options_pick_in_stock_items_closest_to_the_balance() -> None:
    items = [
        {"id": "a", "name": "a", "points_price": 100, "stock": 1},
        {"id": "b", "name": "b", "points_price": 95, "stock": 0},
        {"id": "c", "name": "c", "points_price": 90, "stock": 5},
        {"id": "d", "name": "d", "points_price": 120, "stock": 5},
        {"id": "e", "name": "e", "points_price": 10, "stock": 5},
        {"id": "f", "name": "f", "points_price": 50, "stock": 5},
    ]
    offers = domain.quick_options(items, 100)
    assert [(o.item["id"], o.balance_after) for o in offers] == [("a", 0), ("c", 10), ("f", 50)]
    assert domain.quick_options(items, 5) == []


def test_coupon_codes_are_readable_and_distinct() -> None:
    codes = {domain.new_coupon_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(
        re.fullmatch(r"JF-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", c)
        for c in codes
    )


def test_fulfilment_moves_forward_only() -> None:
    assert domain.fulfilment_step("ship", "pending") == "shipped"
    assert domain.fulfilment_step("ship", "shipped") == "shipped"  # repeat is harmless
    assert domain.fulfilment_step("deliver", "shipped") == "delivered"
    for action, current in (("deliver", "pending"), ("ship", "delivered"), ("ship", "cancelled")):
        with pytest.raises(DomainError) as refused:
            domain.fulfilment_step(action, current)
        assert refused.value.code == "invalid_transition"
