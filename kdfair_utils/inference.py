"""One inference rule for every claim of the report: tests whose unit is the seed.

The models of one seed share their initialisation, batch order and (for distilled students)
their teacher across temperatures, so they are not independent draws. Conventions:

* **Trends over T** (:func:`trend_test`): the slope of a per-model value on T with a fixed effect
  per seed (OLS ``y ~ T + C(seed)``, equal to statsmodels; its t interval is shown) and a
  *within-seed permutation* p-value: T is shuffled among each seed's own models, so seed effects
  (and teacher effects: a seed's teacher is the same at every T) never count as evidence.
  Exhaustive when there are at most ``n_perm + 1`` orderings, otherwise ``n_perm`` random ones
  plus the observed one (p = (k + 1) / (n + 1)).
* **Comparisons of populations** (:func:`paired_comparison`, :func:`welch_comparison`): a paired
  t-test on per-seed values where the models share a seed's initialisation and batch order (NDS
  vs DS, DS at two temperatures), Welch's unpaired test otherwise (teachers vs students).
* **Verdicts** (:func:`verdict`): ``holds`` — p < level in the paper's direction; ``opposite`` —
  p < level against it; ``not significant`` — neither; ``n/a`` — not measurable.
* **Support** (:func:`bootstrap_support`): the share of resamples in which the same verdict
  comes out — how much a verdict depends on which seeds were drawn. Students that distil from one
  teacher are resampled as a cluster (:func:`teacher_clusters`).

The p-values of comparisons and counts treat the student seeds as independent, although the
students of one teacher share it (with 2 teachers and 5 seeds: seeds 0, 2, 4 and 1, 3); with so
few teachers no test at the teacher level has power, so these p-values are optimistic and the
cluster-bootstrap support is the check on them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import stats as sps

LEVEL = 0.05
HOLDS, NOT_SIGNIFICANT, OPPOSITE, NA = "holds", "not significant", "opposite", "n/a"
VERDICTS = (HOLDS, NOT_SIGNIFICANT, OPPOSITE, NA)


def verdict(p_paper: float | None, p_opposite: float | None, level: float = LEVEL) -> str:
    """``holds`` if ``p_paper`` < level, ``opposite`` if ``p_opposite`` < level, else ``not
    significant``; ``n/a`` when a p-value is undefined."""
    if p_paper is None or p_opposite is None or not (math.isfinite(p_paper) and math.isfinite(p_opposite)):
        return NA
    if p_paper < level:
        return HOLDS
    return OPPOSITE if p_opposite < level else NOT_SIGNIFICANT


def _finite(*arrays: Any) -> bool:
    return all(np.all(np.isfinite(np.asarray(a, dtype=float))) for a in arrays)


# ----------------------------------------------------------------------------- trends over T
@dataclass(frozen=True)
class Slope:
    """OLS slope of a value on T with one intercept per seed: estimate, standard error,
    residual degrees of freedom, two-sided 95 % t interval and two-sided p."""

    estimate: float
    se: float
    df: int
    ci_low: float
    ci_high: float
    p_two_sided: float


def blocked_slope(values: Any, temperatures: Any) -> Slope:
    """The slope of ``values`` ``[seeds, temperatures]`` on T with seed fixed effects (equal to
    statsmodels ``OLS(y ~ T + C(seed))``); every seed must have a value at every T."""
    y = np.asarray(values, dtype=float)
    t = np.asarray(temperatures, dtype=float)
    if y.ndim != 2 or y.shape[1] != len(t):
        raise ValueError(f"values must be [seeds, {len(t)} temperatures], got shape {y.shape}")
    s, k = y.shape
    if k < 2 or np.ptp(t) == 0:
        raise ValueError("a slope needs at least two distinct temperatures")
    tc = t - t.mean()
    yc = y - y.mean(axis=1, keepdims=True)
    sxx = s * float(tc @ tc)
    slope = float((yc * tc).sum() / sxx)
    df = s * k - s - 1
    if df < 1:
        return Slope(slope, math.nan, df, math.nan, math.nan, math.nan)
    resid = yc - slope * tc
    se = math.sqrt(float((resid**2).sum()) / df / sxx)
    if se == 0:
        return Slope(slope, 0.0, df, slope, slope, 0.0 if slope != 0 else 1.0)
    half = float(sps.t.ppf(0.975, df)) * se
    p = float(2 * sps.t.sf(abs(slope / se), df))
    return Slope(slope, se, df, slope - half, slope + half, p)


def slopes(y: np.ndarray, temperatures: Any) -> np.ndarray:
    """OLS slope over the last axis of ``y`` (``[..., T]``) on ``temperatures``; with seeds on
    axis -2 averaged first (a balanced design), the seed-fixed-effects slope."""
    t = np.asarray(temperatures, dtype=float)
    tc = t - t.mean()
    return (y * tc).sum(-1) / float(tc @ tc)


def within_seed_orders(n_seeds: int, n_temps: int, n_perm: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Orderings ``[P, seeds, temperatures]`` of each seed's models over T; the first is the
    observed one. All of them when there are at most ``n_perm + 1``, else ``n_perm`` random ones
    after the observed. Returns (orders, exhaustive)."""
    total = math.factorial(n_temps) ** n_seeds
    if total <= n_perm + 1:
        perms = list(itertools.permutations(range(n_temps)))
        orders = np.array(list(itertools.product(perms, repeat=n_seeds)), dtype=np.int64)
        return orders.reshape(-1, n_seeds, n_temps), True
    random = rng.permuted(np.broadcast_to(np.arange(n_temps), (n_perm, n_seeds, n_temps)), axis=-1)
    identity = np.broadcast_to(np.arange(n_temps), (1, n_seeds, n_temps))
    return np.concatenate([identity, random]), False


def permutation_p(observed: float, null: np.ndarray, exhaustive: bool) -> tuple[float, float]:
    """(p of a null value ≥ observed, p of one ≤ observed). ``null`` includes the observed
    ordering (first); exhaustive nulls give the exact share, random ones (k + 1) / (n + 1) — the
    same formula, as the observed ordering is one of the k. Ties within 1e-12 count."""
    tol = 1e-12 * max(1.0, abs(observed))
    ge, le = int(np.sum(null >= observed - tol)), int(np.sum(null <= observed + tol))
    return ge / len(null), le / len(null)


@dataclass(frozen=True)
class TrendTest:
    """A trend over T: the seed-blocked slope and its within-seed permutation p-values."""

    slope: Slope
    p_increase: float
    p_decrease: float
    n_orderings: int
    exhaustive: bool

    def p_in(self, sign: int) -> tuple[float, float]:
        """(p in direction ``sign``, p against it)."""
        return (self.p_increase, self.p_decrease) if sign > 0 else (self.p_decrease, self.p_increase)


def _within_seed_null(series_of: Callable[[np.ndarray], np.ndarray], n_seeds: int, temperatures: Any, n_perm: int,
                      seed: int) -> tuple[np.ndarray, float, float, bool]:
    """The series over T ``[P, T]`` for every within-seed ordering (the observed one first) and
    the permutation p of its slope rising and falling; ``series_of(orders)`` computes the series
    from orderings ``[P, seeds, T]``. Returns (series, p_increase, p_decrease, exhaustive)."""
    orders, exhaustive = within_seed_orders(n_seeds, len(temperatures), n_perm, np.random.default_rng(seed))
    series = np.asarray(series_of(orders), dtype=float)
    null = slopes(series, temperatures)
    up, down = permutation_p(float(null[0]), null, exhaustive)
    return series, up, down, exhaustive


def trend_test(values: Any, temperatures: Any, *, n_perm: int = 2000, seed: int = 0) -> TrendTest:
    """Is there a trend of ``values`` ``[seeds, temperatures]`` over T? See the module docstring."""
    y = np.asarray(values, dtype=float)
    fit = blocked_slope(y, temperatures)
    series, up, down, exhaustive = _within_seed_null(
        lambda orders: np.take_along_axis(np.broadcast_to(y, orders.shape), orders, axis=-1).mean(-2),
        len(y), temperatures, n_perm, seed)
    return TrendTest(fit, up, down, len(series), exhaustive)


def count_trend_test(counts_of: Callable[[np.ndarray], np.ndarray], n_seeds: int, temperatures: Any, *,
                     n_perm: int = 1000, seed: int = 0) -> tuple[np.ndarray, TrendTest]:
    """A trend over T of a count computed from whole populations (e.g. #SC per T).

    ``counts_of(orders)`` gets orderings ``[P, seeds, T]`` (``orders[p, s, j]``: which of seed
    s's models plays temperature j) and returns counts ``[P, T]``. Returns the observed counts
    and the test: the OLS fit of the counts on T, and within-seed permutation p-values."""
    counts, up, down, exhaustive = _within_seed_null(counts_of, n_seeds, temperatures, n_perm, seed)
    return counts[0], TrendTest(blocked_slope(counts[:1], temperatures), up, down, len(counts), exhaustive)


# ----------------------------------------------------------------------------- comparisons
@dataclass(frozen=True)
class Comparison:
    """Is mean(a) below mean(b)? ``difference`` = mean(b) − mean(a) with its two-sided 95 %
    interval; ``p_less`` (a < b) and ``p_greater`` one-sided."""

    test: str
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_less: float
    p_greater: float
    n_a: int
    n_b: int


def _undefined(test: str, a: np.ndarray, b: np.ndarray) -> Comparison:
    nan = math.nan
    ma = float(a.mean()) if a.size and _finite(a) else nan
    mb = float(b.mean()) if b.size and _finite(b) else nan
    return Comparison(test, ma, mb, mb - ma, nan, nan, nan, nan, len(a), len(b))


def paired_comparison(a: Any, b: Any) -> Comparison:
    """Paired t-test of a[i] vs b[i] (``scipy.stats.ttest_rel``); pairs are seeds."""
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired values differ in length: {len(x)} vs {len(y)}")
    d = y - x
    if len(x) < 2 or not _finite(x, y) or np.ptp(d) == 0:
        return _undefined("paired t", x, y)
    ci = sps.ttest_rel(y, x).confidence_interval(0.95)
    return Comparison("paired t", float(x.mean()), float(y.mean()), float(d.mean()), float(ci.low), float(ci.high),
                      float(sps.ttest_rel(x, y, alternative="less").pvalue),
                      float(sps.ttest_rel(x, y, alternative="greater").pvalue), len(x), len(y))


def welch_comparison(a: Any, b: Any) -> Comparison:
    """Welch's unpaired t-test (``scipy.stats.ttest_ind(equal_var=False)``)."""
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if len(x) < 2 or len(y) < 2 or not _finite(x, y) or (np.ptp(x) == 0 and np.ptp(y) == 0):
        return _undefined("Welch", x, y)
    ci = sps.ttest_ind(y, x, equal_var=False).confidence_interval(0.95)
    return Comparison("Welch", float(x.mean()), float(y.mean()), float(y.mean() - x.mean()), float(ci.low),
                      float(ci.high), float(sps.ttest_ind(x, y, equal_var=False, alternative="less").pvalue),
                      float(sps.ttest_ind(x, y, equal_var=False, alternative="greater").pvalue), len(x), len(y))


def one_sample(values: Any, threshold: float) -> Comparison:
    """Is the mean of ``values`` above ``threshold``? (``scipy.stats.ttest_1samp``; ``a`` is
    the threshold, so ``p_less`` is the p of threshold < mean)."""
    x = np.asarray(values, dtype=float).ravel()
    if len(x) < 2 or not _finite(x) or np.ptp(x) == 0:
        return _undefined("one-sample t", np.array([threshold]), x)
    ci = sps.ttest_1samp(x, threshold).confidence_interval(0.95)
    return Comparison("one-sample t", float(threshold), float(x.mean()), float(x.mean() - threshold),
                      float(ci.low - threshold), float(ci.high - threshold),
                      float(sps.ttest_1samp(x, threshold, alternative="greater").pvalue),
                      float(sps.ttest_1samp(x, threshold, alternative="less").pvalue), 1, len(x))


# ----------------------------------------------------------------------------- support
Picks = dict[str, np.ndarray]


def independent_units(units: dict[str, int]) -> Callable[[np.random.Generator], Picks]:
    """Resample each kind of unit (e.g. ``{"seeds": 5, "teachers": 2}``) with replacement, independently."""
    return lambda rng: {name: rng.integers(0, n, n) for name, n in units.items()}


def teacher_clusters(teacher_of_student: list[int], n_teachers: int) -> Callable[[np.random.Generator], Picks]:
    """A two-stage (cluster) resample: teachers with replacement, then, for each teacher drawn, its
    own students with replacement. Students that distil from one teacher share it, so they are
    resampled as a cluster, never as independent units. ``teacher_of_student[i]``: the index of
    student i's teacher (NDS seed i stays paired with DS seed i)."""
    members = [np.flatnonzero(np.asarray(teacher_of_student) == t) for t in range(n_teachers)]

    def draw(rng: np.random.Generator) -> Picks:
        teachers = rng.integers(0, n_teachers, n_teachers)
        students = [m[rng.integers(0, len(m), len(m))] for m in (members[t] for t in teachers) if len(m)]
        return {"teachers": teachers, "seeds": np.concatenate(students) if students else np.zeros(0, dtype=int)}

    return draw


MIN_MEASURABLE = 0.8  # below this share of measurable resamples there are too few units for a support


def bootstrap_support(verdict_of: Callable[[Picks], str], draw: Callable[[np.random.Generator], Picks],
                      observed: str, *, draws: int = 200, seed: int = 0) -> float | None:
    """The share of resamples that give ``observed`` again, among the resamples in which the
    verdict is measurable (a resample can repeat one model so often that no test is defined).

    ``draw(rng)`` returns the indices chosen per kind of unit (:func:`independent_units`,
    :func:`teacher_clusters`) and ``verdict_of`` the verdict on them. None when the observed
    verdict is ``n/a``, or when fewer than :data:`MIN_MEASURABLE` of the resamples are measurable
    (too few units: with 2 teachers, half the resamples draw one teacher twice)."""
    if observed == NA:
        return None
    rng = np.random.default_rng(seed)
    verdicts = [verdict_of(draw(rng)) for _ in range(draws)]
    measurable = [v for v in verdicts if v != NA]
    if len(measurable) < MIN_MEASURABLE * draws:
        return None
    return sum(v == observed for v in measurable) / len(measurable)
