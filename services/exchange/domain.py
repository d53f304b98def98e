"""Pure exchange rules (no I/O): availability, refusals and limits, idempotency-key replays,
cancel eligibility, how a request ended, rewards (coupon codes, VIP terms). Quick options
have their own module, `quick_options.py`."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from shared.errors import DomainError


@dataclass(frozen=True)
class CatalogQuery:
    """A page of the catalog: which items, cheapest first."""

    category: str | None = None
    item_type: str | None = None
    tag: str | None = None
    affordable_for: int | None = None  # only items whose price fits this balance
    in_stock: bool = False
    include_unavailable: bool = False  # admin: also inactive and out-of-window items
    limit: int = 20
    offset: int = 0


ITEM_TYPES = ("physical", "coupon", "vip", "virtual")
LIMIT_PERIODS = ("day", "month", "lifetime")
# Statuses in which a redemption holds the units it reserved.
LIVE = ("pending", "completed", "cancelling")
FULFILMENT_STEPS = {"ship": ("pending", "shipped"), "deliver": ("shipped", "delivered")}

# Crockford-style alphabet: no I, L, O, U; codes are read aloud and typed by people.
_COUPON_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class RedemptionRefused(DomainError):
    """A redemption that cannot happen; the code is part of the public contract."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(code, message, **details)


def unavailable_reason(
    active: bool, starts_at: datetime | None, ends_at: datetime | None, now: datetime
) -> str | None:
    if not active:
        return "this item is not available for redemption"
    if starts_at is not None and now < starts_at:
        return f"this item can be redeemed from {starts_at.isoformat()}"
    if ends_at is not None and now >= ends_at:
        return f"this item could be redeemed until {ends_at.isoformat()}"
    return None


def limit_period_key(period: str, now: datetime, tz: ZoneInfo) -> str:
    """The per-user limit bucket `now` falls in, in the business timezone."""
    local = now.astimezone(tz)
    if period == "day":
        return local.strftime("d%Y-%m-%d")
    if period == "month":
        return local.strftime("m%Y-%m")
    if period == "lifetime":
        return "lifetime"
    raise ValueError(f"unknown limit period {period!r}")


def new_coupon_code(prefix: str = "JF") -> str:
    """A 60-bit random code in groups of four, e.g. JF-7K2M-Q9XD-4HTB."""
    bits = secrets.randbits(60)  # one draw from the OS, 5 bits per character
    body = "".join(_COUPON_ALPHABET[(bits >> (5 * i)) & 31] for i in range(12))
    return f"{prefix}-{body[:4]}-{body[4:8]}-{body[8:]}"


def extended_vip(current_until: datetime | None, now: datetime, days: int) -> datetime:
    """Adding days extends an active membership from its end, or starts one now."""
    start = current_until if current_until is not None and current_until > now else now
    return start + timedelta(days=days)


def fulfilment_step(action: str, current: str | None) -> str:
    """The fulfilment status after `action`; raises when the step does not apply."""
    source, target = FULFILMENT_STEPS[action]
    if current == target:
        return target  # repeating a step is harmless
    if current != source:
        raise DomainError(
            "invalid_transition",
            f"cannot {action} a redemption whose fulfilment is {current or 'not applicable'}",
            fulfilment_status=current,
        )
    return target


# -- redemption rules ------------------------------------------------------------------------

# How a request ended, for the caller (the HTTP layer turns it into a status code):
# `created` a new redemption completed; `replayed` the key's redemption, as it now is;
# `pending` the points service has not confirmed yet; `cancelling` the refund is not
# confirmed yet; `cancelled` done.
Outcome = Literal["created", "replayed", "pending", "cancelling", "cancelled"]

_PER = {"day": "per day", "month": "per month", "lifetime": "in total"}


def limit_reached(item: Any) -> tuple[str, str]:
    """The refusal (code, message) of a request over the item's per-user limit."""
    per = _PER[item.limit_period]
    return "limit_reached", f"{item.name} is limited to {item.limit_quantity} {per} per user"


def refusal(item: Any, quantity: int, now: datetime) -> tuple[str, str] | None:
    """Why `quantity` of `item` cannot be redeemed at `now` whatever the stock and the user's
    history, as (code, message), or None: off sale or out of its window, or more in one
    request than the per-user limit allows. (Stock is decided by `serve_in_order` under the
    item's lock; the user's history by the limit counters.)"""
    reason = unavailable_reason(item.active, item.starts_at, item.ends_at, now)
    if reason is not None:
        return "item_inactive", reason
    if item.limit_quantity is not None and quantity > item.limit_quantity:
        return limit_reached(item)
    return None


def tier_refusal(
    item: Any, member_level: int, required_level: int | None
) -> tuple[str, str] | None:
    """The refusal of a tier-only item to a member below its tier, or None. A tier this
    service has not heard of yet (no tier.changed has named it) admits nobody."""
    if item.min_tier is None or (required_level is not None and member_level >= required_level):
        return None
    return "tier_required", f"{item.name} is for members of tier {item.min_tier} and above"


def out_of_stock(item_name: str, quantity: int) -> tuple[str, str]:
    return "out_of_stock", f"{item_name} has fewer than {quantity} left"


def serve_in_order(quantities: Sequence[int], left: int) -> list[bool]:
    """Which requests `left` units serve when they cannot serve them all: in arrival order,
    each one that still fits (a large request refused does not stop a smaller one after it)."""
    served = []
    for quantity in quantities:
        fits = quantity <= left
        if fits:
            left -= quantity
        served.append(fits)
    return served


def key_reused(existing: Any, item_id: str, quantity: int) -> DomainError | None:
    """The error for an idempotency key already used for a different redemption (another
    item or quantity), or None when the request is the same one again (a replay)."""
    if existing.item_id != item_id or existing.quantity != quantity:
        return DomainError(
            "idempotency_key_reused",
            "this idempotency_key was already used for a different redemption",
            redemption_id=existing.id,
        )
    return None


def redeem_outcome(status: str, replayed: bool) -> Outcome | None:
    """How a redemption request ended given the redemption's status; None when it failed
    (the caller is refused with the redemption's failure)."""
    if status == "failed":
        return None
    if status == "pending":
        return "pending"
    if status == "completed" and not replayed:
        return "created"
    return "replayed"  # completed before, or cancelled since: answered as it is now


def refused(row: Any) -> RedemptionRefused:
    """The refusal a failed redemption answers with."""
    return RedemptionRefused(
        row.failure_code,
        row.failure_message or row.failure_code,
        redemption_id=row.id,
        compensated=row.compensated,
    )


def cancel_step(
    status: str, item_type: str, fulfilment_status: str | None, by_admin: bool
) -> Outcome | None:
    """What cancelling a redemption in this state does (its owner or an admin asking):
    None to go ahead; `cancelling` / `cancelled` when already under way / done (answered
    as is); raises when it may not be cancelled. An admin may cancel any completed
    redemption; a user only a physical item that has not shipped."""
    if status in ("cancelling", "cancelled"):
        return cancel_outcome(status)
    if status == "pending":
        raise DomainError(
            "redemption_pending",
            "this redemption is still being confirmed; try again in a moment",
        )
    if status == "failed":
        raise DomainError("not_cancellable", "a failed redemption has nothing to cancel")
    if not by_admin and not (item_type == "physical" and fulfilment_status == "pending"):
        raise DomainError(
            "not_cancellable",
            "you can cancel a physical item until it ships; for anything else ask support",
        )
    return None


def cancel_outcome(status: str) -> Outcome:
    """A cancellation's answer once asked for: done, or waiting for the refund."""
    return "cancelling" if status == "cancelling" else "cancelled"


def cancel_values(
    item_type: str, fulfilment_status: str | None, reason: str, by_admin: bool
) -> dict[str, Any]:
    """The columns a cancellation writes when it starts (an unshipped parcel stops)."""
    return {
        "status": "cancelling",
        "cancel_reason": reason,
        "cancelled_by": "admin" if by_admin else "user",
        "fulfilment_status": "cancelled" if item_type == "physical" else fulfilment_status,
    }


# -- rewards -----------------------------------------------------------------------------


def draw_rewards(
    rows: Sequence[Any], items: Mapping[str, Any], now: datetime, coupon_validity_days: int
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The reward of each redemption about to complete, by redemption id, and the coupons
    to write for it: one fresh code per unit for a coupon, the shipping address for a
    physical item (whose fulfilment then starts). A membership's reward depends on the
    membership (`vip_reward`), so VIP redemptions are left out."""
    rewards: dict[str, dict[str, Any]] = {}
    coupons: dict[str, list[dict[str, Any]]] = {}
    expires_at = now + timedelta(days=coupon_validity_days)
    for row in rows:
        if row.item_type == "coupon":
            value = items[row.item_id].coupon_value_cents
            codes = [new_coupon_code() for _ in range(row.quantity)]
            coupons[row.id] = [
                {
                    "code": code,
                    "redemption_id": row.id,
                    "user_id": row.user_id,
                    "item_id": row.item_id,
                    "value_cents": value,
                    "expires_at": expires_at,
                }
                for code in codes
            ]
            rewards[row.id] = {
                "type": "coupon",
                "codes": codes,
                "value_cents": value,
                "expires_at": expires_at.isoformat(),
            }
        elif row.item_type == "physical":
            rewards[row.id] = {"type": "physical", "shipping_address": row.shipping_address}
        elif row.item_type != "vip":
            rewards[row.id] = {"type": "virtual"}
    return rewards, coupons


def vip_reward(
    current_until: datetime | None, now: datetime, vip_days: int | None, quantity: int
) -> tuple[datetime, dict[str, Any]]:
    """The membership's new end after redeeming `quantity` x `vip_days`, and the reward."""
    days = (vip_days or 0) * quantity
    until = extended_vip(current_until, now, days)
    return until, {"type": "vip", "days_added": days, "vip_until": until.isoformat()}


def vip_revoked(
    current_until: datetime | None, reward: Mapping[str, Any] | None
) -> datetime | None:
    """The membership's end once a cancelled VIP redemption takes its days back, or None
    when there is nothing to change."""
    days = int((reward or {}).get("days_added", 0))
    if current_until is None or not days:
        return None
    return current_until - timedelta(days=days)
