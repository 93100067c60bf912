"""Generic statistics used across the series: population summaries with confidence intervals,
Welch's t-test (vectorised over columns and batches) and multiplicity corrections; the
report's tests are in :mod:`kdfair_utils.inference`.

Conventions:

* A *population* is the set of models of one kind (e.g. the 5 seeds of DS@T=4); its spread is
  the sample standard deviation (``ddof=1``), defined only for n > 1 (NaN otherwise, never 0).
* Confidence intervals are Student-t intervals of the mean: mean ± t_{(1+c)/2, n−1}·s/√n
  (equal to ``scipy.stats.t.interval``).
* Welch's test is two-sided and unpaired unless ``alternative`` says otherwise; degenerate
  (constant) columns are reported explicitly, never as a spurious p = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from .validation import check_significance


@dataclass(frozen=True)
class PopulationStats:
    """Mean, sample std (ddof=1), n and a t confidence interval of one population's values."""

    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float
    confidence: float = 0.95

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.std:.2f} (n = {self.n})"


def population_stats(values: Any, *, confidence: float = 0.95) -> PopulationStats:
    """:class:`PopulationStats` of a 1-D set of values (one per model).

    std and the interval are NaN for a single value (a spread needs two).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("population_stats needs at least one value")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"population_stats got non-finite values: {v.tolist()}")
    check_significance(confidence, "confidence")
    n, mean = len(v), float(v.mean())
    if n == 1:
        return PopulationStats(mean, math.nan, 1, math.nan, math.nan, confidence)
    std = float(v.std(ddof=1))
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n))
    return PopulationStats(mean, std, n, mean - half, mean + half, confidence)


def _welch_parts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(t, df, se2, same, different)`` of :func:`welch_ttest`; columns constant in both samples
    get t = 0 (``same``) or ±inf (``different``) and df = NaN."""
    na, nb = a.shape[-2], b.shape[-2]
    ma, mb = a.mean(-2), b.mean(-2)
    va, vb = a.var(-2, ddof=1), b.var(-2, ddof=1)
    se2 = va / na + vb / nb
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (ma - mb) / np.sqrt(se2)
        df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    # exact constancy test (max == min): var() of identical floats can be ~1e-33 instead of 0
    constant = (np.ptp(a, axis=-2) == 0) & (np.ptp(b, axis=-2) == 0)
    first_a, first_b = a[..., 0, :], b[..., 0, :]
    same = constant & (first_a == first_b)
    different = constant & ~same
    t = np.where(same, 0.0, np.where(different, np.where(first_a > first_b, np.inf, -np.inf), t))
    return t, np.where(constant, np.nan, df), se2, same, different


def welch_ttest(a: np.ndarray, b: np.ndarray, *, interval: bool = True) -> dict[str, np.ndarray]:
    """Vectorised two-sided Welch t-test along axis -2 (the models) of ``a`` ``[..., n_a, k]``
    and ``b`` ``[..., n_b, k]``; leading axes (e.g. permutations) broadcast.

    Returns t, df (Welch–Satterthwaite), p, the standard error ``se`` of the difference of
    means, the 95 % interval half-width ``ci95`` (only with ``interval``) and a ``status`` per
    column: ``ok``, ``identical_constant`` (p = 1, t = 0) or ``constant_different``
    (t = ±inf, p = NaN).
    """
    t, df, se2, same, different = _welch_parts(a, b)
    with np.errstate(invalid="ignore"):
        p = np.where(same, 1.0, np.where(different, np.nan, 2 * sps.t.sf(np.abs(t), df)))
    status = np.where(same, "identical_constant", np.where(different, "constant_different", "ok"))
    out = {"t": t, "df": df, "p": p, "se": np.sqrt(se2), "status": status}
    if interval:
        with np.errstate(invalid="ignore"):
            out["ci95"] = np.where(same | different, 0.0, sps.t.ppf(0.975, df) * np.sqrt(se2))
    return out


def welch_significant(a: np.ndarray, b: np.ndarray, significance: float) -> np.ndarray:
    """``welch_ttest(a, b)["p"] < significance``, exactly, for counting over thousands of
    relabellings: the t tail is computed only where |t| lies between the normal quantile (below
    it no df is significant) and the t quantile at df = min(n_a, n_b) - 1 (above it every
    Welch df is: Welch's df is never smaller)."""
    check_significance(significance)
    low = sps.norm.isf(significance / 2) * (1 - 1e-9)
    high = sps.t.isf(significance / 2, min(a.shape[-2], b.shape[-2]) - 1) * (1 + 1e-9)
    if not np.isfinite(low):  # a level so small that its half underflows: no bracket, the exact test
        with np.errstate(invalid="ignore"):
            return welch_ttest(a, b, interval=False)["p"] < significance
    t, df, _, _, _ = _welch_parts(a, b)
    at = np.abs(np.where(np.isnan(df), 0.0, t))  # constant columns and degenerate variances: never counted
    with np.errstate(invalid="ignore"):
        out = at > high
        middle = (at > low) & ~out
        out[middle] = 2 * sps.t.sf(at[middle], df[middle]) < significance
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (equal to ``scipy.stats.false_discovery_control(p, method="bh")``)."""
    p = np.asarray(p, dtype=float)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (equal to statsmodels ``multipletests(method="holm")``)."""
    p = np.asarray(p, dtype=float)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p)
    scaled = p[order] * (m - np.arange(m))
    adjusted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    out = np.empty(m)
    out[order] = adjusted
    return out


def adjust_pvalues(p: np.ndarray, method: str) -> np.ndarray:
    """Adjust the finite p-values with ``"bh"`` or ``"holm"``; NaNs stay NaN and are not counted."""
    funcs = {"bh": benjamini_hochberg, "holm": holm}
    if method not in funcs:
        raise ValueError(f"method must be one of {tuple(funcs)}, got {method!r}")
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    out[ok] = funcs[method](p[ok])
    return out
