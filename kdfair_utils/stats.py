"""Class-bias statistics: per-class accuracy, per-class Welch tests between model populations,
multiplicity corrections, a permutation null for the count of significant classes, and
disagreement (CMP) matrices.

Conventions (the paper's where it states them):

* Class accuracy is per-class recall. Each model's class accuracy is normalised by that
  model's overall accuracy, ``acc_c / acc`` (the paper's ratio form, H0: β_c/β_t = β'_c/β'_t);
  ``normalization="difference"`` uses ``acc_c − mean_population(acc)`` (Hooker et al. 2019).
* Welch's two-sided, unpaired t-test per class (models of different populations are separate
  trainings). #SC / #TC in the paper count raw p < 0.05; we also report Benjamini–Hochberg and
  Holm counts, because ~5 % of classes come out "significant" by chance alone.
* Degenerate classes: both populations constant and identical → p = 1 (no evidence of a
  difference; status ``identical_constant``); both constant but different → Welch's statistic is
  undefined (scipy gives p = 0), so the class is reported with status ``constant_different``,
  p = NaN and left out of the counts and corrections (:func:`null_calibration` offers an exact
  permutation p-value instead).
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import stats as sps

NORMALIZATIONS = ("ratio", "difference")


def _check_preds(name: str, preds: Any, n: int | None = None) -> np.ndarray:
    arr = np.asarray(preds)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{name} must be [models, examples], got shape {np.shape(preds)}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class predictions, got dtype {arr.dtype}")
    if n is not None and arr.shape[1] != n:
        raise ValueError(f"{name} has {arr.shape[1]} examples, y_true has {n}")
    return arr


def per_class_accuracy(y_true: Any, preds: Any, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-class recall ``[models, classes]`` and overall accuracy ``[models]``.

    Classes absent from ``y_true`` get NaN.
    """
    y = np.asarray(y_true)
    if y.ndim != 1 or y.size == 0 or y.dtype.kind not in "iu":
        raise ValueError(f"y_true must be a non-empty 1-D integer array, got shape {y.shape} dtype {y.dtype}")
    p = _check_preds("preds", preds, len(y))
    c = int(max(y.max(), p.max()) + 1) if n_classes is None else int(n_classes)
    if y.min() < 0 or y.max() >= c or p.min() < 0 or p.max() >= c:
        raise ValueError(f"labels must lie in [0, n_classes={c})")
    support = np.bincount(y, minlength=c).astype(float)
    correct = p == y[None]
    m = len(p)
    hits = np.bincount((np.arange(m)[:, None] * c + y[None]).ravel()[correct.ravel()], minlength=m * c).reshape(m, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(support > 0, hits / support, np.nan)
    return acc, correct.mean(axis=1)


def normalized_class_accuracy(acc: np.ndarray, overall: np.ndarray, normalization: str = "ratio") -> np.ndarray:
    """``acc_c / acc`` (ratio) or ``acc_c − mean(acc)`` over the population (difference)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if normalization == "ratio":
        if np.any(overall <= 0):
            raise ValueError("a model has overall accuracy 0; the ratio normalisation is undefined")
        return acc / overall[:, None]
    return acc - overall.mean()


def welch_ttest(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Vectorised two-sided Welch t-test along axis 0 of ``a`` ``[n_a, k]`` and ``b`` ``[n_b, k]``.

    Returns t, df (Welch–Satterthwaite), p, the standard error ``se`` of the difference of
    means, the 95 % interval half-width ``ci95`` and a ``status`` per column: ``ok``,
    ``identical_constant`` (p = 1, t = 0) or ``constant_different`` (t = ±inf, p = NaN).
    """
    na, nb = len(a), len(b)
    ma, mb = a.mean(0), b.mean(0)
    va, vb = a.var(0, ddof=1), b.var(0, ddof=1)
    se2 = va / na + vb / nb
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (ma - mb) / np.sqrt(se2)
        df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
        p = 2 * sps.t.sf(np.abs(t), df)
    # exact constancy test (max == min): var() of identical floats can be ~1e-33 instead of 0
    constant = (np.ptp(a, axis=0) == 0) & (np.ptp(b, axis=0) == 0)
    same = constant & (a[0] == b[0])
    different = constant & ~same
    t = np.where(same, 0.0, np.where(different, np.where(a[0] > b[0], np.inf, -np.inf), t))
    p = np.where(same, 1.0, np.where(different, np.nan, p))
    df = np.where(constant, np.nan, df)
    with np.errstate(invalid="ignore"):
        ci95 = np.where(constant, 0.0, sps.t.ppf(0.975, df) * np.sqrt(se2))
    status = np.where(same, "identical_constant", np.where(different, "constant_different", "ok"))
    return {"t": t, "df": df, "p": p, "se": np.sqrt(se2), "ci95": ci95, "status": status}


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


@dataclass
class ClassBiasResult:
    """Per-class table plus the counts of significant classes."""

    table: Any  # pandas.DataFrame
    counts: dict[str, int]
    alpha: float
    normalization: str
    n_models: tuple[int, int]
    degenerate: dict[str, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"ClassBiasResult(raw={self.counts['raw']}, bh={self.counts['bh']}, holm={self.counts['holm']}, "
                f"classes={len(self.table)}, degenerate={self.degenerate})")


def _check_population_sizes(na: int, nb: int) -> None:
    if na < 2 or nb < 2:
        raise ValueError(f"each population needs at least 2 models for Welch's test, got {na} and {nb}")
    if na < 3 or nb < 3:
        warnings.warn(f"populations of {na} and {nb} models give Welch's test very little power", stacklevel=3)


def class_bias_test(y_true: Any, preds_a: Any, preds_b: Any, *, alpha: float = 0.05, normalization: str = "ratio",
                    n_classes: int | None = None, class_names: Sequence[str] | None = None) -> ClassBiasResult:
    """Per-class Welch test between two populations of models (e.g. NDS seeds vs DS seeds).

    ``preds_a``, ``preds_b``: predicted classes ``[models, examples]``. The table has one row per
    class: means and difference (b − a) of the normalised class accuracy with its Welch 95 %
    interval (``ci_low``, ``ci_high``), t (of a − b, as scipy), df, p, BH- and Holm-adjusted
    p, ``significant`` (raw p < alpha) and ``status``. ``counts``: raw (the paper's #SC/#TC),
    ``bh`` and ``holm``.
    """
    import pandas as pd

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    y = np.asarray(y_true)
    pa, pb = _check_preds("preds_a", preds_a, len(y)), _check_preds("preds_b", preds_b, len(y))
    _check_population_sizes(len(pa), len(pb))
    c = int(max(y.max(), pa.max(), pb.max()) + 1) if n_classes is None else int(n_classes)
    acc_a, ov_a = per_class_accuracy(y, pa, c)
    acc_b, ov_b = per_class_accuracy(y, pb, c)
    xa = normalized_class_accuracy(acc_a, ov_a, normalization)
    xb = normalized_class_accuracy(acc_b, ov_b, normalization)
    present = ~np.isnan(xa).any(0)
    res = welch_ttest(xa[:, present], xb[:, present])
    full = {k: np.full(c, np.nan) for k in ("t", "df", "p", "ci95")}
    status = np.full(c, "absent", dtype=object)
    for k in full:
        full[k][present] = res[k]
    status[present] = res["status"]
    p_bh, p_holm = adjust_pvalues(full["p"], "bh"), adjust_pvalues(full["p"], "holm")
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ValueError(f"class_names has {len(names)} names for {c} classes")
    table = pd.DataFrame({
        "class": names, "mean_a": xa.mean(0), "mean_b": xb.mean(0), "diff": xb.mean(0) - xa.mean(0),
        "ci_low": xb.mean(0) - xa.mean(0) - full["ci95"], "ci_high": xb.mean(0) - xa.mean(0) + full["ci95"],
        "t": full["t"], "df": full["df"], "p": full["p"], "p_bh": p_bh, "p_holm": p_holm,
        "significant": full["p"] < alpha, "status": status,
    })
    counts = {"raw": int(np.sum(full["p"] < alpha)), "bh": int(np.sum(p_bh < alpha)),
              "holm": int(np.sum(p_holm < alpha)), "tested": int(np.sum(~np.isnan(full["p"])))}
    degenerate = {s: int(np.sum(status == s)) for s in ("identical_constant", "constant_different", "absent")}
    return ClassBiasResult(table, counts, alpha, normalization, (len(pa), len(pb)), degenerate)


def significant_counts(y_true: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray, *, alpha: float = 0.05,
                       normalization: str = "ratio", n_classes: int | None = None) -> dict[str, int]:
    """Just the counts of :func:`class_bias_test` (raw, bh, holm, tested)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return class_bias_test(y_true, preds_a, preds_b, alpha=alpha, normalization=normalization,
                               n_classes=n_classes).counts


@dataclass
class NullCalibration:
    """Counts of significant classes when population labels carry no information."""

    observed: dict[str, int] | None
    null_counts: dict[str, np.ndarray]
    exhaustive: bool
    equal_sizes: bool = False

    def expected(self, kind: str = "raw") -> float:
        return float(self.null_counts[kind].mean())

    def p_value(self, kind: str = "raw") -> float:
        """Permutation p of the observed count: the share of relabellings with at least that count.

        Exhaustive enumeration already contains the observed split, so p = share; with random
        relabellings the observed split is added (p = (k + 1) / (n + 1)).
        """
        if self.observed is None:
            raise ValueError("no observed count: the null was computed from a single population")
        null = self.null_counts[kind]
        hits = int(np.sum(null >= self.observed[kind]))
        return hits / len(null) if self.exhaustive else (hits + 1) / (len(null) + 1)

    @property
    def min_p_value(self) -> float:
        """The smallest p-value this design can give (e.g. 0.1 for 3 vs 3 models: 20 splits,
        each tied with its mirror image). A count cannot be significant if this is ≥ α."""
        n = len(next(iter(self.null_counts.values())))
        if self.exhaustive:
            return (2 if self.equal_sizes else 1) / n
        return 1 / (n + 1)


def _relabellings(n_total: int, n_a: int, max_splits: int, seed: int) -> tuple[list[tuple[int, ...]], bool]:
    total = math.comb(n_total, n_a)
    if total <= max_splits:
        return list(itertools.combinations(range(n_total), n_a)), True
    rng = np.random.default_rng(seed)
    return [tuple(sorted(rng.choice(n_total, n_a, replace=False))) for _ in range(max_splits)], False


def null_calibration(y_true: Any, preds_a: Any, preds_b: Any | None = None, *, alpha: float = 0.05,
                     normalization: str = "ratio", n_classes: int | None = None, max_splits: int = 500,
                     seed: int = 0) -> NullCalibration:
    """How many classes come out significant by chance.

    * One population (``preds_b=None``, e.g. the NDS seeds): every split of it into two disjoint
      halves (sizes ⌊n/2⌋ and ⌈n/2⌉) is tested — both halves are the same kind of model.
    * Two populations: the models are pooled and re-split with the original sizes (a seed
      permutation null); ``observed`` holds the real split's counts and :meth:`p_value` the
      permutation p-value of the observed count.

    All splits are enumerated when there are at most ``max_splits`` (5 + 5 models: 252), else
    ``max_splits`` random ones.
    """
    y = np.asarray(y_true)
    pa = _check_preds("preds_a", preds_a, len(y))
    if preds_b is None:
        pool, n_a, observed = pa, len(pa) // 2, None
    else:
        pb = _check_preds("preds_b", preds_b, len(y))
        pool, n_a = np.concatenate([pa, pb]), len(pa)
        observed = significant_counts(y, pa, pb, alpha=alpha, normalization=normalization, n_classes=n_classes)
    if n_a < 2 or len(pool) - n_a < 2:
        raise ValueError(f"need at least 2 models on each side of a split; got {len(pool)} models in all")
    splits, exhaustive = _relabellings(len(pool), n_a, max_splits, seed)
    counts: dict[str, list[int]] = {"raw": [], "bh": [], "holm": []}
    for idx in splits:
        mask = np.zeros(len(pool), dtype=bool)
        mask[list(idx)] = True
        res = significant_counts(y, pool[mask], pool[~mask], alpha=alpha, normalization=normalization,
                                 n_classes=n_classes)
        for k in counts:
            counts[k].append(res[k])
    return NullCalibration(observed, {k: np.array(v) for k, v in counts.items()}, exhaustive,
                           equal_sizes=2 * n_a == len(pool))


def disagreement_matrix(pred_f: Any, pred_g: Any, n_classes: int, *, include_diagonal: bool = False) -> np.ndarray:
    """Counts ``[C, C]``: entry (i, j) = number of examples with f = i and g = j (Fort et al.'s
    CMP, the paper's Fig. 2). Several models (``[models, examples]``) are summed over models.
    The diagonal (agreement) is zeroed unless ``include_diagonal``."""
    f, g = np.asarray(pred_f).ravel(), np.asarray(pred_g).ravel()
    if f.shape != g.shape:
        raise ValueError(f"pred_f and pred_g differ in shape: {np.shape(pred_f)} vs {np.shape(pred_g)}")
    if f.size and (min(f.min(), g.min()) < 0 or max(f.max(), g.max()) >= n_classes):
        raise ValueError(f"predictions must lie in [0, n_classes={n_classes})")
    mat = np.bincount(f * n_classes + g, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    if not include_diagonal:
        np.fill_diagonal(mat, 0)
    return mat


def disagreement_by_class(y_true: Any, pred_f: Any, pred_g: Any, n_classes: int | None = None) -> np.ndarray:
    """Mean CMP (share of examples where f ≠ g) per true class, per model pair ``[models, classes]``."""
    y = np.asarray(y_true)
    f, g = _check_preds("pred_f", pred_f, len(y)), _check_preds("pred_g", pred_g, len(y))
    if f.shape != g.shape:
        raise ValueError(f"pred_f and pred_g differ in shape: {f.shape} vs {g.shape}")
    c = int(y.max() + 1) if n_classes is None else int(n_classes)
    support = np.bincount(y, minlength=c).astype(float)
    m = len(f)
    cell = (np.arange(m)[:, None] * c + y[None]).ravel()
    diff = np.bincount(cell, weights=(f != g).ravel().astype(float), minlength=m * c).reshape(m, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, diff / support, np.nan)


def class_bias_by_temperature(y_true: Any, teacher: Any, nds: Any, ds_by_t: dict[float, Any], *,
                              alpha: float = 0.05, normalization: str = "ratio",
                              n_classes: int | None = None):
    """#SC (NDS vs DS) and #TC (teacher vs DS) per temperature — raw, BH and Holm — plus the
    DS mean accuracy; one row per T. Inputs are predictions ``[models, examples]``."""
    import pandas as pd

    rows = []
    for t, preds in ds_by_t.items():
        sc = significant_counts(y_true, nds, preds, alpha=alpha, normalization=normalization, n_classes=n_classes)
        tc = significant_counts(y_true, teacher, preds, alpha=alpha, normalization=normalization, n_classes=n_classes)
        rows.append({"T": float(t), **{f"SC_{k}": v for k, v in sc.items() if k != "tested"},
                     **{f"TC_{k}": v for k, v in tc.items() if k != "tested"},
                     "acc_mean": 100 * float((np.asarray(preds) == np.asarray(y_true)).mean())})
    return pd.DataFrame(rows)
