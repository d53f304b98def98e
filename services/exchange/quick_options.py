"""Quick options (一键兑换), as pure rules: which items to offer for a balance, in what order,
when to warn about expiring points, and for a user who cannot afford anything yet, the tasks
that would get them there fastest.

- Only a balance of at least `MIN_BALANCE` points gets options; they are priced in the band
  `BAND_LOW`..`BAND_HIGH` x the balance, nearest `AIM` x the balance first (a redemption that
  leaves some points to come back for), then the most redeemed of the last 7 days.
- Items the recommender chose for the user come first; the catalog fills the remaining slots
  (and stands in alone when the recommender does not answer).
- The expiry warning is shown on an option only when the points expiring soon cover its price:
  then redeeming it is what saves them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MIN_BALANCE = 100
BAND_LOW, BAND_HIGH = 0.3, 1.0
AIM = 0.7
OPTIONS = 3
TASKS = 2
PERIOD_DAYS = {"day": 1, "week": 7, "month": 30}


def price_band(balance: int) -> tuple[int, int] | None:
    """The prices (inclusive) options may have for `balance`; None below `MIN_BALANCE`."""
    if balance < MIN_BALANCE:
        return None
    return math.ceil(BAND_LOW * balance), math.floor(BAND_HIGH * balance)


@dataclass(frozen=True)
class Offer:
    item: dict[str, Any]
    balance_after: int
    source: str  # recommender | catalog


def _order(balance: int, counts: Mapping[str, int]) -> Any:
    aim = AIM * balance
    return lambda i: (abs(i["points_price"] - aim), -counts.get(i["id"], 0), i["name"], i["id"])


def choose(
    recommended: Sequence[dict[str, Any]],
    catalog: Sequence[dict[str, Any]],
    balance: int,
    counts: Mapping[str, int],
    limit: int = OPTIONS,
) -> list[Offer]:
    """Up to `limit` offers: the recommender's items in the band first, then the catalog's,
    each group nearest `AIM` x the balance first, then by `counts` (redemptions of the last
    7 days). The items are those the user may redeem (tier, limits) as response dicts."""
    band = price_band(balance)
    if band is None:
        return []
    lo, hi = band
    offers: list[Offer] = []
    seen: set[str] = set()
    for source, items in (("recommender", recommended), ("catalog", catalog)):
        fitting = [
            i
            for i in items
            if i["stock"] > 0 and lo <= i["points_price"] <= hi and i["id"] not in seen
        ]
        for item in sorted(fitting, key=_order(balance, counts)):
            if len(offers) >= limit:
                return offers
            seen.add(item["id"])
            offers.append(Offer(item, balance - item["points_price"], source))
    return offers


def expiry_warning(expiring: int, price: int, days: int) -> str | None:
    """The warning an option carries when the points expiring within `days` cover its price."""
    if expiring <= 0 or expiring < price:
        return None
    return (
        f"{expiring} of your points expire within {days} days; "
        f"redeeming this uses {price} of them before they are lost"
    )


def points_needed(balance: int, prices: Iterable[int]) -> int:
    """Points to earn before quick options have something to offer: up to `MIN_BALANCE`
    and the cheapest item the user may redeem; 0 when they can afford one already."""
    cheapest = min(prices, default=None)
    if cheapest is None:
        return 0  # nothing on sale for them: no amount of points helps
    if balance >= MIN_BALANCE and cheapest <= balance:
        return 0
    return max(MIN_BALANCE, cheapest) - balance


def _active(rule: Mapping[str, Any], now: datetime) -> bool:
    starts, ends = rule.get("starts_at"), rule.get("ends_at")
    return (
        bool(rule.get("active", True))
        and rule.get("reward_type", "points") == "points"
        and (starts is None or datetime.fromisoformat(str(starts)) <= now)
        and (ends is None or datetime.fromisoformat(str(ends)) > now)
    )


def task_pace(rule: Mapping[str, Any], gap: int) -> tuple[int, int, int] | None:
    """(completions, qualifying actions, extra days) one rule needs to earn `gap` points
    alone, or None when it cannot: completions ceil(gap / reward), each `target_count`
    actions, at most the rule's cap per period (one for a check-in, one ever for a 'once'
    task). A rule paying by amount spent (`amount_ratio`) has no fixed reward and is left out."""
    reward = int(rule.get("reward_points") or 0)
    if reward <= 0 or rule.get("kind") == "amount_ratio":
        return None
    period = str(rule.get("period", "day"))
    cap = 1 if period == "once" or rule.get("kind") == "checkin" else rule.get("max_per_period")
    completions = math.ceil(gap / reward)
    if cap is None:
        days = 0  # as many completions as the user makes, today
    elif period in PERIOD_DAYS:
        days = (math.ceil(completions / int(cap)) - 1) * PERIOD_DAYS[period]
    elif completions <= int(cap):  # once / lifetime: the cap is for good
        days = 0
    else:
        return None
    return completions, completions * int(rule.get("target_count") or 1), days


def fastest_tasks(
    rules: Iterable[Mapping[str, Any]], gap: int, now: datetime, limit: int = TASKS
) -> list[dict[str, Any]]:
    """The `limit` task rules that earn `gap` points soonest: fewest days, then fewest
    actions, then the biggest reward. (The user's progress in each is not taken into
    account: a rule already completed this period may still be listed.)"""
    if gap <= 0:
        return []
    paced = []
    for rule in rules:
        if not _active(rule, now):
            continue
        pace = task_pace(rule, gap)
        if pace is None:
            continue
        completions, actions, days = pace
        paced.append(
            (
                (days, actions, -int(rule["reward_points"]), str(rule["id"])),
                {
                    "task_id": str(rule["id"]),
                    "name": str(rule.get("name", "")),
                    "action": str(rule.get("action", "")),
                    "reward_points": int(rule["reward_points"]),
                    "completions": completions,
                    "actions": actions,
                    "days": days,
                },
            )
        )
    paced.sort(key=lambda entry: entry[0])
    return [task for _, task in paced[:limit]]
