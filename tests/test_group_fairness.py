import warnings

import numpy as np
import pytest
from fairlearn import metrics as fm
from hypothesis import given, settings
from hypothesis import strategies as st

from kdfair_utils import group_fairness as km


@st.composite
def binary_problem(draw):
    n = draw(st.integers(20, 300))
    k = draw(st.integers(2, 10))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    # every group has at least two members (n >= 20 >= 2k), one negative and one positive, so
    # fairlearn's rates are all defined (moving a lone member to another group after that group
    # was fixed up could leave it without a positive)
    groups = np.concatenate([np.repeat(np.arange(k), 2), rng.integers(0, k, n - 2 * k)])
    y = rng.integers(0, 2, n)
    y[0:2 * k:2], y[1:2 * k:2] = 0, 1
    weights = rng.random(n) + 0.05 if draw(st.booleans()) else None
    p = (rng.random(n) < rng.random()).astype(int)
    return y, p, groups, weights


@settings(max_examples=60, deadline=None)
@given(binary_problem(), st.sampled_from(km.METHODS))
def test_dpd_equals_fairlearn(problem, method):
    y, p, g, w = problem
    ours = km.demographic_parity_difference(y, p, sensitive_features=g, method=method, sample_weight=w)
    ref = fm.demographic_parity_difference(y, p, sensitive_features=g, method=method, sample_weight=w)
    assert abs(ours - ref) <= 1e-12


@settings(max_examples=60, deadline=None)
@given(binary_problem(), st.sampled_from(km.METHODS), st.sampled_from(km.AGGS))
def test_eod_equals_fairlearn(problem, method, agg):
    y, p, g, w = problem
    if len(np.unique(g)) < 2:
        return
    ours = km.equalized_odds_difference(y, p, sensitive_features=g, method=method, agg=agg, sample_weight=w)
    ref = fm.equalized_odds_difference(y, p, sensitive_features=g, method=method, agg=agg, sample_weight=w)
    assert abs(ours - ref) <= 1e-12


def test_many_models_at_once_equal_one_by_one():
    rng = np.random.default_rng(0)
    y, g = rng.integers(0, 2, 400), rng.integers(0, 4, 400)
    preds = rng.integers(0, 2, (6, 400))
    dpd = km.demographic_parity_difference(y, preds, sensitive_features=g)
    eod = km.equalized_odds_difference(y, preds, sensitive_features=g)
    assert dpd.shape == eod.shape == (6,)
    for i in range(6):
        assert dpd[i] == pytest.approx(fm.demographic_parity_difference(y, preds[i], sensitive_features=g), abs=1e-12)
        assert eod[i] == pytest.approx(fm.equalized_odds_difference(y, preds[i], sensitive_features=g), abs=1e-12)


def test_hand_computed_tiny_example():
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    p = np.array([1, 0, 1, 0, 1, 1, 1, 0])
    g = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])
    # selection: a 2/4, b 3/4 → DPD 0.25; TPR a 1/2, b 1/1; FPR a 1/2, b 2/3 → EOD 0.5
    assert km.demographic_parity_difference(y, p, sensitive_features=g) == pytest.approx(0.25)
    assert km.equalized_odds_difference(y, p, sensitive_features=g) == pytest.approx(0.5)
    assert km.equalized_odds_difference(y, p, sensitive_features=g, agg="mean") == pytest.approx((0.5 + 1 / 6) / 2)


def test_multiple_sensitive_features_are_intersected():
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    sf = np.stack([rng.integers(0, 2, 300), rng.integers(0, 3, 300)], axis=1)
    ours = km.demographic_parity_difference(y, p, sensitive_features=sf)
    ref = fm.demographic_parity_difference(y, p, sensitive_features={"a": sf[:, 0], "b": sf[:, 1]})
    assert ours == pytest.approx(ref, abs=1e-12)


def test_group_without_positives_warns_and_is_explicit():
    y = np.array([1, 1, 0, 0, 0, 0])
    p = np.array([1, 0, 0, 0, 0, 1])
    g = np.array([0, 0, 0, 1, 1, 1])
    with pytest.warns(km.UndefinedRateWarning, match="no positives"):
        zero = km.equalized_odds_difference(y, p, sensitive_features=g, undefined="zero")
    assert zero == pytest.approx(fm.equalized_odds_difference(y, p, sensitive_features=g))  # fairlearn: 0.5
    assert zero == pytest.approx(0.5)
    with pytest.warns(km.UndefinedRateWarning):
        excluded = km.equalized_odds_difference(y, p, sensitive_features=g)
    # TPR difference undefined (only one group has positives); FPR a 0/1, b 1/3
    assert excluded == pytest.approx(1 / 3)


def test_multiclass_labels_in_binary_metric_raise():
    y, p, g = np.array([0, 1, 2, 1]), np.array([0, 2, 2, 1]), np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="multiclass_fairness"):
        km.demographic_parity_difference(y, p, sensitive_features=g)
    with pytest.raises(ValueError, match="multiclass_fairness"):
        km.equalized_odds_difference(y, p, sensitive_features=g)


def test_string_labels_need_pos_label():
    y = np.array(["y", "n", "y", "n"])
    p = np.array(["y", "y", "n", "n"])
    g = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="pos_label"):
        km.demographic_parity_difference(y, p, sensitive_features=g)
    assert km.demographic_parity_difference(y, p, sensitive_features=g, pos_label="y") == pytest.approx(1.0)


@st.composite
def multiclass_problem(draw):
    n = draw(st.integers(50, 300))
    c = draw(st.integers(2, 6))
    k = draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    y = rng.integers(0, c, n)
    p = np.where(rng.random(n) < 0.6, y, rng.integers(0, c, n))
    g = rng.integers(0, k, n)
    w = rng.random(n) + 0.1 if draw(st.booleans()) else None
    return y, p, g, c, w


@settings(max_examples=40, deadline=None)
@given(multiclass_problem(), st.sampled_from(["dpd", "eod"]), st.sampled_from(km.METHODS))
def test_algorithm1_equals_loop_over_fairlearn(problem, metric, method):
    y, p, g, c, w = problem
    ref_fn = fm.demographic_parity_difference if metric == "dpd" else fm.equalized_odds_difference
    per_class = []
    for cls in range(c):
        yb, pb = (y == cls).astype(int), (p == cls).astype(int)
        defined = all(((yb[g == a] == 1).any() and (yb[g == a] == 0).any()) for a in np.unique(g))
        per_class.append(ref_fn(yb, pb, sensitive_features=g, method=method, sample_weight=w)
                         if metric == "dpd" or defined else np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", km.UndefinedRateWarning)
        ours = km.multiclass_fairness(y, p, sensitive_features=g, metric=metric, method=method, sample_weight=w,
                                      average=None, n_classes=c, undefined="zero")
    for cls in range(c):
        if not np.isnan(per_class[cls]):
            assert abs(ours[cls] - per_class[cls]) <= 1e-12
    if not np.isnan(per_class).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", km.UndefinedRateWarning)
            macro = km.multiclass_fairness(y, p, sensitive_features=g, metric=metric, method=method,
                                           sample_weight=w, n_classes=c)
        assert abs(macro - np.mean(per_class)) <= 1e-12


def test_algorithm1_vectorised_over_models_and_string_labels():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, 500)
    preds = np.where(rng.random((4, 500)) < 0.7, y, rng.integers(0, 5, (4, 500)))
    g = rng.integers(0, 3, 500)
    many = km.multiclass_fairness(y, preds, sensitive_features=g, metric="eod")
    assert many.shape == (4,)
    for i in range(4):
        assert many[i] == pytest.approx(km.multiclass_fairness(y, preds[i], sensitive_features=g, metric="eod"), abs=1e-15)
    names = np.array(list("abcde"))
    assert km.multiclass_fairness(names[y], names[preds[0]], sensitive_features=g, metric="dpd") == pytest.approx(
        km.multiclass_fairness(y, preds[0], sensitive_features=g, metric="dpd"), abs=1e-15)
    assert km.multiclass_fairness(y, preds, sensitive_features=g, average=None).shape == (4, 5)


@pytest.mark.parametrize("kwargs,match", [
    ({"y_true": [0, 1, 1], "y_pred": [0, 1]}, "y_pred has 2 examples, y_true has 3"),
    ({"y_true": [], "y_pred": []}, "y_true is empty"),
    ({"y_true": [0, 1], "y_pred": [0.0, np.nan]}, "NaN"),
    ({"y_true": [0, 1], "y_pred": [0, 1], "sensitive_features": [1, 1]}, "single group"),
    ({"y_true": [0, 1], "y_pred": [0, 1], "sensitive_features": [1, 2, 3]}, "sensitive_features has 3"),
    ({"y_true": [[0, 1]], "y_pred": [0, 1]}, "y_true must be 1-D"),
    ({"y_true": [0, 1], "y_pred": [0, 1], "sample_weight": [1, -1]}, "non-negative"),
    ({"y_true": [0, 1], "y_pred": [0, 1], "method": "ratio"}, "method"),
])
def test_bad_input(kwargs, match):
    args = {"sensitive_features": [0, 1], **kwargs}
    with pytest.raises(ValueError, match=match):
        km.demographic_parity_difference(args.pop("y_true"), args.pop("y_pred"), **args)


def test_multiclass_label_out_of_range():
    with pytest.raises(ValueError, match="n_classes=3"):
        km.multiclass_fairness([0, 1, 5], [0, 1, 2], sensitive_features=[0, 1, 1], n_classes=3)


def test_a_models_value_does_not_depend_on_the_models_stacked_with_it():
    """The macro average runs over the classes in y_true or that model's own predictions."""
    y = np.array([0, 1, 2, 0, 1, 2])
    g = np.array([0, 0, 0, 1, 1, 1])
    a, b = np.array([0, 1, 2, 0, 1, 1]), np.array([0, 1, 2, 3, 1, 2])
    alone = [km.multiclass_fairness(y, p, sensitive_features=g, n_classes=10) for p in (a, b)]
    stacked = km.multiclass_fairness(y, np.stack([a, b]), sensitive_features=g, n_classes=10)
    assert np.array_equal(stacked, alone)
    per_class = [fm.demographic_parity_difference(y == c, a == c, sensitive_features=g) for c in range(3)]
    assert alone[0] == pytest.approx(np.mean(per_class), abs=1e-12)  # classes 3..9 occur in neither: left out
