"""Recommendations, as pure functions over a model built from insights' own tables (the model
kept and served per user is `service/recommendations.py`).

Scoring (a user with redemptions): 60% item-item collaborative filtering on redemptions
(cosine of co-redemption counts between the candidate and what the user redeemed, scaled so
the best candidate scores 1) plus 40% content similarity (cosine of TF-IDF vectors over the
item's name, category and tags, best match with what the user redeemed). A user with none
(cold start) gets the items most redeemed in the last days. Candidates must be on sale, in
stock, within the user's per-item limit and tier, and priced 0.5-1.5x the user's balance;
at most `per_category` of one category are kept.

Chinese text has no spaces, so item texts are cut into character unigrams and bigrams of
each CJK run (and words of each Latin/digit run); no stop-word list is applied, English or
otherwise, since a name's few characters all carry meaning.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

CF_WEIGHT = 0.6
CONTENT_WEIGHT = 0.4
EXPIRY_BOOST = 0.25  # an item the expiring points just cover goes up the list
BAND_LOW, BAND_HIGH = 0.5, 1.5
COMMON_TERMS_FROM = 20  # catalog size from which terms on most items are dropped

REASON_EXPIRING = "{points} 积分将于{when}过期, 正好兑换 {name}"
REASON_SAME_CATEGORY = "您之前兑换过同类商品"
REASON_ALSO_REDEEMED = "兑换过「{name}」的用户也兑换了它"
REASON_FITS_BALANCE = "非常适合您的积分水平"
REASON_POPULAR = "热门兑换商品"

WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")

_RUNS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[a-z0-9]+")


def _is_cjk(run: str) -> bool:
    return not run[0].isascii()


def tokenize(text: str) -> list[str]:
    """Terms of a text: each CJK run's characters and adjacent pairs, each Latin/digit word."""
    terms: list[str] = []
    for run in _RUNS.findall(text.lower()):
        if _is_cjk(run):
            terms.extend(run)
            terms.extend(run[i : i + 2] for i in range(len(run) - 1))
        else:
            terms.append(run)
    return terms


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


def item_terms(item: Item) -> Counter[str]:
    terms = Counter(tokenize(item.name))
    terms[f"category:{item.category.lower()}"] += 2  # the category says most about an item
    for tag in item.tags:
        terms[f"tag:{tag.lower()}"] += 1
        terms.update(tokenize(tag))
    return terms


def tfidf_vectors(items: Sequence[Item]) -> dict[str, dict[str, float]]:
    """Unit-length TF-IDF vectors of the items' texts (smoothed idf, log-scaled tf)."""
    docs = {item.item_id: item_terms(item) for item in items}
    df: Counter[str] = Counter()
    for terms in docs.values():
        df.update(terms.keys())
    n = len(docs)
    # A term on more than half of a sizeable catalog (券, say) tells no two items apart; it is
    # learned from the catalog, not taken from a stop-word list.
    common = {t for t, d in df.items() if d > n / 2} if n >= COMMON_TERMS_FROM else set()
    vectors: dict[str, dict[str, float]] = {}
    for item_id, terms in docs.items():
        vector = {
            term: (1.0 + math.log(count)) * (math.log((1 + n) / (1 + df[term])) + 1.0)
            for term, count in terms.items()
            if term not in common
        }
        norm = math.sqrt(sum(w * w for w in vector.values())) or 1.0
        vectors[item_id] = {term: w / norm for term, w in vector.items()}
    return vectors


def cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(term, 0.0) for term, w in a.items())


def content_similarity(vectors: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Cosine of every pair of items sharing a term (through an inverted index, so pairs
    with nothing in common cost nothing)."""
    postings: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for item_id, vector in vectors.items():
        for term, weight in vector.items():
            postings[term].append((item_id, weight))
    similar: dict[str, dict[str, float]] = defaultdict(dict)
    for entries in postings.values():
        for x, (i, wi) in enumerate(entries):
            row = similar[i]
            for j, wj in entries[x + 1 :]:
                row[j] = row.get(j, 0.0) + wi * wj
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for i, row in similar.items():
        for j, sim in row.items():
            out[i][j] = sim
            out[j][i] = sim
    return dict(out)


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


def catalog_texts(items: Sequence[Item]) -> tuple[tuple[str, str, str, tuple[str, ...]], ...]:
    """What the content similarity depends on: it is recomputed only when this changes."""
    return tuple(sorted((i.item_id, i.name, i.category, i.tags) for i in items))


@dataclass
class Model:
    """What the recommender knows about items, rebuilt periodically from the tables."""

    items: dict[str, Item]
    content: dict[str, dict[str, float]]  # item -> item -> cosine of their texts
    similar: dict[str, dict[str, float]]  # item -> item -> cosine of their redeemers
    popularity: dict[str, int]
    built_at: datetime
    texts: tuple[tuple[str, str, str, tuple[str, ...]], ...] = ()
    sellable: list[Item] = field(default_factory=list)  # on sale and in stock, by price
    sellable_prices: list[int] = field(default_factory=list)

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
    ) -> Model:
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
        )

    @classmethod
    def from_history(
        cls,
        items: Sequence[Item],
        user_items: Mapping[str, Iterable[str]],
        popularity: Mapping[str, int],
        built_at: datetime,
    ) -> Model:
        return cls.build(items, *co_redemption_counts(user_items), popularity, built_at)


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


def _reason(
    model: Model,
    item: Item,
    user: UserView,
    history: Sequence[str],
    history_categories: set[str],
    fits_expiring: bool,
    now: datetime,
    tz: ZoneInfo,
) -> str:
    if fits_expiring:
        points = sum(p for _, p in user.expiring)
        when = when_text(user.expiring[0][0], now, tz)
        return REASON_EXPIRING.format(points=points, when=when, name=item.name)
    if item.category in history_categories:
        return REASON_SAME_CATEGORY
    if history:
        source, best = "", 0.0
        for seen in history:
            sim = model.similar.get(seen, {}).get(item.item_id, 0.0)
            if sim > best:
                source, best = seen, sim
        if source:
            return REASON_ALSO_REDEEMED.format(name=model.items[source].name)
    elif model.popularity.get(item.item_id, 0) > 0:
        return REASON_POPULAR
    return REASON_FITS_BALANCE


def recommend(
    model: Model,
    user: UserView,
    *,
    limit: int,
    now: datetime,
    tz: ZoneInfo,
    per_category: int = 2,
) -> list[Recommendation]:
    """The user's top `limit` items with a reason each, best first."""
    items = model.items
    history = sorted({r.item_id for r in user.redeemed if r.item_id in items})
    history_categories = {items[i].category for i in history}
    scored = _scored(model, user, _candidates(model, user, now, tz), history)
    chosen: list[Recommendation] = []
    per: Counter[str] = Counter()
    for negative_score, _, _, item, fits_expiring in scored:
        if per[item.category] >= per_category:
            continue
        per[item.category] += 1
        reason = _reason(model, item, user, history, history_categories, fits_expiring, now, tz)
        chosen.append(
            Recommendation(
                item.item_id,
                item.name,
                item.category,
                item.points_price,
                round(-negative_score, 6),
                reason,
            )
        )
        if len(chosen) >= limit:
            break
    return chosen


def _candidates(model: Model, user: UserView, now: datetime, tz: ZoneInfo) -> list[Item]:
    """The items on sale in the user's price band, within their limits and tier."""
    balance = user.balance
    if balance > 0:  # the price band, from the items on sale sorted by price
        lo = bisect_left(model.sellable_prices, BAND_LOW * balance)
        hi = bisect_right(model.sellable_prices, BAND_HIGH * balance)
        sellable = model.sellable[lo:hi]
    else:
        sellable = model.sellable
    return [
        item
        for item in sellable
        if (item.per_user_limit is None or within_limit(item, user.redeemed, now, tz))
        and (item.min_tier is None or tier_allows(item, user.tier, user.ladder))
    ]


def _scored(
    model: Model, user: UserView, candidates: list[Item], history: Sequence[str]
) -> list[tuple[float, int, str, Item, bool]]:
    """Each candidate's (-score, distance from the balance, id, item, fits the expiring
    points), best first."""
    balance = user.balance
    popularity = model.popularity
    top_popularity = max((popularity.get(i.item_id, 0) for i in candidates), default=0)
    # Rows of the items the user redeemed: an item is never its own neighbour in them.
    similar_rows = [model.similar.get(seen, {}) for seen in history]
    content_rows = [model.content.get(seen, {}) for seen in history]
    cf = {
        item.item_id: sum(row.get(item.item_id, 0.0) for row in similar_rows) for item in candidates
    }
    top_cf = max(cf.values(), default=0.0)
    expiring_points = sum(points for _, points in user.expiring)
    scored: list[tuple[float, int, str, Item, bool]] = []
    for item in candidates:
        iid = item.item_id
        popular = popularity.get(iid, 0) / top_popularity if top_popularity else 0.0
        if history:
            content = max((row.get(iid, 0.0) for row in content_rows), default=0.0)
            score = (
                CF_WEIGHT * (cf[iid] / top_cf if top_cf else 0.0)
                + CONTENT_WEIGHT * content
                + 0.01 * popular  # breaks ties between items nobody like the user redeemed
            )
        else:
            score = popular
        fits_expiring = (
            expiring_points > 0
            and item.points_price <= max(balance, 0)
            and BAND_LOW * expiring_points <= item.points_price <= BAND_HIGH * expiring_points
        )
        if fits_expiring:
            score += EXPIRY_BOOST
        scored.append((-score, abs(item.points_price - balance), iid, item, fits_expiring))
    scored.sort(key=lambda entry: entry[:3])
    return scored


def recall_at_k(
    recommended: Mapping[str, Sequence[str]], held_out: Mapping[str, set[str]], k: int
) -> float:
    """Share of users whose held-out redemptions include one of their top-k items."""
    users = [u for u in held_out if held_out[u]]
    if not users:
        return 0.0
    hits = sum(1 for u in users if set(recommended.get(u, ())[:k]) & held_out[u])
    return hits / len(users)
