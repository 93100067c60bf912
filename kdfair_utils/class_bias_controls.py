"""Accuracy-controlled class bias: what the paper's per-class Welch counts (#SC, #TC) mean
when the populations differ in accuracy.

The paper's test (kept exactly in :mod:`kdfair_utils.class_bias`) compares ``acc_c / acc``
between populations. A student that is simply more accurate — every class's errors shrink by the
same factor, nothing class-specific — also changes ``acc_c / acc``: classes near the ceiling
move less than the rest, so a uniform improvement shows up as "significant classes". This module
measures that:

* :func:`accuracy_matched` — the **accuracy-only null**: each NDS model's per-class errors scaled
  by one factor so that its accuracy equals the paired (same seed) distilled student's,
  ``err'_c = err_c · err_DS / err_NDS``. No class-specific effect by construction.
* #SC expected from accuracy alone (NDS vs its accuracy-matched copies), and the classes where
  the DS differs from the accuracy-matched NDS (the class-specific part), with its seed-permutation
  chance level (the observed split and its mirror excluded from the expectation).
* ``ceiling`` classes — at least :data:`CEILING` in every model of both populations, where the
  ratio normalisation is least informative — are flagged among the significant ones.
* Trends of #SC/#TC over T: :func:`~kdfair_utils.inference.count_trend_test` (the DS models are
  permuted over T within each seed).

All of it works on :class:`~kdfair_utils.results.ClassAccuracies` (what notebook 03 records), so
the report, the notebook and the tests use the same numbers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .class_bias import (NullCalibration, relabelling_masks, class_bias_from_accuracy, normalized_class_accuracy,
                         per_class_accuracy)
from .inference import TrendTest, count_trend_test
from .results import ClassAccuracies, Population, PopulationClassAccuracy, SignificantCounts
from .stats import welch_significant

if TYPE_CHECKING:
    from .grid import GridResult

CEILING = 0.95


def class_accuracies(result: GridResult, *, experiment: str, split: str = "test") -> ClassAccuracies:
    """The record of every model's per-class accuracy on ``split`` (notebook 03 writes it)."""
    data = result.dataset
    y = data.eval_splits()[split].labels
    c = data.num_classes
    pops = []
    for pop in result.populations():
        acc, overall = per_class_accuracy(y, result.predictions(pop, split), c)
        pops.append(PopulationClassAccuracy(pop, tuple(s.seed for s in result.models(pop)),
                                            tuple(float(v) for v in overall),
                                            tuple(tuple(float(v) for v in row) for row in acc)))
    return ClassAccuracies(experiment, result.config.label, tuple(data.class_names),
                           tuple(int(n) for n in np.bincount(y, minlength=c)), tuple(pops))


def accuracy_matched(acc: np.ndarray, overall: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The accuracy-only null: per-class accuracies ``[models, classes]`` whose errors are scaled
    by ``(1 − target) / (1 − overall)`` per model, so each model's accuracy becomes ``target``
    (on a class-balanced test set; in general the support-weighted mean). A model without errors
    stays as it is."""
    acc, overall, target = (np.asarray(a, dtype=float) for a in (acc, overall, target))
    if acc.shape[0] != len(overall) or len(overall) != len(target):
        raise ValueError(f"{acc.shape[0]} models of class accuracies, {len(overall)} accuracies, {len(target)} targets")
    err = 1 - overall
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(err > 0, (1 - target) / err, 1.0)
    matched = 1 - (1 - acc) * factor[:, None]
    if np.any(matched < -1e-12):
        raise ValueError("a target accuracy below what scaling the errors can reach (a class would go below 0)")
    return np.clip(matched, 0.0, 1.0), np.where(err > 0, target, overall)


def ceiling_classes(*accs: np.ndarray, threshold: float = CEILING) -> np.ndarray:
    """Classes at or above ``threshold`` in every model of every population ``[classes]``."""
    return np.all(np.concatenate([np.asarray(a) for a in accs]) >= threshold, axis=0)


def raw_counts(xa: np.ndarray, xb: np.ndarray, significance: float) -> np.ndarray:
    """The paper's raw count (classes with Welch p < significance) of normalised accuracies
    ``[..., models, classes]`` — batched over leading axes (permutations); undefined tests do not
    count."""
    return np.sum(welch_significant(xa, xb, significance), axis=-1)


def _models(p: PopulationClassAccuracy, idx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(per-class, overall) accuracies of the population's models, or of the models ``idx`` (a
    bootstrap resample)."""
    acc, ov = p.arrays()
    return (acc, ov) if idx is None else (acc[idx], ov[idx])


def _paired(record: ClassAccuracies, a: Population, b: Population) -> tuple[PopulationClassAccuracy, PopulationClassAccuracy]:
    pa, pb = record.of(a), record.of(b)
    if pa.seeds != pb.seeds:
        raise ValueError(f"{a} and {b} have different seeds ({pa.seeds} vs {pb.seeds}); they cannot be paired")
    return pa, pb


@dataclass(frozen=True)
class CountsAtT:
    """One temperature of the class-bias table (ratio normalisation unless stated)."""

    temperature: float
    ds_accuracy: float          # % (mean over models)
    sc: int                     # the paper's #SC: NDS vs DS, raw p < significance
    sc_bh: int
    sc_difference: int          # #SC with the difference normalisation
    sc_ceiling: int             # of the #SC classes, those at the ceiling in every model
    sc_accuracy_only: int       # #SC of NDS vs its accuracy-matched copies (no class-specific effect)
    sc_beyond_accuracy: int     # classes where DS differs from the accuracy-matched NDS
    tc: int                     # the paper's #TC: teacher vs DS, raw
    tc_bh: int


@dataclass(frozen=True)
class ChanceTest:
    """A count against its seed-permutation null (mirror-excluded chance level)."""

    observed: int
    chance: float
    p_value: float
    min_p_value: float
    n_splits: int


@dataclass(frozen=True)
class ClassBiasInference:
    """Everything the report says about class bias for one experiment."""

    experiment: str
    n_classes: int
    significance: float
    rows: tuple[CountsAtT, ...]
    sc_trend: TrendTest | None
    tc_trend: TrendTest | None
    beyond_trend: TrendTest | None
    window: tuple[float, ...]
    chance: ChanceTest | None
    beyond_accuracy: ChanceTest | None


def chance_test(record: ClassAccuracies, t: float, count: str = "sc", *, significance: float = 0.05,
                max_splits: int = 500, seed: int = 0, students: np.ndarray | None = None) -> ChanceTest:
    """The raw count of NDS vs DS@``t`` (``count="sc"``) or of the accuracy-matched NDS vs DS@t
    (``"beyond_accuracy"``) against the seed-permutation null of
    :func:`~kdfair_utils.class_bias.null_from_accuracy` (same splits, same p-value and
    mirror-excluded chance level), batched over the splits (ratio normalisation)."""
    if count not in ("sc", "beyond_accuracy"):
        raise ValueError(f"count must be 'sc' or 'beyond_accuracy', got {count!r}")
    nds, ds = _paired(record, Population.nds(), Population.ds(t))
    (a_n, o_n), (a_d, o_d) = _models(nds, students), _models(ds, students)
    if count == "beyond_accuracy":
        a_n, o_n = accuracy_matched(a_n, o_n, o_d)
    pool = normalized_class_accuracy(np.concatenate([a_n, a_d]), np.concatenate([o_n, o_d]), "ratio")
    n, n_a = len(pool), len(a_n)
    masks, exhaustive, is_observed = relabelling_masks(n, n_a, max_splits, seed)
    order = np.argsort(~masks, axis=1, kind="stable")  # each split's side-a models first
    xa, xb = pool[order[:, :n_a]], pool[order[:, n_a:]]
    null = raw_counts(xa, xb, significance)
    observed = int(raw_counts(pool[None, :n_a], pool[None, n_a:], significance)[0])
    calibration = NullCalibration(SignificantCounts(observed, 0, 0, pool.shape[1]), {"raw": null}, exhaustive,
                                  equal_sizes=2 * n_a == n, is_observed=is_observed)
    return ChanceTest(observed, calibration.expected("raw"), calibration.p_value("raw"), calibration.min_p_value,
                      calibration.n_splits)


def counts_at(record: ClassAccuracies, t: float, significance: float) -> CountsAtT:
    """:class:`CountsAtT` of DS@``t``."""
    nds, ds = _paired(record, Population.nds(), Population.ds(t))
    (a_n, o_n), (a_d, o_d) = nds.arrays(), ds.arrays()
    a_t, o_t = record.of(Population.teacher()).arrays()
    a_m, o_m = accuracy_matched(a_n, o_n, o_d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc = class_bias_from_accuracy(a_n, o_n, a_d, o_d, significance=significance)
        diff = class_bias_from_accuracy(a_n, o_n, a_d, o_d, significance=significance, normalization="difference")
        only = class_bias_from_accuracy(a_n, o_n, a_m, o_m, significance=significance)
        beyond = class_bias_from_accuracy(a_m, o_m, a_d, o_d, significance=significance)
        tc = class_bias_from_accuracy(a_t, o_t, a_d, o_d, significance=significance)
    ceiling = ceiling_classes(a_n, a_d)
    return CountsAtT(float(t), 100 * float(o_d.mean()), sc.counts.raw, sc.counts.bh, diff.counts.raw,
                     int(np.sum(sc.table["significant"].to_numpy() & ceiling)), only.counts.raw,
                     beyond.counts.raw, tc.counts.raw, tc.counts.bh)


COUNTS = ("sc", "tc", "beyond_accuracy")


def count_trend(record: ClassAccuracies, temperatures: list[float], count: str = "sc", *,
                significance: float = 0.05, n_perm: int = 1000, seed: int = 0,
                students: np.ndarray | None = None, teachers: np.ndarray | None = None) -> tuple[np.ndarray, TrendTest]:
    """Raw counts per T over ``temperatures`` — #SC (``count="sc"``: NDS vs DS), #TC (``"tc"``:
    teacher vs DS) or the classes where the DS differs from its accuracy-matched NDS
    (``"beyond_accuracy"``: each DS model matched with the NDS of its seed) — and their trend
    test: each seed's DS models are permuted over T (a matched NDS moves with its DS model).
    Ratio normalisation; ``students`` / ``teachers`` pick models (bootstrap)."""
    if count not in COUNTS:
        raise ValueError(f"count must be one of {COUNTS}, got {count!r}")
    nds = record.of(Population.nds())
    for t in temperatures:
        if record.of(Population.ds(t)).seeds != nds.seeds:
            raise ValueError(f"DS@T={t:g} has seeds {record.of(Population.ds(t)).seeds}, the NDS {nds.seeds}: "
                             "the within-seed permutation needs the same seeds in the same order")
    ds_raw = [_models(record.of(Population.ds(t)), students) for t in temperatures]
    ds = np.stack([normalized_class_accuracy(a, o, "ratio") for a, o in ds_raw])  # [T, S, C]
    n_seeds = ds.shape[1]
    if count == "beyond_accuracy":
        a_n, o_n = _models(nds, students)
        ref = np.stack([normalized_class_accuracy(*accuracy_matched(a_n, o_n, o), "ratio") for _, o in ds_raw])
    else:
        p = record.of(Population.teacher()) if count == "tc" else nds
        ref = normalized_class_accuracy(*_models(p, teachers if count == "tc" else students), "ratio")

    def counts_of(orders: np.ndarray) -> np.ndarray:
        # orders[p, s, j]: which temperature's model of seed s plays temperature j
        pick = (orders.transpose(0, 2, 1), np.arange(n_seeds)[None, None, :])
        reference = ref[pick] if count == "beyond_accuracy" else ref[None, None]
        return raw_counts(reference, ds[pick], significance)  # [P, T]

    return count_trend_test(counts_of, n_seeds, temperatures, n_perm=n_perm, seed=seed)


def class_bias_inference(record: ClassAccuracies, *, window: tuple[float, float], significance: float = 0.05,
                         n_perm: int = 1000, max_splits: int = 500, seed: int = 0) -> ClassBiasInference:
    """The class-bias table over every recorded T, the #SC/#TC trends over ``window``, the
    chance level of #SC and of the beyond-accuracy count at the highest T of the window."""
    temps_all = record.temperatures()
    window_t = record.temperatures(window)
    rows = tuple(counts_at(record, t, significance) for t in temps_all)
    sc_trend = tc_trend = beyond_trend = chance = beyond = None
    if len(window_t) >= 2:
        opts = {"significance": significance, "n_perm": n_perm, "seed": seed}
        sc_trend, tc_trend, beyond_trend = (count_trend(record, window_t, c, **opts)[1] for c in COUNTS)
    if window_t:
        top = window_t[-1]
        if len(record.of(Population.nds()).seeds) >= 2:
            opts = {"significance": significance, "max_splits": max_splits, "seed": seed}
            chance = chance_test(record, top, "sc", **opts)
            beyond = chance_test(record, top, "beyond_accuracy", **opts)
    return ClassBiasInference(record.experiment, len(record.class_names), significance, rows, sc_trend, tc_trend,
                              beyond_trend, tuple(window_t), chance, beyond)


def frame(inference: ClassBiasInference):
    """The class-bias table as pandas, one row per T."""
    import pandas as pd

    return pd.DataFrame([vars(r) for r in inference.rows]).set_index("temperature")

