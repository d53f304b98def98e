"""The statistics experiment results need, in plain Python (no I/O, no numeric library).

- `two_proportion_z`: conversion rates of two arms, pooled two-sided z-test.
- `welch_t`: means of two arms with unequal variances; Welch-Satterthwaite degrees of
  freedom, two-sided p from Student's t through the regularized incomplete beta function.
- `srm_chi_square`: sample-ratio mismatch, Pearson's chi-square of the exposures against the
  configured weights, p from the regularized upper incomplete gamma function.
- `wilson_interval` / `mean_interval`: 95% intervals of a rate and of a mean.

The special functions use the textbook methods: a power series or Lentz's continued fraction
for the incomplete gamma, the continued fraction of the incomplete beta, each switching form
where it converges fastest; checked against published table values in the unit tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal
_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 10_000


def normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function, by the modified Lentz method."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITER):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        h *= step
        if abs(step - 1.0) < _EPS:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_two_sided_p(t: float, df: float) -> float:
    if math.isinf(df):
        return normal_two_sided_p(t)
    return regularized_beta(df / 2.0, 0.5, df / (df + t * t))


def regularized_gamma_upper(a: float, x: float) -> float:
    """Q(a, x) = Gamma(a, x) / Gamma(a), for a > 0 and x >= 0."""
    if x <= 0.0:
        return 1.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:  # the series of P(a, x) converges here
        term = total = 1.0 / a
        ap = a
        for _ in range(_MAX_ITER):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * _EPS:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    # Lentz's continued fraction for Q(a, x)
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITER):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = b + an / c
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        h *= step
        if abs(step - 1.0) < _EPS:
            break
    return math.exp(log_front) * h


def chi_square_sf(x: float, df: int) -> float:
    """P(X >= x) for a chi-square variable with `df` degrees of freedom."""
    return regularized_gamma_upper(df / 2.0, x / 2.0)


@dataclass(frozen=True)
class Test:
    statistic: float
    p_value: float
    df: float | None = None


def two_proportion_z(c1: int, n1: int, c2: int, n2: int) -> Test | None:
    """Pooled two-proportion z-test of c1/n1 against c2/n2; None without data to compare."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (c1 + c2) / (n1 + n2)
    variance = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
    if variance <= 0.0:
        return Test(0.0, 1.0)
    z = (c2 / n2 - c1 / n1) / math.sqrt(variance)
    return Test(z, normal_two_sided_p(z))


def welch_t(mean1: float, var1: float, n1: int, mean2: float, var2: float, n2: int) -> Test | None:
    """Welch's t-test of mean2 against mean1 (sample variances); None without two users a side."""
    if n1 < 2 or n2 < 2:
        return None
    s1, s2 = var1 / n1, var2 / n2
    se2 = s1 + s2
    if se2 <= 0.0:
        return Test(0.0, 1.0, float(n1 + n2 - 2))
    t = (mean2 - mean1) / math.sqrt(se2)
    df = se2 * se2 / (s1 * s1 / (n1 - 1) + s2 * s2 / (n2 - 1))
    return Test(t, student_t_two_sided_p(t, df), df)


def srm_chi_square(observed: Sequence[int], weights: Sequence[float]) -> Test | None:
    """Pearson's chi-square of observed counts against the expected split; None when there
    is nothing to test (fewer than two arms, no exposures)."""
    total = sum(observed)
    weight_sum = sum(weights)
    if len(observed) < 2 or total <= 0 or weight_sum <= 0:
        return None
    x = 0.0
    for count, weight in zip(observed, weights, strict=True):
        expected = total * weight / weight_sum
        if expected > 0:
            x += (count - expected) ** 2 / expected
    df = len(observed) - 1
    return Test(x, chi_square_sf(x, df), float(df))


def wilson_interval(conversions: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a rate (sound near 0 and 1, unlike the normal one)."""
    if n <= 0:
        return None
    p = conversions / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(
    mean: float, variance: float, n: int, z: float = Z_95
) -> tuple[float, float] | None:
    if n < 2:
        return None
    half = z * math.sqrt(variance / n)
    return mean - half, mean + half
