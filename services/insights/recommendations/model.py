"""What the recommenders know: the catalog copy, who redeemed what (co-redemptions for
item-item, each user's items and balance for user-based) and popularity, as a `Model` rebuilt
periodically from insights' tables; and the user being recommended to (`UserView`)."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.insights.recommendations.text import (
    catalog_texts,
    content_similarity,
    tfidf_vectors,
)


@dataclass(frozen=True)
class Item:
    item_id: str
    name: str
    category: str
    tags: tuple[str, ...]
    points_price: int
    stock: int
    per_user_limit: Mapping[str, int | str] | None
    min_tier: str | None
    available: bool


def co_redemption_counts(
    user_items: Mapping[str, Iterable[str]],
) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """Users per item, and users per pair of items (i < j) who redeemed both."""
    users_of: Counter[str] = Counter()
    together: Counter[tuple[str, str]] = Counter()
    for items in user_items.values():
        distinct = sorted(set(items))
        users_of.update(distinct)
        for x in range(len(distinct)):
            for y in range(x + 1, len(distinct)):
                together[(distinct[x], distinct[y])] += 1
    return users_of, together


def co_redemption_similarity(
    users_of: Mapping[str, int], together: Mapping[tuple[str, str], int]
) -> dict[str, dict[str, float]]:
    """Item-item cosine over users: co(i, j) / sqrt(n_i * n_j), n = users who redeemed it."""
    similar: dict[str, dict[str, float]] = defaultdict(dict)
    for (i, j), count in together.items():
        s = count / math.sqrt(users_of[i] * users_of[j])
        similar[i][j] = s
        similar[j][i] = s
    return dict(similar)


@dataclass
class Peers:
    """Users who redeemed something, for the user-based recommender: each one's distinct
    items and points balance, who redeemed each item, and the users sorted by balance (the
    peers of a balance are a slice of them)."""

    owned: dict[str, frozenset[str]]
    balances: dict[str, int]
    redeemers: dict[str, list[str]]
    by_balance: list[tuple[int, str]]

    @classmethod
    def of(cls, owned: Mapping[str, Iterable[str]], balances: Mapping[str, int]) -> Peers:
        sets = {u: frozenset(items) for u, items in owned.items() if u in balances}
        redeemers: dict[str, list[str]] = defaultdict(list)
        for user, items in sorted(sets.items()):
            for item in items:
                redeemers[item].append(user)
        by_balance = sorted((int(balances[u]), u) for u in sets)
        return cls(sets, {u: int(balances[u]) for u in sets}, dict(redeemers), by_balance)

    def in_band(self, low: float, high: float) -> list[tuple[int, str]]:
        """(balance, user) of the users whose balance is within [low, high]."""
        lo = bisect_left(self.by_balance, (math.ceil(low), ""))
        hi = bisect_right(self.by_balance, (math.floor(high), "\U0010ffff"))
        return self.by_balance[lo:hi]


NO_PEERS = Peers({}, {}, {}, [])


@dataclass
class Model:
    """What the recommenders know, rebuilt periodically from the tables."""

    items: dict[str, Item]
    content: dict[str, dict[str, float]]  # item -> item -> cosine of their texts
    similar: dict[str, dict[str, float]]  # item -> item -> cosine of their redeemers
    popularity: dict[str, int]
    built_at: datetime
    texts: tuple[tuple[str, str, str, tuple[str, ...]], ...] = ()
    sellable: list[Item] = field(default_factory=list)  # on sale and in stock, by price
    sellable_prices: list[int] = field(default_factory=list)
    peers: Peers = field(default_factory=lambda: NO_PEERS)  # for the user-based recommender

    def __post_init__(self) -> None:
        if not self.sellable:
            self.sellable = sorted(
                (i for i in self.items.values() if i.available and i.stock > 0),
                key=lambda i: (i.points_price, i.item_id),
            )
        self.sellable_prices = [i.points_price for i in self.sellable]

    @classmethod
    def build(
        cls,
        items: Sequence[Item],
        users_of: Mapping[str, int],
        together: Mapping[tuple[str, str], int],
        popularity: Mapping[str, int],
        built_at: datetime,
        previous: Model | None = None,
        owned: Mapping[str, Iterable[str]] | None = None,
        balances: Mapping[str, int] | None = None,
    ) -> Model:
        """The model; `owned` (user -> items redeemed) and `balances` (user -> points) feed
        the user-based recommender, which has no peers without them."""
        texts = catalog_texts(items)
        if previous is not None and previous.texts == texts:
            content = previous.content
        else:
            content = content_similarity(tfidf_vectors(items))
        return cls(
            items={i.item_id: i for i in items},
            content=content,
            similar=co_redemption_similarity(users_of, together),
            popularity=dict(popularity),
            built_at=built_at,
            texts=texts,
            peers=Peers.of(owned or {}, balances or {}),
        )

    @classmethod
    def from_history(
        cls,
        items: Sequence[Item],
        user_items: Mapping[str, Iterable[str]],
        popularity: Mapping[str, int],
        built_at: datetime,
        balances: Mapping[str, int] | None = None,
    ) -> Model:
        counts = co_redemption_counts(user_items)
        return cls.build(items, *counts, popularity, built_at, owned=user_items, balances=balances)


@dataclass(frozen=True)
class Redeemed:
    item_id: str
    quantity: int
    completed_at: datetime


@dataclass
class UserView:
    """One user, as the tables know them."""

    user_id: str
    balance: int
    tier: str | None = None
    ladder: Sequence[str] = ()
    redeemed: Sequence[Redeemed] = ()
    expiring: Sequence[tuple[datetime, int]] = ()  # (expires_at, points), soonest first
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    name: str
    category: str
    points_price: int
    score: float
    reason: str
