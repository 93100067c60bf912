"""Group-fairness metrics: DPD and EOD, binary (fairlearn-compatible) and multiclass (Algorithm 1).

Binary metrics have fairlearn 0.15's signatures and values (tests check 1e-12):

* ``demographic_parity_difference`` — selection rates P(ŷ=1 | A=a); ``method="between_groups"``:
  max − min over groups; ``"to_overall"``: max |rate_a − overall rate|.
* ``equalized_odds_difference`` — the same differences of TPR_a = P(ŷ=1 | Y=1, A=a) and
  FPR_a = P(ŷ=1 | Y=0, A=a); ``agg="worst_case"``: the larger, ``"mean"``: their average.

Where fairlearn is silently wrong we are explicit:

* multiclass labels in a binary metric raise (use :func:`multiclass_fairness`), instead of
  silently scoring label 1 only;
* string labels need ``pos_label`` (fairlearn returns 0.0 because ``1`` never matches);
* a group with no positives (TPR undefined) or no negatives (FPR undefined): fairlearn silently
  uses 0. We warn (:class:`UndefinedRateWarning`) and, by default (``undefined="exclude"``), leave
  that group out of that rate's difference; ``undefined="zero"`` reproduces fairlearn.

Everything is vectorised over models: pass ``y_pred`` as ``[models, examples]`` to get one value
per model. All counting is one weighted ``np.bincount`` over (model, class, group) cells.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .results import MetricSummary, summarize

METHODS = ("between_groups", "to_overall")
AGGS = ("worst_case", "mean")
UNDEFINED = ("exclude", "zero")


class UndefinedRateWarning(UserWarning):
    """A group's TPR or FPR is undefined (it has no positives or no negatives)."""


# ----------------------------------------------------------------------------- validation
def _as_array(name: str, values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    if arr.dtype.kind == "O":
        raise ValueError(f"{name} has object dtype; pass numbers or strings")
    return arr


def encode_groups(sensitive_features: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer group codes ``[n]`` and the group values (rows of several features combine)."""
    sf = _as_array("sensitive_features", sensitive_features)
    if sf.ndim == 2 and sf.shape[0] != n and sf.shape[1] == n:
        raise ValueError(f"sensitive_features has shape {sf.shape}; pass [examples] or [examples, features]")
    if sf.shape[0] != n:
        raise ValueError(f"sensitive_features has {sf.shape[0]} entries, y_true has {n}")
    if sf.ndim == 1:
        values, codes = np.unique(sf, return_inverse=True)
    elif sf.ndim == 2:
        values, codes = np.unique(sf, axis=0, return_inverse=True)
    else:
        raise ValueError(f"sensitive_features must be 1-D or 2-D, got {sf.ndim}-D")
    if len(values) < 2:
        raise ValueError(f"sensitive_features has a single group ({values[0]!r}); "
                         "a difference between groups needs at least two")
    return codes.ravel().astype(np.int64), values


def _check_weights(sample_weight: Any, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    w = _as_array("sample_weight", sample_weight).astype(np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
    if np.any(w < 0):
        raise ValueError("sample_weight must be non-negative")
    if not w.sum() > 0:
        raise ValueError("sample_weight sums to 0: every rate would be undefined")
    return w


def _check_option(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _binary_codes(name: str, values: np.ndarray, pos_label: Any) -> np.ndarray:
    """0/1 codes of binary labels, ``pos_label`` → 1."""
    if values.dtype.kind in "US":
        if pos_label is None:
            raise ValueError(f"{name} has string labels {sorted(set(values.ravel().tolist()))[:5]}; pass pos_label")
        extra = set(np.unique(values).tolist()) - {pos_label}
        if len(extra) > 1:
            raise ValueError(f"{name} has more than two labels; for multiclass use multiclass_fairness")
        return (values == pos_label).astype(np.int64)
    uniq = np.unique(values)
    if pos_label is None:
        if not (set(uniq.tolist()) <= {0, 1} or set(uniq.tolist()) <= {-1, 1}):
            if len(uniq) > 2:
                raise ValueError(f"{name} has {len(uniq)} distinct labels; binary metrics need two — "
                                 "for multiclass use multiclass_fairness (the paper's Algorithm 1)")
            raise ValueError(f"{name} labels {uniq.tolist()} are not in {{0, 1}} or {{-1, 1}}; pass pos_label")
        pos_label = 1
    elif len(np.setdiff1d(uniq, [pos_label])) > 1:
        raise ValueError(f"{name} has {len(uniq)} distinct labels; for multiclass use multiclass_fairness")
    return (values == pos_label).astype(np.int64)


# ----------------------------------------------------------------------------- core
def group_rates(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, n_groups: int, n_classes: int,
                weights: np.ndarray) -> dict[str, np.ndarray]:
    """One-vs-rest rates per (model, class, group) and overall per (model, class).

    ``y_true`` int ``[N]``, ``y_pred`` int ``[M, N]``, ``groups`` int ``[N]``. Returns
    ``selection``, ``tpr``, ``fpr`` of shape ``[M, C, K]`` (NaN where undefined) and the same
    with the suffix ``_overall`` of shape ``[M, C]``.
    """
    m, n = y_pred.shape
    c, k = n_classes, n_groups
    cell = np.arange(m)[:, None] * (c * k) + y_pred * k + groups[None, :]  # (model, predicted class, group)
    w = np.broadcast_to(weights, (m, n))
    selected = np.bincount(cell.ravel(), weights=w.ravel(), minlength=m * c * k).reshape(m, c, k)
    hit = (y_pred == y_true[None, :])
    tp = np.bincount(cell[hit], weights=w[hit], minlength=m * c * k).reshape(m, c, k)
    group_total = np.bincount(groups, weights=weights, minlength=k)  # [K]
    positives = np.bincount(y_true * k + groups, weights=weights, minlength=c * k).reshape(c, k)
    return rates_from_counts(selected, tp, group_total, positives)


def rates_from_counts(selected: np.ndarray, tp: np.ndarray, group_total: np.ndarray,
                      positives: np.ndarray) -> dict[str, np.ndarray]:
    """The rates of :func:`group_rates` from (weighted) counts: ``selected`` and ``tp`` per
    (model, predicted class, group) ``[M, C, K]``, examples per group ``[K]`` and per (true class,
    group) ``[C, K]``."""
    negatives = group_total[None, :] - positives
    fp = selected - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "selection": selected / group_total[None, None, :],
            "tpr": tp / positives[None],
            "fpr": fp / negatives[None],
            "selection_overall": selected.sum(2) / group_total.sum(),
            "tpr_overall": tp.sum(2) / positives.sum(1)[None],
            "fpr_overall": fp.sum(2) / negatives.sum(1)[None],
        }
    out["selection"][:, :, group_total == 0] = np.nan
    out["tpr"][:, positives == 0] = np.nan
    out["fpr"][:, negatives <= 0] = np.nan
    out["positives"], out["negatives"] = positives, negatives
    return out


def _difference(rates: np.ndarray, overall: np.ndarray, method: str) -> np.ndarray:
    """Between-group difference over the last axis, ignoring NaN groups (NaN if < 2 remain
    for ``between_groups``, or none for ``to_overall``)."""
    valid = ~np.isnan(rates)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if method == "between_groups":
            diff = np.nanmax(rates, axis=-1) - np.nanmin(rates, axis=-1)
            return np.where(valid.sum(-1) >= 2, diff, np.nan)
        diff = np.nanmax(np.abs(rates - overall[..., None]), axis=-1)
        return np.where(valid.sum(-1) >= 1, diff, np.nan)


def _resolve_undefined(rates: dict[str, np.ndarray], undefined: str, what: str, warn: bool = True) -> None:
    for name, count in (("tpr", rates["positives"]), ("fpr", rates["negatives"])):
        bad = count <= 0
        if not bad.any():
            continue
        if warn:
            kind = "positives" if name == "tpr" else "negatives"
            msg = (f"{int(bad.sum())} (class, group) cell(s) of {what} have no {kind}: {name.upper()} is undefined "
                   + ("and those groups are left out of its difference" if undefined == "exclude"
                      else "and set to 0 as fairlearn does"))
            warnings.warn(msg, UndefinedRateWarning, stacklevel=3)
        if undefined == "zero":
            rates[name][:, bad] = 0.0


def _equalized_odds(rates: dict[str, np.ndarray], method: str, agg: str) -> np.ndarray:
    tpr = _difference(rates["tpr"], rates["tpr_overall"], method)
    fpr = _difference(rates["fpr"], rates["fpr_overall"], method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        both = np.stack([tpr, fpr])
        return np.nanmax(both, axis=0) if agg == "worst_case" else np.nanmean(both, axis=0)


def _prepare(y_true: Any, y_pred: Any, sensitive_features: Any, sample_weight: Any):
    yt = _as_array("y_true", y_true)
    yp = _as_array("y_pred", y_pred)
    if yt.ndim != 1:
        raise ValueError(f"y_true must be 1-D [examples], got shape {yt.shape}")
    if yp.ndim not in (1, 2):
        raise ValueError(f"y_pred must be [examples] or [models, examples], got shape {yp.shape}")
    if yp.shape[-1] != yt.shape[0]:
        raise ValueError(f"y_pred has {yp.shape[-1]} examples, y_true has {yt.shape[0]}")
    groups, _ = encode_groups(sensitive_features, len(yt))
    weights = _check_weights(sample_weight, len(yt))
    return yt, yp, groups, weights


def _binary_rates(y_true, y_pred, sensitive_features, sample_weight, pos_label):
    yt, yp, groups, weights = _prepare(y_true, y_pred, sensitive_features, sample_weight)
    yt01 = _binary_codes("y_true", yt, pos_label)
    yp01 = _binary_codes("y_pred", yp, pos_label)
    single = yp01.ndim == 1
    rates = group_rates(yt01, np.atleast_2d(yp01), groups, int(groups.max()) + 1, 2, weights)
    # keep only class 1 (the positive label), with the class axis, so the multiclass code applies
    rates = {k: (v[1:2] if k in ("positives", "negatives") else v[:, 1:2]) for k, v in rates.items()}
    return rates, single


def demographic_parity_difference(y_true: Any, y_pred: Any, *, sensitive_features: Any,
                                  method: str = "between_groups", sample_weight: Any = None,
                                  pos_label: Any = None) -> float | np.ndarray:
    """fairlearn's DPD: the between-group difference of selection rates P(ŷ=1 | A=a).

    ``y_pred`` ``[examples]`` → float; ``[models, examples]`` → array ``[models]``.
    """
    _check_option("method", method, METHODS)
    rates, single = _binary_rates(y_true, y_pred, sensitive_features, sample_weight, pos_label)
    out = _difference(rates["selection"], rates["selection_overall"], method)[:, 0]
    return float(out[0]) if single else out


def equalized_odds_difference(y_true: Any, y_pred: Any, *, sensitive_features: Any,
                              method: str = "between_groups", agg: str = "worst_case",
                              sample_weight: Any = None, pos_label: Any = None,
                              undefined: str = "exclude") -> float | np.ndarray:
    """fairlearn's EOD: max (``agg="worst_case"``) or mean of the TPR and FPR differences.

    Undefined TPR/FPR (a group without positives/negatives) warn; see the module docstring.
    """
    _check_option("method", method, METHODS)
    _check_option("agg", agg, AGGS)
    _check_option("undefined", undefined, UNDEFINED)
    rates, single = _binary_rates(y_true, y_pred, sensitive_features, sample_weight, pos_label)
    _resolve_undefined(rates, undefined, "y_true")
    out = _equalized_odds(rates, method, agg)[:, 0]
    return float(out[0]) if single else out


def multiclass_fairness(y_true: Any, y_pred: Any, *, sensitive_features: Any, metric: str = "dpd",
                        average: str | None = "macro", method: str = "between_groups", agg: str = "worst_case",
                        sample_weight: Any = None, n_classes: int | None = None,
                        undefined: str = "exclude") -> float | np.ndarray:
    """The paper's Algorithm 1: one-vs-rest DPD or EOD per class, macro-averaged over classes.

    For each class c: ``F_c = metric(y == c, ŷ == c, A)``; returns mean_c F_c
    (``average="macro"``) or the per-class values (``average=None``, shape ``[..., classes]``).
    Integer labels must lie in ``[0, n_classes)``; other labels (e.g. strings) are encoded over
    the union of ``y_true`` and ``y_pred``. Classes whose metric is undefined for every group are
    NaN and left out of the macro average (with a warning).

    The average runs over the classes that occur in ``y_true`` or in the model's own ``y_pred``:
    a class that occurs in neither has F_c = 0 by construction and would only dilute the mean
    (``n_classes=1000`` with 3 classes present would divide by 1000). Such classes are NaN with
    ``average=None``.
    """
    _check_option("metric", metric, ("dpd", "eod"))
    _check_option("average", str(average), ("macro", "None"))
    _check_option("method", method, METHODS)
    _check_option("agg", agg, AGGS)
    _check_option("undefined", undefined, UNDEFINED)
    yt, yp, groups, weights = _prepare(y_true, y_pred, sensitive_features, sample_weight)
    if yt.dtype.kind in "iub" and yp.dtype.kind in "iub":
        hi = int(max(yt.max(), yp.max()))
        if n_classes is None:
            n_classes = hi + 1
        if min(yt.min(), yp.min()) < 0 or hi >= n_classes:
            raise ValueError(f"labels must lie in [0, n_classes={n_classes}); got range "
                             f"[{min(yt.min(), yp.min())}, {hi}]")
    else:
        if yt.dtype.kind != yp.dtype.kind:
            raise ValueError(f"y_true ({yt.dtype}) and y_pred ({yp.dtype}) must both be integer or both strings")
        classes, codes = np.unique(np.concatenate([yt.ravel(), yp.ravel()]), return_inverse=True)
        n_classes = len(classes)
        yt, yp = codes[: len(yt)], codes[len(yt):].reshape(yp.shape)
    single = yp.ndim == 1
    yp2 = np.atleast_2d(yp).astype(np.int64)
    rates = group_rates(yt.astype(np.int64), yp2, groups, int(groups.max()) + 1, int(n_classes), weights)
    out = _algorithm1(rates, _occurs(yt, yp2, int(n_classes)), metric, average, method, agg, undefined)
    return (out[0] if average is None else float(out[0])) if single else out


def _occurs(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Per model, the classes that occur in ``y_true`` or in its own ``y_pred`` ``[models, classes]``."""
    occurs = np.zeros((len(y_pred), n_classes), dtype=bool)
    occurs[:, np.unique(y_true)] = True
    occurs[np.repeat(np.arange(len(y_pred)), y_pred.shape[1]), y_pred.ravel()] = True
    return occurs


def _algorithm1(rates: dict[str, np.ndarray], occurs: np.ndarray, metric: str, average: str | None, method: str,
                agg: str, undefined: str, warn: bool = True) -> np.ndarray:
    """Per-class one-vs-rest DPD or EOD from :func:`group_rates`, macro-averaged over the classes
    that occur (``average="macro"``, ``[models]``) or not (``[models, classes]``)."""
    if metric == "dpd":
        per_class = _difference(rates["selection"], rates["selection_overall"], method)
    else:
        _resolve_undefined(rates, undefined, "one-vs-rest y_true", warn)
        per_class = _equalized_odds(rates, method, agg)
    nan_classes = (np.isnan(per_class) & occurs).any(axis=0)  # undefined where the class does occur
    per_class = np.where(occurs, per_class, np.nan)
    if average is None:
        return per_class
    if nan_classes.any() and warn:
        warnings.warn(f"{int(nan_classes.sum())} class(es) have an undefined {metric.upper()} and are left out "
                      "of the macro average", UndefinedRateWarning, stacklevel=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(per_class, axis=-1)


# ----------------------------------------------------------------------------- accuracy control
@dataclass(frozen=True)
class DisparityReference:
    """A model's DPD or EOD beside its *zero-disparity reference*: the same metric after the
    model's predictions are shuffled within each true class across groups. The shuffle keeps
    every class's predictions (so accuracy, the confusion matrix and each class's error rate)
    and removes any dependence on the group, so the reference is the disparity that finite
    groups and the model's error rate produce on their own. Arrays are per model; ``low`` and
    ``high`` are the central ``confidence`` interval of the draws, ``excess`` = observed − mean."""

    metric: str
    observed: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    draws: int
    confidence: float

    @property
    def excess(self) -> np.ndarray:
        return self.observed - self.mean


def shuffled_counts(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, n_classes: int, n_groups: int,
                    draws: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Counts ``selected`` and ``tp`` ``[draws, models, classes, groups]`` of ``draws`` random
    shuffles of each model's predictions within each true class across groups.

    A shuffle of the class-c examples pairs their predictions with their groups at random: the
    counts per (prediction, group) form a random table with fixed margins (how often the model
    predicts each class on class c; how many class-c examples each group has), drawn here group by
    group and prediction by prediction from hypergeometric distributions — exactly the
    distribution of a random permutation, for all draws and models at once, at a cost that does
    not grow with the number of examples (it grows with classes² × groups)."""
    m, c, k = len(y_pred), n_classes, n_groups
    per_class_pred = np.bincount(((np.arange(m)[:, None] * c + y_true[None]) * c + y_pred).ravel(),
                                 minlength=m * c * c).reshape(m, c, c)        # [model, true class, prediction]
    group_sizes = np.bincount(y_true * k + groups, minlength=c * k).reshape(c, k)  # [true class, group]
    remaining = np.array(np.broadcast_to(per_class_pred, (draws, m, c, c)))   # not yet given a group
    selected = np.zeros((draws, m, c, k))
    tp = np.zeros((draws, m, c, k))
    diagonal = np.arange(c)
    for g in range(k):
        if g == k - 1:  # the last group takes what is left
            x_all = remaining
        else:
            need = np.array(np.broadcast_to(group_sizes[:, g], (draws, m, c)))
            beyond = np.cumsum(remaining[..., ::-1], axis=-1)[..., ::-1]  # predictions ≥ p still unassigned
            x_all = np.zeros_like(remaining)
            for p in range(c):
                if p == c - 1:
                    x = need
                else:
                    x = rng.hypergeometric(remaining[..., p], beyond[..., p + 1], need)
                    need = need - x
                x_all[..., p] = x
            remaining = remaining - x_all
        selected[..., g] = x_all.sum(axis=2)
        tp[..., g] = x_all[:, :, diagonal, diagonal]
    return selected, tp


def zero_disparity_reference(y_true: Any, y_pred: Any, *, sensitive_features: Any, metrics: Sequence[str] = ("dpd", "eod"),
                             draws: int = 200, seed: int = 0, confidence: float = 0.95, n_classes: int | None = None,
                             method: str = "between_groups", agg: str = "worst_case",
                             undefined: str = "exclude") -> dict[str, DisparityReference]:
    """Observed Algorithm-1 DPD/EOD (:func:`multiclass_fairness`) of each model beside its
    zero-disparity reference (:class:`DisparityReference`) from ``draws`` seeded shuffles of its
    predictions within each true class (:func:`shuffled_counts`; unweighted).

    No fairness library offers this: fairlearn's metrics are raw differences, which grow as
    accuracy falls even when errors do not depend on the group at all. Judge a fairness effect
    on the excess over the reference, and keep the raw value in view.
    """
    from .validation import check_int, check_significance

    check_int(draws, "draws", minimum=2)
    check_significance(confidence, "confidence")
    for m in metrics:
        _check_option("metrics", m, ("dpd", "eod"))
    observed = {m: np.atleast_1d(multiclass_fairness(y_true, y_pred, sensitive_features=sensitive_features, metric=m,
                                                     n_classes=n_classes, method=method, agg=agg, undefined=undefined))
                for m in metrics}
    yt, yp, groups, weights = _prepare(y_true, y_pred, sensitive_features, None)
    if yt.dtype.kind not in "iub" or yp.dtype.kind not in "iub":
        raise ValueError("zero_disparity_reference needs integer class labels")
    c = int(max(yt.max(), yp.max()) + 1) if n_classes is None else int(n_classes)
    yp2 = np.atleast_2d(yp).astype(np.int64)
    yt = yt.astype(np.int64)
    m_models, k = len(yp2), int(groups.max()) + 1
    occurs = np.tile(_occurs(yt, yp2, c), (draws, 1))  # a shuffle keeps each model's predicted classes
    selected, tp = shuffled_counts(yt, yp2, groups, c, k, draws, np.random.default_rng(seed))
    positives = np.bincount(yt * k + groups, minlength=c * k).reshape(c, k).astype(np.float64)  # a shuffle keeps them
    group_total = positives.sum(0)
    rates = rates_from_counts(selected.reshape(-1, c, k), tp.reshape(-1, c, k), group_total, positives)
    tail = 100 * (1 - confidence) / 2
    out = {}
    for m in metrics:
        v = _algorithm1(dict(rates), occurs, m, "macro", method, agg, undefined, warn=False).reshape(draws, m_models)
        out[m] = DisparityReference(m, observed[m], v.mean(0), np.percentile(v, tail, axis=0),
                                    np.percentile(v, 100 - tail, axis=0), draws, confidence)
    return out


def summaries(table: Any, attributes: Sequence[str], *, experiment: str = "main") -> list[MetricSummary]:
    """DPD and EOD of every population for each protected attribute, from a per-model table
    (:meth:`~kdfair_utils.grid.GridResult.table`), with their zero-disparity reference and excess
    where the table has them: the records notebook 04 writes."""
    from .results import REFERENCE_PARTS, metric_column

    out = []
    for a in attributes:
        for metric in ("dpd", "eod"):
            names = [metric] + [f"{metric}_{part}" for part in REFERENCE_PARTS]
            out += [summarize(table, m, a, experiment=experiment) for m in names if metric_column(m, a) in table]
    return out
