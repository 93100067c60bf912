"""Class bias: per-class accuracy, per-class Welch tests between model populations (#SC, #TC)
with BH/Holm corrections, a permutation null for the count of significant classes, disagreement
(CMP) matrices, and :func:`class_bias_summary`, the record notebook 03 writes.

Conventions (the paper's where it states them):

* Class accuracy is per-class recall. Each model's class accuracy is normalised by that
  model's overall accuracy, ``acc_c / acc`` (the paper's ratio form, H0: β_c/β_t = β'_c/β'_t);
  ``normalization="difference"`` uses ``acc_c − mean_population(acc)`` (Hooker et al. 2019).
* Welch's two-sided, unpaired t-test per class (models of different populations are separate
  trainings). #SC / #TC in the paper count raw p < 0.05 (``significance``); we also report Benjamini–Hochberg and
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
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .results import ChanceLevel, ClassBiasAtT, ClassBiasSummary, Population, SignificantCounts, in_window
from .validation import check_significance
from .stats import adjust_pvalues, welch_ttest

if TYPE_CHECKING:
    from .grid import GridResult

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


@dataclass
class ClassBiasResult:
    """Per-class table plus the counts of significant classes."""

    table: Any  # pandas.DataFrame
    counts: SignificantCounts
    significance: float
    normalization: str
    n_models: tuple[int, int]
    degenerate: dict[str, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        c = self.counts
        return (f"ClassBiasResult(raw={c.raw}, bh={c.bh}, holm={c.holm}, classes={len(self.table)}, "
                f"degenerate={self.degenerate})")


def _check_population_sizes(na: int, nb: int) -> None:
    if na < 2 or nb < 2:
        raise ValueError(f"each population needs at least 2 models for Welch's test, got {na} and {nb}")
    if na < 3 or nb < 3:
        warnings.warn(f"populations of {na} and {nb} models give Welch's test very little power", stacklevel=3)


def class_bias_test(y_true: Any, preds_a: Any, preds_b: Any, *, significance: float = 0.05,
                    normalization: str = "ratio", n_classes: int | None = None,
                    class_names: Sequence[str] | None = None) -> ClassBiasResult:
    """Per-class Welch test between two populations of models (e.g. NDS seeds vs DS seeds).

    ``preds_a``, ``preds_b``: predicted classes ``[models, examples]``. The table has one row per
    class: means and difference (b − a) of the normalised class accuracy with its Welch 95 %
    interval (``ci_low``, ``ci_high``), t (of a − b, as scipy), df, p, BH- and Holm-adjusted
    p, ``significant`` (raw p < significance) and ``status``. ``counts``: raw (the paper's
    #SC/#TC), BH and Holm. The classes are ``n_classes``, else one per name of ``class_names``,
    else 0 to the largest label or prediction (a class nobody predicts or shows may be missing).
    """
    check_significance(significance)
    y = np.asarray(y_true)
    pa, pb = _check_preds("preds_a", preds_a, len(y)), _check_preds("preds_b", preds_b, len(y))
    if n_classes is None and class_names is not None:
        n_classes = len(class_names)
    c = int(max(y.max(), pa.max(), pb.max()) + 1) if n_classes is None else int(n_classes)
    acc_a, ov_a = per_class_accuracy(y, pa, c)
    acc_b, ov_b = per_class_accuracy(y, pb, c)
    return class_bias_from_accuracy(acc_a, ov_a, acc_b, ov_b, significance=significance, normalization=normalization,
                                    class_names=class_names)


def class_bias_from_accuracy(acc_a: np.ndarray, ov_a: np.ndarray, acc_b: np.ndarray, ov_b: np.ndarray, *,
                             significance: float = 0.05, normalization: str = "ratio",
                             class_names: Sequence[str] | None = None) -> ClassBiasResult:
    """:func:`class_bias_test` from per-class accuracies ``[models, classes]`` and overall
    accuracies ``[models]`` (fractions) — also of models that only exist as accuracies, such as
    the accuracy-matched students of :mod:`kdfair_utils.class_bias_controls`."""
    import pandas as pd

    check_significance(significance)
    _check_population_sizes(len(acc_a), len(acc_b))
    c = acc_a.shape[1]
    xa = normalized_class_accuracy(acc_a, ov_a, normalization)
    xb = normalized_class_accuracy(acc_b, ov_b, normalization)
    present = ~(np.isnan(xa).any(0) | np.isnan(xb).any(0))
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
    diff = xb.mean(0) - xa.mean(0)
    table = pd.DataFrame({
        "class": names, "mean_a": xa.mean(0), "mean_b": xb.mean(0), "diff": diff,
        "ci_low": diff - full["ci95"], "ci_high": diff + full["ci95"],
        "t": full["t"], "df": full["df"], "p": full["p"], "p_bh": p_bh, "p_holm": p_holm,
        "significant": full["p"] < significance, "status": status,
    })
    counts = SignificantCounts(raw=int(np.sum(full["p"] < significance)), bh=int(np.sum(p_bh < significance)),
                               holm=int(np.sum(p_holm < significance)), tested=int(np.sum(~np.isnan(full["p"]))))
    degenerate = {s: int(np.sum(status == s)) for s in ("identical_constant", "constant_different", "absent")}
    return ClassBiasResult(table, counts, significance, normalization, (len(acc_a), len(acc_b)), degenerate)


def significant_counts(y_true: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray, *, significance: float = 0.05,
                       normalization: str = "ratio", n_classes: int | None = None) -> SignificantCounts:
    """Just the counts of :func:`class_bias_test`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return class_bias_test(y_true, preds_a, preds_b, significance=significance, normalization=normalization,
                               n_classes=n_classes).counts


COUNT_KINDS = ("raw", "bh", "holm")


@dataclass
class NullCalibration:
    """Counts of significant classes when population labels carry no information."""

    observed: SignificantCounts | None
    null_counts: dict[str, np.ndarray]  # "raw" / "bh" / "holm" → one count per relabelling
    exhaustive: bool
    equal_sizes: bool = False
    # per relabelling: is it the observed split or (equal sizes) its mirror image?
    is_observed: np.ndarray | None = None

    def expected(self, kind: str = "raw") -> float:
        """The chance level: the mean count over the relabellings other than the observed split
        and its mirror (which are the real comparison, not chance)."""
        null = self.null_counts[kind]
        keep = np.ones(len(null), dtype=bool) if self.is_observed is None else ~self.is_observed
        return float(null[keep].mean()) if keep.any() else math.nan

    def p_value(self, kind: str = "raw") -> float:
        """Permutation p of the observed count: the share of relabellings with at least that count.

        Exhaustive enumeration already contains the observed split, so p = share; with random
        relabellings the observed split is added (p = (k + 1) / (n + 1)).
        """
        if self.observed is None:
            raise ValueError("no observed count: the null was computed from a single population")
        null = self.null_counts[kind]
        hits = int(np.sum(null >= getattr(self.observed, kind)))
        return hits / len(null) if self.exhaustive else (hits + 1) / (len(null) + 1)

    @property
    def n_splits(self) -> int:
        return len(self.null_counts["raw"])

    @property
    def min_p_value(self) -> float:
        """The smallest p-value this design can give (e.g. 0.1 for 3 vs 3 models: 20 splits,
        each tied with its mirror image). A count cannot be significant if this is ≥ the level."""
        if self.exhaustive:
            return (2 if self.equal_sizes else 1) / self.n_splits
        return 1 / (self.n_splits + 1)


def relabellings(n_total: int, n_a: int, max_splits: int, seed: int) -> tuple[list[tuple[int, ...]], bool]:
    total = math.comb(n_total, n_a)
    if total <= max_splits:
        return list(itertools.combinations(range(n_total), n_a)), True
    rng = np.random.default_rng(seed)
    return [tuple(sorted(rng.choice(n_total, n_a, replace=False))) for _ in range(max_splits)], False


def relabelling_masks(n_total: int, n_a: int, max_splits: int, seed: int) -> tuple[np.ndarray, bool, np.ndarray]:
    """The :func:`relabellings` as boolean masks ``[splits, n_total]`` (side a True), whether they
    are all of them, and which of them are the observed split (the first ``n_a`` models on side
    a) or, with equal sizes, its mirror: what a mirror-excluded chance level leaves out."""
    splits, exhaustive = relabellings(n_total, n_a, max_splits, seed)
    masks = np.zeros((len(splits), n_total), dtype=bool)
    for i, idx in enumerate(splits):
        masks[i, list(idx)] = True
    real = np.arange(n_total) < n_a
    is_observed = (masks == real).all(1) | ((masks == ~real).all(1) & (2 * n_a == n_total))
    return masks, exhaustive, is_observed


def null_calibration(y_true: Any, preds_a: Any, preds_b: Any | None = None, *, significance: float = 0.05,
                     normalization: str = "ratio", n_classes: int | None = None, max_splits: int = 500,
                     seed: int = 0) -> NullCalibration:
    """How many classes come out significant by chance.

    * One population (``preds_b=None``, e.g. the NDS seeds): every split of it into two disjoint
      halves (sizes ⌊n/2⌋ and ⌈n/2⌉) is tested — both halves are the same kind of model.
    * Two populations: the models are pooled and re-split with the original sizes (a seed
      permutation null); ``observed`` holds the real split's counts and :meth:`p_value` the
      permutation p-value of the observed count.

    All splits are enumerated when there are at most ``max_splits`` (5 + 5 models: 252), else
    ``max_splits`` random ones. :func:`null_from_accuracy` does the work on class accuracies.
    """
    y = np.asarray(y_true)
    pa = _check_preds("preds_a", preds_a, len(y))
    c = int(max(y.max(), pa.max()) + 1) if n_classes is None else int(n_classes)
    if preds_b is None:
        return null_from_accuracy(*per_class_accuracy(y, pa, c), significance=significance,
                                  normalization=normalization, max_splits=max_splits, seed=seed)
    pb = _check_preds("preds_b", preds_b, len(y))
    c = max(c, int(pb.max()) + 1) if n_classes is None else c
    return null_from_accuracy(*per_class_accuracy(y, pa, c), *per_class_accuracy(y, pb, c), significance=significance,
                              normalization=normalization, max_splits=max_splits, seed=seed)


def null_from_accuracy(acc_a: np.ndarray, ov_a: np.ndarray, acc_b: np.ndarray | None = None,
                       ov_b: np.ndarray | None = None, *, significance: float = 0.05, normalization: str = "ratio",
                       max_splits: int = 500, seed: int = 0) -> NullCalibration:
    """:func:`null_calibration` from per-class and overall accuracies (``acc_b=None``: split one
    population into halves)."""
    from .validation import check_int

    check_int(max_splits, "max_splits", minimum=1)
    check_significance(significance)
    if acc_b is None:
        pool, ov, n_a, observed = acc_a, ov_a, len(acc_a) // 2, None
    else:
        pool, ov, n_a = np.concatenate([acc_a, acc_b]), np.concatenate([ov_a, ov_b]), len(acc_a)
    if n_a < 2 or len(pool) - n_a < 2:
        raise ValueError(f"need at least 2 models on each side of a split; got {len(pool)} models in all")

    def counts_of(mask: np.ndarray) -> SignificantCounts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return class_bias_from_accuracy(pool[mask], ov[mask], pool[~mask], ov[~mask], significance=significance,
                                            normalization=normalization).counts

    if acc_b is not None:
        observed = counts_of(np.arange(len(pool)) < n_a)
    masks, exhaustive, is_observed = relabelling_masks(len(pool), n_a, max_splits, seed)
    counts: dict[str, list[int]] = {k: [] for k in COUNT_KINDS}
    for mask in masks:
        res = counts_of(mask)
        for k in counts:
            counts[k].append(getattr(res, k))
    return NullCalibration(observed, {k: np.array(v) for k, v in counts.items()}, exhaustive,
                           equal_sizes=2 * n_a == len(pool), is_observed=None if acc_b is None else is_observed)


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
                              significance: float = 0.05, normalization: str = "ratio",
                              n_classes: int | None = None) -> list[ClassBiasAtT]:
    """#SC (NDS vs DS) and #TC (teacher vs DS) per temperature — raw, BH and Holm — plus the
    DS mean accuracy (%). Inputs are predictions ``[models, examples]``."""
    rows = []
    for t, preds in ds_by_t.items():
        opts = {"significance": significance, "normalization": normalization, "n_classes": n_classes}
        rows.append(ClassBiasAtT(temperature=float(t), sc=significant_counts(y_true, nds, preds, **opts),
                                 tc=significant_counts(y_true, teacher, preds, **opts),
                                 ds_accuracy=100 * float((np.asarray(preds) == np.asarray(y_true)).mean())))
    return rows


def class_bias_summary(result: GridResult, *, experiment: str, significance: float = 0.05,
                       normalization: str = "ratio", window: tuple[float, float] | None = None,
                       null_splits: int | None = None) -> ClassBiasSummary:
    """#SC/#TC of a grid at each of its temperatures in ``window`` (all if None), as a record.

    With ``null_splits``, also the chance level of #SC for NDS vs DS at the highest of those
    temperatures (:func:`null_calibration`: the seed-permutation null, and the split-half NDS null
    when there are at least 4 NDS models).
    """
    temps = sorted(float(t) for t in result.config.temperatures if in_window(float(t), window))
    if not temps:
        raise ValueError(f"no temperature of the grid {result.config.temperatures} lies in the window {window}")
    y, c = result.dataset.test.labels, result.dataset.num_classes
    opts = {"significance": significance, "normalization": normalization, "n_classes": c}
    teacher, nds = result.predictions(Population.teacher()), result.predictions(Population.nds())
    rows = class_bias_by_temperature(y, teacher, nds, {t: result.predictions(Population.ds(t)) for t in temps}, **opts)
    chance = None
    if null_splits is not None:
        top = result.predictions(Population.ds(temps[-1]))
        perm = null_calibration(y, nds, top, max_splits=null_splits, **opts)
        half = null_calibration(y, nds, max_splits=null_splits, **opts) if len(nds) >= 4 else None
        assert perm.observed is not None
        chance = ChanceLevel(temperature=temps[-1], observed=perm.observed, expected_raw=perm.expected("raw"),
                             expected_bh=perm.expected("bh"), p_value_raw=perm.p_value("raw"),
                             min_p_value=perm.min_p_value, n_splits=perm.n_splits, exhaustive=perm.exhaustive,
                             split_half_expected_raw=None if half is None else half.expected("raw"))
    return ClassBiasSummary(experiment=experiment, task=result.config.label, n_classes=c, significance=significance,
                            normalization=normalization, by_temperature=tuple(rows), chance=chance)
