"""Multi-model Algorithm 1 (DPD and EOD) vs the equivalent loop over fairlearn calls.

Prints both timings, the speed ratio measured in this run, and the largest difference of values.
Usage: python benchmarks/bench_metrics.py [--models 50 --examples 10000 --classes 10 --groups 10]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def fairlearn_loop(y, preds, groups, classes):
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    dpd = np.empty(len(preds))
    eod = np.empty(len(preds))
    for m, p in enumerate(preds):
        dpd[m] = np.mean([demographic_parity_difference(y == c, p == c, sensitive_features=groups) for c in classes])
        eod[m] = np.mean([equalized_odds_difference(y == c, p == c, sensitive_features=groups) for c in classes])
    return dpd, eod


def main() -> None:
    from kdfair_utils.group_fairness import multiclass_fairness

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", type=int, default=50)
    ap.add_argument("--examples", type=int, default=10_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    y = rng.integers(0, a.classes, a.examples)
    preds = np.where(rng.random((a.models, a.examples)) < 0.8, y, rng.integers(0, a.classes, (a.models, a.examples)))
    groups = rng.integers(0, a.groups, a.examples)

    def ours():
        return (multiclass_fairness(y, preds, sensitive_features=groups, metric="dpd"),
                multiclass_fairness(y, preds, sensitive_features=groups, metric="eod"))

    ours()  # warm-up
    t0 = time.perf_counter()
    for _ in range(a.repeats):
        dpd, eod = ours()
    t_ours = (time.perf_counter() - t0) / a.repeats
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        ref_dpd, ref_eod = fairlearn_loop(y, preds, groups, range(a.classes))
        t_ref = time.perf_counter() - t0
    diff = max(np.abs(dpd - ref_dpd).max(), np.abs(eod - ref_eod).max())
    print(f"Algorithm 1, {a.models} models x {a.examples} examples x {a.classes} classes x {a.groups} groups (DPD + EOD)")
    print(f"  kdfair (vectorised): {t_ours * 1e3:9.1f} ms  (mean of {a.repeats})")
    print(f"  fairlearn loop     : {t_ref * 1e3:9.1f} ms  ({2 * a.models * a.classes} calls)")
    print(f"  speed-up           : {t_ref / t_ours:9.0f}x")
    print(f"  max |difference|   : {diff:.2e}")


if __name__ == "__main__":
    main()
