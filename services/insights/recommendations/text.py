"""Content similarity of items: TF-IDF vectors of their names, categories and tags.

Chinese text has no spaces, so item texts are cut into character unigrams and bigrams of
each CJK run (and words of each Latin/digit run); no stop-word list is applied, English or
otherwise, since a name's few characters all carry meaning.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.insights.recommendations.model import Item

COMMON_TERMS_FROM = 20  # catalog size from which terms on most items are dropped

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


def catalog_texts(items: Sequence[Item]) -> tuple[tuple[str, str, str, tuple[str, ...]], ...]:
    """What the content similarity depends on: it is recomputed only when this changes."""
    return tuple(sorted((i.item_id, i.name, i.category, i.tags) for i in items))
