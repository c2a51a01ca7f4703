"""Small-sample statistics for comparing variants over seeds (no SciPy dependency).

``paired_ttest(a, b)``: two-sided paired t-test of mean(a - b) = 0 over seeds run with the same seed per pair.
The Student-t CDF is computed from the regularised incomplete beta function (continued fraction, Numerical Recipes
``betacf``), accurate to ~1e-10, and checked in the tests against known quantiles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


def mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0.0 for a single value)."""
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(xs) / n
    if n == 1:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))


def _betacf(a: float, b: float, x: float) -> float:
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        de = d * c
        h *= de
        if abs(de - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def t_sf2(t: float, df: float) -> float:
    """Two-sided p-value P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


@dataclass
class PairedTest:
    n: int
    mean_diff: float
    std_diff: float
    t: float
    p_value: float | None   # None when it cannot be computed (fewer than 2 pairs)

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def paired_ttest(a: list[float], b: list[float]) -> PairedTest:
    """Paired two-sided t-test of the mean difference a - b (pairs = same seed)."""
    if len(a) != len(b):
        raise ValueError(f"paired test needs equal-length samples, got {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    m, s = mean_std(d)
    if n < 2:
        return PairedTest(n, m, s, float("nan"), None)
    if s == 0.0:
        return PairedTest(n, m, s, 0.0 if m == 0 else math.copysign(math.inf, m), 1.0 if m == 0 else 0.0)
    t = m / (s / math.sqrt(n))
    return PairedTest(n, m, s, t, t_sf2(t, n - 1))


def t_quantile(q: float, df: float) -> float:
    """The upper ``q`` quantile of Student's t: the ``t`` with ``P(T >= t) = q`` (``0 < q <= 0.5``), by bisection
    on :func:`t_sf2`."""
    if not 0 < q <= 0.5:
        raise ValueError(f"t_quantile needs 0 < q <= 0.5, got {q}")
    lo, hi = 0.0, 1e3
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_sf2(mid, df) > 2 * q else (lo, mid)
    return 0.5 * (lo + hi)


def detectable_difference(std_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest true mean difference a two-sided paired t-test at level ``alpha`` detects with probability
    ``power`` over ``n`` pairs whose differences have standard deviation ``std_diff``:
    ``(t_{alpha/2, n-1} + t_{1-power, n-1}) * std_diff / sqrt(n)`` (the usual normal-approximation formula with t
    quantiles). ``None`` for fewer than 2 pairs."""
    if n < 2 or not math.isfinite(std_diff):
        return None
    return (t_quantile(alpha / 2, n - 1) + t_quantile(1 - power, n - 1)) * std_diff / math.sqrt(n)
