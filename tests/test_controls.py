"""Accuracy controls: the zero-disparity reference of DPD/EOD and the accuracy-only null of
class bias, on constructed cases where the truth is known."""

import itertools
import warnings

import numpy as np
import pytest

from kdfair_utils import class_bias as cb
from kdfair_utils import class_bias_controls as cc
from kdfair_utils import group_fairness as gf
from kdfair_utils.results import ClassAccuracies, Population, PopulationClassAccuracy


def _stratified(n_per_cell=200, classes=4, groups=3):
    y = np.repeat(np.arange(classes), groups * n_per_cell)
    g = np.tile(np.repeat(np.arange(groups), n_per_cell), classes)
    return y, g


def _predict(y, accuracy_of_example, rng, classes):
    correct = rng.random(len(y)) < accuracy_of_example
    wrong = (y + rng.integers(1, classes, len(y))) % classes
    return np.where(correct, y, wrong)


def test_shuffled_counts_keep_both_margins_and_match_random_permutations():
    y, g = _stratified(40, classes=3, groups=2)
    rng = np.random.default_rng(1)
    preds = np.stack([_predict(y, 0.7, rng, 3) for _ in range(2)])
    selected, tp = gf.shuffled_counts(y, preds, g, 3, 2, 4000, np.random.default_rng(0))
    # margins: each model's predictions per class and the group sizes are kept in every draw
    for m in range(2):
        np.testing.assert_array_equal(selected[:, m].sum(-1), np.broadcast_to(np.bincount(preds[m], minlength=3), (4000, 3)))
        np.testing.assert_array_equal(tp[:, m].sum(-1), np.broadcast_to(np.bincount(y[preds[m] == y], minlength=3),
                                                                       (4000, 3)))
    np.testing.assert_array_equal(selected.sum(2), np.broadcast_to(np.bincount(g), (4000, 2, 2)))
    # the distribution equals that of explicit permutations within each class (means within 4 SE)
    perm_rng = np.random.default_rng(2)
    explicit = []
    for _ in range(4000):
        shuffled = preds.copy()
        for c in range(3):
            idx = np.flatnonzero(y == c)
            shuffled[:, idx] = preds[:, perm_rng.permutation(idx)]
        explicit.append([np.sum((shuffled[m] == 0) & (g == 0)) for m in range(2)])
    explicit = np.array(explicit, dtype=float)
    ours = selected[:, :, 0, 0]
    se = np.sqrt(explicit.var(0) / 4000 + ours.var(0) / 4000)
    assert np.all(np.abs(ours.mean(0) - explicit.mean(0)) < 4 * se)
    assert np.allclose(ours.var(0), explicit.var(0), rtol=0.15)


def test_reference_of_a_perfect_or_class_constant_predictor_is_its_observed_value():
    y, g = _stratified(30)
    for preds in (y[None], ((y + 1) % 4)[None]):  # a shuffle within class changes nothing
        ref = gf.zero_disparity_reference(y, preds, sensitive_features=g, draws=5, seed=0)
        for m in ("dpd", "eod"):
            np.testing.assert_allclose(ref[m].mean, ref[m].observed, rtol=0, atol=1e-12)


def test_reference_no_group_effect_has_no_excess_and_a_planted_disparity_is_detected():
    y, g = _stratified(200)
    rng = np.random.default_rng(2)
    fair = np.stack([_predict(y, 0.85, rng, 4) for _ in range(8)])  # errors independent of the group
    unfair = np.stack([_predict(y, np.where(g == 2, 0.70, 0.90), rng, 4) for _ in range(8)])
    r_fair = gf.zero_disparity_reference(y, fair, sensitive_features=g, draws=200, seed=0)["eod"]
    r_unfair = gf.zero_disparity_reference(y, unfair, sensitive_features=g, draws=200, seed=0)["eod"]
    # a fair predictor's raw EOD is not 0 (finite groups), but its excess is
    assert r_fair.observed.mean() > 0.03
    assert abs(r_fair.excess.mean()) < 0.01
    assert np.mean((r_fair.observed >= r_fair.low) & (r_fair.observed <= r_fair.high)) >= 0.75
    # the planted 20-point TPR gap: observed far above the reference interval
    assert np.all(r_unfair.observed > r_unfair.high)
    assert r_unfair.excess.mean() > 0.12


def test_reference_validates_its_arguments():
    y, g = _stratified(5)
    with pytest.raises(ValueError, match="draws"):
        gf.zero_disparity_reference(y, y, sensitive_features=g, draws=1)
    with pytest.raises(ValueError, match="metrics"):
        gf.zero_disparity_reference(y, y, sensitive_features=g, metrics=("tpr",))


# ----------------------------------------------------------------------------- class bias
def test_accuracy_matched_scales_errors_uniformly_to_the_target():
    rng = np.random.default_rng(0)
    acc = rng.uniform(0.6, 1.0, (4, 10))
    overall = acc.mean(1)  # class-balanced
    target = overall + 0.05
    matched, new_overall = cc.accuracy_matched(acc, overall, target)
    np.testing.assert_allclose(matched.mean(1), target, rtol=0, atol=1e-12)
    np.testing.assert_allclose(new_overall, target)
    ratio = (1 - matched) / (1 - acc)
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1], ratio.shape), rtol=1e-12)


def test_a_uniform_improvement_makes_ratio_significant_classes_and_the_null_predicts_them():
    """The audit's point: no class-specific effect, yet the paper's count is large — and the
    accuracy-only null gives about the same count, while 'beyond accuracy' stays near chance."""
    rng = np.random.default_rng(4)
    base = rng.uniform(0.55, 1.0, 100)
    nds = np.clip(base + rng.normal(0, 0.01, (5, 100)), 0, 1)
    nds_ov = nds.mean(1)
    ds_target = nds_ov + 0.08
    ds, ds_ov = cc.accuracy_matched(nds, nds_ov, ds_target)
    ds = np.clip(ds + rng.normal(0, 0.01, (5, 100)), 0, 1)
    ds_ov = ds.mean(1)
    record = ClassAccuracies("x", "t", tuple(f"c{i}" for i in range(100)), (200,) * 100, (
        PopulationClassAccuracy(Population.teacher(), (0, 1), (1.0, 1.0), (tuple([1.0] * 100), tuple([1.0] * 100))),
        PopulationClassAccuracy(Population.nds(), tuple(range(5)), tuple(nds_ov), tuple(map(tuple, nds))),
        PopulationClassAccuracy(Population.ds(4.0), tuple(range(5)), tuple(ds_ov), tuple(map(tuple, ds)))))
    row = cc.counts_at(record, 4.0, 0.05)
    assert row.sc > 20
    assert abs(row.sc_accuracy_only - row.sc) <= 0.35 * row.sc
    assert row.sc_beyond_accuracy < 15


def _record(rng, temps, seeds=2, classes=6):
    pops = [PopulationClassAccuracy(Population.teacher(), (0, 1), (0.99, 0.98),
                                    tuple(tuple(rng.uniform(0.95, 1, classes)) for _ in range(2)))]
    for pop in [Population.nds()] + [Population.ds(t) for t in temps]:
        acc = rng.uniform(0.5, 1.0, (seeds, classes))
        pops.append(PopulationClassAccuracy(pop, tuple(range(seeds)), tuple(acc.mean(1)), tuple(map(tuple, acc))))
    return ClassAccuracies("x", "t", tuple(f"c{i}" for i in range(classes)), (10,) * classes, tuple(pops))


@pytest.mark.parametrize("kind", ["sc", "beyond_accuracy"])
def test_count_trend_exhaustive_equals_brute_force_over_orderings(kind):
    rng = np.random.default_rng(5)
    temps = [2.0, 4.0, 8.0]
    record = _record(rng, temps, seeds=3, classes=8)
    counts, test = cc.count_trend(record, temps, kind, significance=0.2, n_perm=10_000)
    assert test.exhaustive and test.n_orderings == 6**3
    nds = record.of(Population.nds()).arrays()
    ds = [record.of(Population.ds(t)).arrays() for t in temps]
    tc = np.array(temps) - np.mean(temps)

    def count(acc_b, ov_b):
        # the reference: the NDS, or each NDS model matched to the accuracy of the DS model it meets
        ref = nds if kind == "sc" else cc.accuracy_matched(*nds, ov_b)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cb.class_bias_from_accuracy(*ref, acc_b, ov_b, significance=0.2).counts.raw

    null = []
    for perms in itertools.product(itertools.permutations(range(3)), repeat=3):
        c = [count(np.stack([ds[perms[s][j]][0][s] for s in range(3)]),
                   np.array([ds[perms[s][j]][1][s] for s in range(3)])) for j in range(3)]
        null.append(float(np.dot(c, tc) / (tc @ tc)))
    observed = [count(*d) for d in ds]
    np.testing.assert_array_equal(counts, observed)
    slope = float(np.dot(observed, tc) / (tc @ tc))
    assert test.p_increase == pytest.approx(np.mean(np.array(null) >= slope - 1e-12))


def test_chance_test_equals_null_from_accuracy():
    rng = np.random.default_rng(8)
    record = _record(rng, [4.0], seeds=4, classes=12)
    for kind in ("sc", "beyond_accuracy"):
        ours = cc.chance_test(record, 4.0, kind, significance=0.2)
        nds, ds = record.of(Population.nds()).arrays(), record.of(Population.ds(4.0)).arrays()
        ref = nds if kind == "sc" else cc.accuracy_matched(*nds, ds[1])
        null = cb.null_from_accuracy(*ref, *ds, significance=0.2)
        assert (ours.observed, ours.n_splits) == (null.observed.raw, null.n_splits)
        assert ours.chance == pytest.approx(null.expected("raw"), rel=1e-12)
        assert ours.p_value == pytest.approx(null.p_value("raw"), rel=1e-12)


def test_count_trend_refuses_misaligned_seeds():
    rng = np.random.default_rng(9)
    record = _record(rng, [2.0, 4.0], seeds=3)
    pops = list(record.populations)
    last = pops[-1]
    pops[-1] = PopulationClassAccuracy(last.population, (2, 1, 0), last.overall, last.per_class)
    bad = ClassAccuracies(record.experiment, record.task, record.class_names, record.test_per_class, tuple(pops))
    with pytest.raises(ValueError, match="same seeds in the same order"):
        cc.count_trend(bad, [2.0, 4.0], "sc")


def test_chance_level_excludes_the_observed_split_and_its_mirror():
    rng = np.random.default_rng(6)
    a = rng.uniform(0.6, 1.0, (3, 30))
    b = np.clip(a + 0.1 * (np.arange(30) % 2), 0, 1)
    null = cb.null_from_accuracy(a, a.mean(1), b, b.mean(1), significance=0.05)
    assert null.exhaustive and null.n_splits == 20 and null.is_observed.sum() == 2
    pool, ov = np.concatenate([a, b]), np.concatenate([a.mean(1), b.mean(1)])
    others = []
    for idx in itertools.combinations(range(6), 3):
        if idx in ((0, 1, 2), (3, 4, 5)):
            continue
        mask = np.isin(np.arange(6), idx)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            others.append(cb.class_bias_from_accuracy(pool[mask], ov[mask], pool[~mask], ov[~mask]).counts.raw)
    assert null.expected("raw") == pytest.approx(np.mean(others), rel=1e-12)
    assert null.observed.raw > max(others)
    assert null.p_value("raw") == pytest.approx(2 / 20)
