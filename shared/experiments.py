"""Experiment assignment: which variant a user sees, decided locally by a pure function.

Any service calls `assign` without a network hop and gets the same answer the insights
service serves at `GET /v1/experiments/{key}/assignment/{user_id}`, and the same bucket a
GrowthBook SDK computes for the same seed, user and hash version (GrowthBook's published
test cases are checked in `tests/unit/test_experiments.py`). Nothing here imports GrowthBook.

    from shared.experiments import assign

    variant = assign(
        "expiry-reminder-copy",
        user_id,
        [("value", 0.5), ("deadline", 0.5)],
    )
    if variant is not None:  # None: the user is outside the experiment (namespace, coverage)
        ...  # show that copy, then publish an ExperimentExposure (shared/events.py) once

The building blocks follow GrowthBook's definitions:

- `hash_fnv32a(text)`: 32-bit FNV-1a over the UTF-16 code units of `text` (what JavaScript's
  `charCodeAt` yields; identical to iterating code points for every character of the Basic
  Multilingual Plane, Chinese included).
- `growthbook_hash(seed, value, version)`: the bucket in [0, 1). Version 1 is
  `fnv(value + seed) % 1000 / 1000`, version 2 is `fnv(str(fnv(seed + value))) % 10000 / 10000`;
  any other version gives None.
- `in_namespace(user_id, namespace)`: namespaces let mutually exclusive experiments share
  users: `(name, start, end)` admits users whose version-1 hash of `"__" + name` falls in
  [start, end).
- `bucket_ranges(n, coverage, weights)`: contiguous `[start, start + coverage * weight)`
  ranges; invalid weights (wrong length, sum outside 0.99..1.01) fall back to equal ones.
- `choose_variant(ranges, n)`: the index of the range holding `n`, or -1.

`assign` puts them together the way GrowthBook runs an experiment: namespace check, bucket
from `growthbook_hash(seed or experiment_key, user_id, hash_version)`, ranges from the
variants' weights (normalised here, so `[("a", 1), ("b", 1)]` is a 50/50 split) and
`coverage`. It defaults to hash version 2, the one GrowthBook uses for new experiments (its
version 1 correlates buckets across experiments with similar keys).

The API is stable: other services import it. Keep changes additive.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from shared.events import EXPERIMENT_EXPOSURES, ExperimentExposure, stable_id
from shared.messaging import OutgoingEvent

__all__ = [
    "DEFAULT_HASH_VERSION",
    "Namespace",
    "assign",
    "bucket_ranges",
    "choose_variant",
    "equal_weights",
    "growthbook_hash",
    "hash_fnv32a",
    "in_namespace",
]

DEFAULT_HASH_VERSION = 2

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_MASK = 0xFFFFFFFF


class Namespace(NamedTuple):
    """A slice `[start, end)` of the users hashed into namespace `name`."""

    name: str
    start: float
    end: float


def _code_units(text: str) -> Sequence[int]:
    if text.isascii():
        return text.encode("ascii")
    data = text.encode("utf-16-le")
    return [data[i] | (data[i + 1] << 8) for i in range(0, len(data), 2)]


def hash_fnv32a(text: str) -> int:
    """32-bit FNV-1a of `text`'s UTF-16 code units, as GrowthBook computes it."""
    h = _FNV_OFFSET
    for unit in _code_units(text):
        h = ((h ^ unit) * _FNV_PRIME) & _MASK
    return h


def growthbook_hash(seed: str, value: str, version: int) -> float | None:
    """GrowthBook's bucket of `value` under `seed`, in [0, 1); None for an unknown version."""
    if version == 2:
        return (hash_fnv32a(str(hash_fnv32a(seed + value))) % 10_000) / 10_000
    if version == 1:
        return (hash_fnv32a(value + seed) % 1_000) / 1_000
    return None


def in_namespace(user_id: str, namespace: Namespace | tuple[str, float, float]) -> bool:
    """Whether the user falls in the namespace's slice (GrowthBook's `inNamespace`)."""
    name, start, end = namespace
    n = growthbook_hash("__" + name, user_id, 1)
    return n is not None and start <= n < end


def equal_weights(num_variants: int) -> list[float]:
    """`num_variants` equal weights summing to 1 (empty for fewer than one)."""
    if num_variants < 1:
        return []
    return [1.0 / num_variants] * num_variants


def bucket_ranges(
    num_variants: int, coverage: float = 1.0, weights: Sequence[float] | None = None
) -> list[tuple[float, float]]:
    """The hash range of each variant (GrowthBook's `getBucketRanges`)."""
    coverage = min(max(coverage, 0.0), 1.0)
    equal = equal_weights(num_variants)
    chosen = list(weights) if weights is not None else equal
    if len(chosen) != num_variants:
        chosen = equal
    total = sum(chosen)
    if total < 0.99 or total > 1.01:
        chosen = equal
    ranges: list[tuple[float, float]] = []
    cumulative = 0.0
    for weight in chosen:
        start = cumulative
        cumulative += weight
        ranges.append((start, start + coverage * weight))
    return ranges


def choose_variant(ranges: Sequence[tuple[float, float]], n: float) -> int:
    """Index of the range that holds `n` (start inclusive, end exclusive), or -1."""
    for index, (start, end) in enumerate(ranges):
        if start <= n < end:
            return index
    return -1


def assign(
    experiment_key: str,
    user_id: str,
    variants: Sequence[tuple[str, float]],
    *,
    seed: str | None = None,
    namespace: Namespace | tuple[str, float, float] | None = None,
    coverage: float = 1.0,
    hash_version: int = DEFAULT_HASH_VERSION,
) -> str | None:
    """The variant key `user_id` sees in the experiment, or None when they are not in it.

    `variants` are `(key, weight)` pairs with non-negative weights, normalised to sum to 1.
    None when the user is outside `namespace`, outside `coverage`, or when the weights are
    unusable (empty, all zero). Deterministic: same inputs, same answer, in every process.
    """
    if not variants:
        return None
    if namespace is not None and not in_namespace(user_id, namespace):
        return None
    n = growthbook_hash(seed if seed else experiment_key, user_id, hash_version)
    if n is None:
        return None
    total = sum(weight for _, weight in variants)
    if total <= 0 or any(weight < 0 for _, weight in variants):
        return None
    weights = [weight / total for _, weight in variants]
    index = choose_variant(bucket_ranges(len(variants), coverage, weights), n)
    return variants[index][0] if index >= 0 else None


def exposure_event(
    experiment: str, variant: str, user_id: str, at: datetime, source: str
) -> OutgoingEvent:
    """The user was shown the variant, logged on experiment.exposures by the service that
    showed it (`source`). Once per user and experiment: the id is derived from both, so every
    service that exposes a user to an experiment logs the same event."""
    exposure = ExperimentExposure(
        event_id=stable_id("exposure", experiment, user_id),
        experiment=experiment,
        variant=variant,
        user_id=user_id,
        source=source,
        occurred_at=at,
    )
    return OutgoingEvent(EXPERIMENT_EXPOSURES, user_id, exposure.model_dump_json())
