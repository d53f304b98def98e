"""Pure exchange rules: availability, limit periods, coupon codes, VIP terms, quick options."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared.errors import DomainError

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


@dataclass(frozen=True)
class Offer:
    item: dict[str, Any]
    balance_after: int


def quick_options(items: Sequence[dict[str, Any]], balance: int, limit: int = 3) -> list[Offer]:
    """In-stock items the balance covers, the ones that use the most of it first."""
    fitting = [i for i in items if i["stock"] > 0 and i["points_price"] <= balance]
    fitting.sort(key=lambda i: (balance - i["points_price"], i["name"], i["id"]))
    return [Offer(i, balance - i["points_price"]) for i in fitting[:limit]]


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
