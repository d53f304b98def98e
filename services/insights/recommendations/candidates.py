"""What both recommenders share: the items a user may be offered (on sale, in stock, in
their price band, within their per-item limits and tier), the expiring-points rule and the
reasons' wording."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.insights.recommendations.model import (
    Item,
    Model,
    Recommendation,
    Redeemed,
    UserView,
)

BAND_LOW, BAND_HIGH = 0.5, 1.5
EXPIRY_BOOST = 0.25  # an item the expiring points just cover goes up the list

REASON_EXPIRING = "{points} 积分将于{when}过期, 正好兑换 {name}"
REASON_SAME_CATEGORY = "您之前兑换过同类商品"
REASON_ALSO_REDEEMED = "兑换过「{name}」的用户也兑换了它"
REASON_PEERS = "积分和您相近的用户也兑换了它"
REASON_FITS_BALANCE = "非常适合您的积分水平"
REASON_POPULAR = "热门兑换商品"

WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")


def _period_start(period: str, now: datetime, tz: ZoneInfo) -> datetime | None:
    local = now.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return midnight
    if period == "month":
        return midnight.replace(day=1)
    return None  # lifetime


def within_limit(item: Item, redeemed: Sequence[Redeemed], now: datetime, tz: ZoneInfo) -> bool:
    """Whether one more unit keeps the user within the item's per-user limit."""
    limit = item.per_user_limit
    if not limit:
        return True
    start = _period_start(str(limit.get("period", "lifetime")), now, tz)
    taken = sum(
        r.quantity
        for r in redeemed
        if r.item_id == item.item_id and (start is None or r.completed_at >= start)
    )
    return taken + 1 <= int(limit.get("quantity", 0))


def tier_allows(item: Item, tier: str | None, ladder: Sequence[str]) -> bool:
    """A tier-only item needs the user's tier at or above it on the ladder they were told of."""
    if item.min_tier is None:
        return True
    if tier is None or tier not in ladder or item.min_tier not in ladder:
        return False
    return ladder.index(tier) >= ladder.index(item.min_tier)


def affordable(price: int, balance: int) -> bool:
    return BAND_LOW * balance <= price <= BAND_HIGH * balance


def when_text(expires_at: datetime, now: datetime, tz: ZoneInfo) -> str:
    day: date = expires_at.astimezone(tz).date()
    today = now.astimezone(tz).date()
    if day == today:
        return "今天"
    if day == today + timedelta(days=1):
        return "明天"
    if day - today < timedelta(days=7):
        return WEEKDAYS[day.weekday()]
    return f"{day.month}月{day.day}日"


def candidates(
    model: Model,
    user: UserView,
    now: datetime,
    tz: ZoneInfo,
    band: tuple[int, int] | None = None,
) -> list[Item]:
    """The items on sale in the user's price band (`band`, inclusive, when the caller names
    one: the exchange's quick options ask for theirs), within their limits and tier. A
    balance of nothing buys nothing: no items."""
    balance = user.balance
    if balance <= 0:
        return []
    low, high = band if band is not None else (BAND_LOW * balance, BAND_HIGH * balance)
    lo = bisect_left(model.sellable_prices, low)
    hi = bisect_right(model.sellable_prices, high)
    return [
        item
        for item in model.sellable[lo:hi]
        if (item.per_user_limit is None or within_limit(item, user.redeemed, now, tz))
        and (item.min_tier is None or tier_allows(item, user.tier, user.ladder))
    ]


def fits_expiring(item: Item, balance: int, expiring_points: int) -> bool:
    """Whether the points expiring soon just about pay for the item (and the user can)."""
    return (
        expiring_points > 0
        and item.points_price <= max(balance, 0)
        and BAND_LOW * expiring_points <= item.points_price <= BAND_HIGH * expiring_points
    )


def expiring_reason(item: Item, user: UserView, now: datetime, tz: ZoneInfo) -> str:
    points = sum(p for _, p in user.expiring)
    when = when_text(user.expiring[0][0], now, tz)
    return REASON_EXPIRING.format(points=points, when=when, name=item.name)


# (-score, distance from the balance, item id, item, fits the expiring points): sorted, best
# first.
Scored = tuple[float, int, str, Item, bool]


def pick(
    scored: Sequence[Scored],
    limit: int,
    per_category: int,
    reason: Callable[[Item, bool], str],
) -> list[Recommendation]:
    """The best `limit` of `scored` (sorted), at most `per_category` of one category, each
    with its reason."""
    chosen: list[Recommendation] = []
    per: Counter[str] = Counter()
    for negative_score, _, _, item, fits in scored:
        if per[item.category] >= per_category:
            continue
        per[item.category] += 1
        chosen.append(
            Recommendation(
                item.item_id,
                item.name,
                item.category,
                item.points_price,
                round(-negative_score, 6),
                reason(item, fits),
            )
        )
        if len(chosen) >= limit:
            break
    return chosen
