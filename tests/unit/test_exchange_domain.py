from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, get_args
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


# -- properties of the redemption rules ----------------------------------------------------

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CODE = re.compile(r"JF-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")
STATUSES = ("pending", "completed", "failed", "cancelling", "cancelled")
FULFILMENT = (None, "pending", "shipped", "delivered", "cancelled")

offsets = st.one_of(st.none(), st.integers(-3 * 86400, 3 * 86400).map(lambda s: timedelta(0, s)))


def _item(**fields: Any) -> SimpleNamespace:
    base = {
        "id": "i1",
        "name": "Mug",
        "active": True,
        "starts_at": None,
        "ends_at": None,
        "limit_period": None,
        "limit_quantity": None,
        "coupon_value_cents": None,
        "vip_days": None,
    }
    return SimpleNamespace(**{**base, **fields})


@given(
    active=st.booleans(),
    starts=offsets,
    ends=offsets,
    limit=st.one_of(st.none(), st.integers(1, 10)),
    quantity=st.integers(1, 20),
)
def test_a_request_is_refused_exactly_when_off_sale_out_of_window_or_over_the_limit(
    active: bool,
    starts: timedelta | None,
    ends: timedelta | None,
    limit: int | None,
    quantity: int,
) -> None:
    item = _item(
        active=active,
        starts_at=None if starts is None else NOW + starts,
        ends_at=None if ends is None else NOW + ends,
        limit_period=None if limit is None else "day",
        limit_quantity=limit,
    )
    on_sale = (
        active
        and (starts is None or starts <= timedelta(0))
        and (ends is None or ends > timedelta(0))
    )
    within_limit = limit is None or quantity <= limit
    refusal = domain.refusal(item, quantity, NOW)
    assert (refusal is None) == (on_sale and within_limit)
    if not on_sale:
        assert refusal is not None and refusal[0] == "item_inactive"
    elif not within_limit:
        assert refusal == domain.limit_reached(item)


@pytest.mark.parametrize(
    ("period", "words"), [("day", "per day"), ("month", "per month"), ("lifetime", "in total")]
)
def test_the_limit_refusal_names_the_limit_and_its_period(period: str, words: str) -> None:
    item = _item(limit_period=period, limit_quantity=3)
    assert domain.limit_reached(item) == (
        "limit_reached",
        f"Mug is limited to 3 {words} per user",
    )


@given(st.lists(st.integers(1, 100), max_size=30), st.integers(0, 500))
def test_stock_serves_requests_in_arrival_order_while_units_last(
    quantities: list[int], left: int
) -> None:
    served = domain.serve_in_order(quantities, left)
    assert len(served) == len(quantities)
    assert sum(q for q, s in zip(quantities, served, strict=True) if s) <= left
    remaining = left
    for quantity, fits in zip(quantities, served, strict=True):
        # Each is served exactly when it fits in what the ones before it left.
        assert fits == (quantity <= remaining)
        remaining -= quantity if fits else 0
    if sum(quantities) <= left:
        assert all(served)
    assert domain.out_of_stock("Mug", 4) == ("out_of_stock", "Mug has fewer than 4 left")


@given(
    item_id=st.sampled_from(["a", "b"]),
    quantity=st.integers(1, 3),
    asked_item=st.sampled_from(["a", "b"]),
    asked_quantity=st.integers(1, 3),
)
def test_a_key_replays_only_the_same_request(
    item_id: str, quantity: int, asked_item: str, asked_quantity: int
) -> None:
    existing = SimpleNamespace(id="r1", item_id=item_id, quantity=quantity)
    reused = domain.key_reused(existing, asked_item, asked_quantity)
    if (asked_item, asked_quantity) == (item_id, quantity):
        assert reused is None
    else:
        assert reused is not None
        assert reused.code == "idempotency_key_reused" and reused.status == 409
        assert reused.details == {"redemption_id": "r1"}


@pytest.mark.parametrize("replayed", [False, True])
@pytest.mark.parametrize("status", STATUSES)
def test_how_a_redemption_request_ended(status: str, replayed: bool) -> None:
    expected = {
        "failed": None,
        "pending": "pending",
        "completed": "replayed" if replayed else "created",
        "cancelling": "replayed",
        "cancelled": "replayed",
    }[status]
    assert domain.redeem_outcome(status, replayed) == expected


def test_a_failed_redemption_answers_with_its_failure() -> None:
    row = SimpleNamespace(
        id="r1", failure_code="insufficient_points", failure_message=None, compensated=False
    )
    refused = domain.refused(row)
    assert isinstance(refused, domain.RedemptionRefused)
    assert (refused.code, refused.message, refused.status) == (
        "insufficient_points",
        "insufficient_points",
        409,
    )
    assert refused.details == {"redemption_id": "r1", "compensated": False}


@pytest.mark.parametrize("by_admin", [False, True])
@pytest.mark.parametrize("fulfilment", FULFILMENT)
@pytest.mark.parametrize("item_type", domain.ITEM_TYPES)
@pytest.mark.parametrize("status", STATUSES)
def test_who_may_cancel_what(
    status: str, item_type: str, fulfilment: str | None, by_admin: bool
) -> None:
    if status in ("cancelling", "cancelled"):
        # Already under way or done: answered as it is, for anyone allowed to see it.
        assert domain.cancel_step(status, item_type, fulfilment, by_admin) == status
        return
    if status == "completed" and (
        by_admin or (item_type == "physical" and fulfilment == "pending")
    ):
        assert domain.cancel_step(status, item_type, fulfilment, by_admin) is None
        return
    with pytest.raises(DomainError) as refused:
        domain.cancel_step(status, item_type, fulfilment, by_admin)
    expected = "redemption_pending" if status == "pending" else "not_cancellable"
    assert refused.value.code == expected and refused.value.status == 409


@pytest.mark.parametrize("by_admin", [False, True])
@pytest.mark.parametrize("item_type", domain.ITEM_TYPES)
def test_cancelling_stops_an_unshipped_parcel(item_type: str, by_admin: bool) -> None:
    values = domain.cancel_values(
        item_type, "pending" if item_type == "physical" else None, "r", by_admin
    )
    assert values == {
        "status": "cancelling",
        "cancel_reason": "r",
        "cancelled_by": "admin" if by_admin else "user",
        "fulfilment_status": "cancelled" if item_type == "physical" else None,
    }
    assert domain.cancel_outcome("cancelling") == "cancelling"
    assert domain.cancel_outcome("cancelled") == "cancelled"


def test_every_outcome_has_an_http_status() -> None:
    from services.exchange.api import STATUS

    assert set(STATUS) == set(get_args(domain.Outcome))
    assert STATUS == {
        "created": 201,
        "replayed": 200,
        "pending": 202,
        "cancelling": 202,
        "cancelled": 200,
    }


@given(
    st.lists(
        st.tuples(st.sampled_from(domain.ITEM_TYPES), st.integers(1, 20)), min_size=1, max_size=8
    ),
    st.integers(1, 365),
)
def test_drawn_rewards_fit_the_item(kinds: list[tuple[str, int]], validity_days: int) -> None:
    rows = [
        SimpleNamespace(
            id=f"r{n}",
            user_id="u1",
            item_id=f"i-{kind}",
            item_type=kind,
            quantity=quantity,
            shipping_address="1 Road" if kind == "physical" else None,
        )
        for n, (kind, quantity) in enumerate(kinds)
    ]
    items = {
        f"i-{kind}": _item(id=f"i-{kind}", coupon_value_cents=500) for kind in domain.ITEM_TYPES
    }
    rewards, coupons = domain.draw_rewards(rows, items, NOW, validity_days)
    expires = NOW + timedelta(days=validity_days)
    every_code: list[str] = []
    for row in rows:
        if row.item_type == "vip":
            assert row.id not in rewards and row.id not in coupons  # left to the membership
        elif row.item_type == "coupon":
            reward = rewards[row.id]
            assert len(reward["codes"]) == row.quantity
            assert all(CODE.fullmatch(code) for code in reward["codes"])
            assert reward["value_cents"] == 500
            assert reward["expires_at"] == expires.isoformat()
            assert [c["code"] for c in coupons[row.id]] == reward["codes"]
            assert all(
                (c["redemption_id"], c["user_id"], c["item_id"], c["expires_at"])
                == (row.id, "u1", row.item_id, expires)
                for c in coupons[row.id]
            )
            every_code += reward["codes"]
        elif row.item_type == "physical":
            assert rewards[row.id] == {"type": "physical", "shipping_address": "1 Road"}
        else:
            assert rewards[row.id] == {"type": "virtual"}
    assert len(set(every_code)) == len(every_code)  # 60 random bits: no repeats in a draw


@given(
    current=offsets,
    vip_days=st.integers(1, 3650),
    quantity=st.integers(1, 100),
)
def test_a_vip_redemption_adds_its_days_from_the_later_of_now_and_the_current_end(
    current: timedelta | None, vip_days: int, quantity: int
) -> None:
    current_until = None if current is None else NOW + current
    until, reward = domain.vip_reward(current_until, NOW, vip_days, quantity)
    start = max(NOW, current_until) if current_until is not None else NOW
    assert until - start == timedelta(days=vip_days * quantity)
    assert reward == {
        "type": "vip",
        "days_added": vip_days * quantity,
        "vip_until": until.isoformat(),
    }
    # Cancelling takes exactly those days back.
    assert domain.vip_revoked(until, reward) == start
    assert domain.vip_revoked(None, reward) is None
    assert domain.vip_revoked(until, {"type": "vip", "days_added": 0}) is None
    assert domain.vip_revoked(until, None) is None
