"""Significance tests for prompt experiments: is a variant really different from the control?

Input: per-variant summaries (counts and successes for rates; count, mean
and variance for latencies and token counts). Output: a ``Comparison`` with
the statistic, a two-sided p-value, whether it is significant at ``ALPHA``
and how many samples per variant a test with ``POWER`` would need to detect
the observed difference (and how many more that is). Rates use the
two-proportion z-test; means use Welch's t-test (unequal variances), whose
p-value comes from Student's t distribution through the regularised
incomplete beta function. Pure functions, no I/O. Caller:
``llmops.engine.service.experiments``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.05
POWER = 0.8
Z_ALPHA = 1.959963984540054  # two-sided 5%
Z_POWER = 0.8416212335729143  # 80% power


@dataclass(frozen=True)
class Comparison:
    variant: str
    control: str
    test: str
    """``two-proportion-z`` or ``welch-t``."""
    difference: float
    """Variant minus control (a rate or a mean in the metric's unit)."""
    statistic: float | None
    p_value: float | None
    significant: bool
    samples_needed: int | None
    """Per variant, to detect this difference at ALPHA with POWER; None if no difference."""
    additional_samples: int | None


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-14
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def _needed(variance_sum: float, difference: float, have: int) -> tuple[int | None, int | None]:
    if difference == 0.0 or variance_sum <= 0.0:
        return None, None
    n = math.ceil((Z_ALPHA + Z_POWER) ** 2 * variance_sum / difference**2)
    return n, max(0, n - have)


def two_proportions(
    variant: str, control: str, hits: tuple[int, int], totals: tuple[int, int]
) -> Comparison:
    """Two-proportion z-test of ``hits[0]/totals[0]`` (variant) against the control's."""
    (x1, x2), (n1, n2) = hits, totals
    p1 = x1 / n1 if n1 else 0.0
    p2 = x2 / n2 if n2 else 0.0
    needed = _needed(p1 * (1 - p1) + p2 * (1 - p2), p1 - p2, min(n1, n2))
    pooled = (x1 + x2) / (n1 + n2) if n1 + n2 else 0.0
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2)) if n1 and n2 else 0.0
    if spread == 0.0:
        return Comparison(variant, control, "two-proportion-z", p1 - p2, None, None, False, *needed)
    z = (p1 - p2) / spread
    p = math.erfc(abs(z) / math.sqrt(2.0))
    return Comparison(variant, control, "two-proportion-z", p1 - p2, z, p, p < ALPHA, *needed)


def welch(
    variant: str,
    control: str,
    counts: tuple[int, int],
    means: tuple[float, float],
    variances: tuple[float, float],
) -> Comparison:
    """Welch's t-test of the variant's mean against the control's."""
    (n1, n2), (m1, m2), (v1, v2) = counts, means, variances
    needed = _needed(v1 + v2, m1 - m2, min(n1, n2))
    if n1 < 2 or n2 < 2:
        return Comparison(variant, control, "welch-t", m1 - m2, None, None, False, *needed)
    s1, s2 = v1 / n1, v2 / n2
    if s1 + s2 == 0.0:
        return Comparison(variant, control, "welch-t", m1 - m2, None, None, False, *needed)
    t = (m1 - m2) / math.sqrt(s1 + s2)
    df = (s1 + s2) ** 2 / (s1**2 / (n1 - 1) + s2**2 / (n2 - 1))
    p = t_two_sided(t, df)
    return Comparison(variant, control, "welch-t", m1 - m2, t, p, p < ALPHA, *needed)
