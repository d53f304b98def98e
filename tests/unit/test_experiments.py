"""shared/experiments.py against GrowthBook's published cross-SDK cases, and the split it gives."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.experiments import (
    assign,
    bucket_ranges,
    choose_variant,
    equal_weights,
    growthbook_hash,
    hash_fnv32a,
    in_namespace,
)

VECTORS = json.loads(
    (Path(__file__).parents[1] / "data" / "growthbook_vectors.json").read_text("utf-8")
)


@pytest.mark.parametrize(("seed", "value", "version", "expected"), VECTORS["hash"])
def test_hash_matches_growthbook(seed: str, value: str, version: int, expected: float | None):
    assert growthbook_hash(seed, value, version) == expected


@pytest.mark.parametrize(("name", "args", "expected"), VECTORS["getBucketRange"])
def test_bucket_ranges_match_growthbook(name: str, args: list, expected: list):
    num, coverage, weights = args
    got = bucket_ranges(num, coverage, weights)
    assert [list(r) for r in got] == [pytest.approx(r, abs=1e-9) for r in expected], name


@pytest.mark.parametrize(("name", "n", "ranges", "expected"), VECTORS["chooseVariation"])
def test_choose_variant_matches_growthbook(name: str, n: float, ranges: list, expected: int):
    assert choose_variant([tuple(r) for r in ranges], n) == expected, name


@pytest.mark.parametrize(("name", "user_id", "namespace", "expected"), VECTORS["inNamespace"])
def test_namespaces_match_growthbook(name: str, user_id: str, namespace: list, expected: bool):
    assert in_namespace(user_id, tuple(namespace)) is expected, name


@pytest.mark.parametrize(("n", "expected"), VECTORS["getEqualWeights"])
def test_equal_weights_match_growthbook(n: int, expected: list[float]):
    assert equal_weights(n) == [pytest.approx(w, abs=1e-8) for w in expected]


@pytest.mark.parametrize(
    (
        "name",
        "key",
        "seed",
        "version",
        "user_id",
        "weights",
        "coverage",
        "namespace",
        "bucket",
        "variation",
    ),
    VECTORS["experiments"],
)
def test_assignment_matches_growthbook_experiments(
    name, key, seed, version, user_id, weights, coverage, namespace, bucket, variation
):
    if bucket is not None:
        assert growthbook_hash(seed or key, user_id, version) == bucket, name
    variants = [(f"v{i}", w) for i, w in enumerate(weights)]
    got = assign(
        key,
        user_id,
        variants,
        seed=seed,
        namespace=tuple(namespace) if namespace else None,
        coverage=coverage,
        hash_version=version,
    )
    assert got == (f"v{variation}" if variation >= 0 else None), name


def test_fifty_fifty_within_one_percent_over_100k_users():
    counts = Counter(
        assign("expiry-reminder-copy", f"user-{i}", [("value", 0.5), ("deadline", 0.5)])
        for i in range(100_000)
    )
    assert set(counts) == {"value", "deadline"}
    assert abs(counts["value"] / 100_000 - 0.5) < 0.01


def test_uneven_split_and_coverage_over_100k_users():
    counts = Counter(
        assign("copy", f"u{i}", [("a", 1), ("b", 3)], coverage=0.5) for i in range(100_000)
    )
    assert abs(counts[None] / 100_000 - 0.5) < 0.01
    assert abs(counts["a"] / 100_000 - 0.125) < 0.01
    assert abs(counts["b"] / 100_000 - 0.375) < 0.01


def test_unusable_variants_assign_nobody():
    assert assign("x", "u1", []) is None
    assert assign("x", "u1", [("a", 0), ("b", 0)]) is None
    assert assign("x", "u1", [("a", -1), ("b", 2)]) is None
    assert assign("x", "u1", [("a", 1)], hash_version=99) is None


@given(st.text(max_size=40))
def test_fnv_over_bmp_text_equals_code_point_iteration(text: str):
    # JavaScript hashes UTF-16 code units; inside the Basic Multilingual Plane (Chinese user
    # ids included) that is the same as hashing code points.
    bmp = "".join(c for c in text if ord(c) < 0x10000)
    h = 0x811C9DC5
    for c in bmp:
        h = ((h ^ ord(c)) * 0x01000193) % 2**32
    assert hash_fnv32a(bmp) == h


def test_fnv_hashes_astral_characters_as_surrogate_pairs():
    # "😀" is U+1F600: JavaScript's charCodeAt yields 0xD83D, 0xDE00.
    h = 0x811C9DC5
    for unit in (0xD83D, 0xDE00):
        h = ((h ^ unit) * 0x01000193) % 2**32
    assert hash_fnv32a("😀") == h


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
def test_assignment_is_deterministic_and_in_the_variant_list(key: str, user_id: str):
    variants = [("control", 0.5), ("treatment", 0.5)]
    first = assign(key, user_id, variants)
    assert first in {"control", "treatment"}
    assert assign(key, user_id, variants) == first
