
import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from kdfair_utils import class_bias as cb


def population(rng, n_models, y, acc, noise=0.0):
    """Predictions whose per-class accuracy is ``acc[c]`` (+ per-model noise)."""
    c = len(acc)
    preds = []
    for _ in range(n_models):
        a = np.clip(acc + rng.normal(0, noise, c), 0, 1)
        right = rng.random(len(y)) < a[y]
        preds.append(np.where(right, y, (y + rng.integers(1, c, len(y))) % c))
    return np.array(preds)


def test_per_class_accuracy_by_hand():
    y = np.array([0, 0, 1, 1, 1, 2])
    p = np.array([[0, 1, 1, 1, 0, 2], [0, 0, 0, 0, 0, 0]])
    acc, overall = cb.per_class_accuracy(y, p, 4)
    assert np.allclose(acc[:, :3], [[0.5, 2 / 3, 1.0], [1.0, 0.0, 0.0]])
    assert np.isnan(acc[:, 3]).all()
    assert np.allclose(overall, [4 / 6, 2 / 6])


def test_class_bias_test_equals_scipy_on_normalised_accuracy():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(10), 50)
    pa = population(rng, 5, y, np.full(10, 0.8), 0.05)
    pb = population(rng, 5, y, np.linspace(0.6, 0.95, 10), 0.05)
    res = cb.class_bias_test(y, pa, pb)
    acc_a, ov_a = cb.per_class_accuracy(y, pa)
    acc_b, ov_b = cb.per_class_accuracy(y, pb)
    ref = sps.ttest_ind(acc_a / ov_a[:, None], acc_b / ov_b[:, None], axis=0, equal_var=False)
    assert np.allclose(res.table["p"], ref.pvalue, rtol=1e-10)
    assert res.counts.raw == int(np.sum(ref.pvalue < 0.05))
    assert res.counts.bh == int(np.sum(sps.false_discovery_control(ref.pvalue) < 0.05))
    assert res.counts.holm == int(multipletests(ref.pvalue, method="holm")[0].sum())
    diff = cb.class_bias_test(y, pa, pb, normalization="difference")
    ref_d = sps.ttest_ind(acc_a - ov_a.mean(), acc_b - ov_b.mean(), axis=0, equal_var=False)
    assert np.allclose(diff.table["p"], ref_d.pvalue, rtol=1e-10)


def errors_population(errors):
    """Predictions [models, 40] for 4 classes x 10 examples; ``errors[m][c]`` wrong per class."""
    y = np.repeat(np.arange(4), 10)
    preds = np.tile(y, (len(errors), 1))
    for m, row in enumerate(errors):
        for c, k in enumerate(row):
            idx = np.flatnonzero(y == c)[:k]
            preds[m, idx] = (c + 1) % 4
    return y, preds


@pytest.mark.filterwarnings("ignore:Precision loss")
@pytest.mark.parametrize("normalization", ["ratio", "difference"])
def test_degenerate_classes_are_explicit(normalization):
    # every model makes 6 errors, so normalised values are constant exactly where class accuracy is:
    # class 0 perfect everywhere (identical constants), class 3 constant but different (2 vs 5 errors)
    y, pa = errors_population([[0, 1, 3, 2], [0, 2, 2, 2], [0, 3, 1, 2]])
    _, pb = errors_population([[0, 1, 0, 5], [0, 0, 1, 5], [0, 1, 0, 5]])
    res = cb.class_bias_test(y, pa, pb, normalization=normalization)
    assert list(res.table["status"]) == ["identical_constant", "ok", "ok", "constant_different"]
    assert res.table["p"][0] == 1.0 and res.table["t"][0] == 0.0
    assert np.isnan(res.table["p"][3]) and np.isinf(res.table["t"][3])
    assert not res.table["p_bh"][:3].isna().any()  # the NaN did not poison the correction
    assert np.allclose(res.table["p_bh"][:3], sps.false_discovery_control(res.table["p"][:3]))
    assert res.counts.tested == 3 and res.degenerate["constant_different"] == 1
    ref = sps.ttest_ind(*(cb.normalized_class_accuracy(*cb.per_class_accuracy(y, p), normalization) for p in (pa, pb)),
                        axis=0, equal_var=False)
    assert np.allclose(res.table["p"][1:3], ref.pvalue[1:3], rtol=1e-10)
    assert ref.pvalue[3] < 1e-10  # scipy: spuriously "highly significant" (0, or ~1e-32 from float noise)


def test_perfect_teacher_population():
    """The paper's Trifeature teacher is 100 % accurate in every seed: zero variance on one side."""
    y, teachers = errors_population([[0, 0, 0, 0]] * 3)
    _, students = errors_population([[1, 2, 0, 3], [2, 2, 1, 0], [0, 3, 1, 1]])
    res = cb.class_bias_test(y, teachers, students)
    assert res.counts.tested == 4 and (res.table["status"] == "ok").all()
    same = cb.class_bias_test(y, teachers, teachers)
    assert (same.table["status"] == "identical_constant").all() and same.counts.raw == 0


def test_population_size_checks():
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="at least 2 models"):
        cb.class_bias_test(y, y[None], np.stack([y, y]))
    with pytest.warns(UserWarning, match="very little power"):
        cb.class_bias_test(y, np.stack([y, [0, 1, 1, 1]]), np.stack([y, y, [1, 1, 0, 1]]))
    with pytest.raises(ValueError, match="overall accuracy 0"), pytest.warns(UserWarning, match="little power"):
        cb.class_bias_test(y, np.stack([y, 1 - y]), np.stack([y, y]))
    with pytest.raises(ValueError, match="preds_b has 3 examples"):
        cb.class_bias_test(y, np.stack([y, y]), np.zeros((2, 3), int))


def test_null_calibration_near_zero_after_bh():
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(100), 30)
    acc = rng.uniform(0.5, 0.95, 100)
    pa, pb = population(rng, 5, y, acc, 0.03), population(rng, 5, y, acc, 0.03)
    null = cb.null_calibration(y, pa, pb)
    assert null.exhaustive and len(null.null_counts["raw"]) == 252
    assert null.expected("bh") < 1.0
    assert 1.0 < null.expected("raw") < 12.0  # ~5 % of 100 classes by chance alone
    assert 0.0 < null.p_value("raw") <= 1.0
    assert null.min_p_value == pytest.approx(2 / 252)  # each split ties with its mirror image
    # exhaustive p is exactly the share of the 252 splits (the observed one among them)
    assert null.p_value("raw") == pytest.approx(np.mean(null.null_counts["raw"] >= null.observed.raw))
    half = cb.null_calibration(y, np.concatenate([pa, pb]), max_splits=40, seed=1)
    assert not half.exhaustive and len(half.null_counts["raw"]) == 40 and half.observed is None
    assert half.min_p_value == pytest.approx(1 / 41)


def test_null_calibration_detects_a_real_difference():
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(20), 40)
    acc = np.full(20, 0.8)
    shifted = acc.copy()
    shifted[:6] = 0.45
    pa, pb = population(rng, 5, y, acc, 0.02), population(rng, 5, y, shifted, 0.02)
    null = cb.null_calibration(y, pa, pb)
    assert null.observed.raw >= 6
    assert null.p_value("raw") == pytest.approx(2 / 252)  # only the real split and its mirror reach it


def test_disagreement_by_hand():
    f = np.array([0, 1, 1, 2, 2, 2])
    g = np.array([0, 2, 1, 1, 1, 0])
    mat = cb.disagreement_matrix(f, g, 3)
    assert mat.tolist() == [[0, 0, 0], [0, 0, 1], [1, 2, 0]]
    assert cb.disagreement_matrix(f, g, 3, include_diagonal=True).trace() == 2
    y = np.array([0, 0, 1, 1, 2, 2])
    assert np.allclose(cb.disagreement_by_class(y, f, g), [[0.5, 0.5, 1.0]])


def test_significance_is_validated_and_used():
    rng = np.random.default_rng(6)
    y = np.repeat(np.arange(10), 50)
    pa = population(rng, 5, y, np.full(10, 0.8), 0.05)
    pb = population(rng, 5, y, np.linspace(0.6, 0.95, 10), 0.05)
    loose, strict = (cb.class_bias_test(y, pa, pb, significance=s) for s in (0.2, 0.001))
    assert loose.counts.raw == int((loose.table["p"] < 0.2).sum()) >= strict.counts.raw
    assert strict.counts.raw == int((strict.table["p"] < 0.001).sum())
    for bad, match in ((0.0, "must be > 0"), (1.0, "must be < 1"), (True, "must be a number"), (-0.1, "must be > 0")):
        with pytest.raises(ValueError, match=f"significance {match}"):
            cb.class_bias_test(y, pa, pb, significance=bad)
    with pytest.raises(ValueError, match="max_splits"):
        cb.null_calibration(y, pa, pb, max_splits=0)


def test_relabelling_masks_mark_the_observed_split_and_its_mirror():
    from kdfair_utils.class_bias import relabelling_masks

    masks, exhaustive, observed = relabelling_masks(10, 5, 500, 0)
    assert exhaustive and masks.shape == (252, 10) and (masks.sum(1) == 5).all()
    assert len({m.tobytes() for m in masks}) == 252
    assert observed.sum() == 2  # 0..4 on side a, and its mirror 5..9
    assert {tuple(np.flatnonzero(m)) for m in masks[observed]} == {(0, 1, 2, 3, 4), (5, 6, 7, 8, 9)}
    masks, _, observed = relabelling_masks(9, 4, 500, 0)  # unequal sizes: no mirror
    assert observed.sum() == 1 and tuple(np.flatnonzero(masks[observed][0])) == (0, 1, 2, 3)
    masks, exhaustive, _ = relabelling_masks(20, 10, 30, 1)
    assert not exhaustive and masks.shape == (30, 20)


def test_class_names_fix_the_number_of_classes_when_some_never_occur():
    """100 class names, a test set showing classes 0..9 and predictions up to 90: one row per
    name, the classes nobody shows undefined rather than an error about the name count."""
    y = np.arange(10)
    a = np.stack([y, np.r_[y[:9], 90]])
    b = np.stack([y, y])
    res = cb.class_bias_test(y, a, b, class_names=[f"c{i}" for i in range(100)], normalization="difference")
    assert len(res.table) == 100 and list(res.table["class"][:2]) == ["c0", "c1"]
    assert res.table["p"][10:].isna().all()  # classes 10..99 never occur in the test set: no test
    with_count = cb.class_bias_test(y, a, b, n_classes=100, normalization="difference").table
    assert np.array_equal(res.table["p"].to_numpy(), with_count["p"].to_numpy(), equal_nan=True)
