import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from kdfair_utils import stats as st


def test_population_stats_equal_scipy():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 12):
        v = rng.normal(80, 3, n)
        s = st.population_stats(v)
        lo, hi = sps.t.interval(0.95, n - 1, loc=v.mean(), scale=sps.sem(v))
        assert (s.mean, s.n) == (pytest.approx(v.mean(), abs=1e-12), n)
        assert s.std == pytest.approx(v.std(ddof=1), rel=1e-12)
        assert (s.ci_low, s.ci_high) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    s90 = st.population_stats([1.0, 2.0, 4.0], confidence=0.9)
    assert s90.ci_high == pytest.approx(sps.t.interval(0.9, 2, loc=7 / 3, scale=sps.sem([1.0, 2.0, 4.0]))[1])


def test_population_stats_of_one_model_has_no_spread():
    s = st.population_stats([99.5])
    assert s.mean == 99.5 and s.n == 1
    assert math.isnan(s.std) and math.isnan(s.ci_low) and math.isnan(s.ci_high)


@pytest.mark.parametrize("values,match", [([], "at least one"), ([1.0, np.nan], "non-finite"), ([np.inf], "non-finite")])
def test_population_stats_refuses_bad_values(values, match):
    with pytest.raises(ValueError, match=match):
        st.population_stats(values)


def test_welch_equals_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (5, 40)), rng.normal(0.3, 2, (7, 40))
    ours = st.welch_ttest(a, b)
    ref = sps.ttest_ind(a, b, axis=0, equal_var=False)
    assert np.allclose(ours["t"], ref.statistic, rtol=1e-12, atol=0)
    assert np.allclose(ours["p"], ref.pvalue, rtol=1e-10, atol=1e-15)
    assert (ours["status"] == "ok").all()
    ci = ref.confidence_interval(0.95)  # of mean(a) - mean(b): a half-width around it
    np.testing.assert_allclose(ours["ci95"], (ci.high - ci.low) / 2, rtol=1e-10)
    fast = st.welch_ttest(a, b, interval=False)
    assert "ci95" not in fast and np.array_equal(fast["p"], ours["p"]) and np.array_equal(fast["t"], ours["t"])


@pytest.mark.parametrize("na,nb,significance", [(5, 5, 0.05), (2, 7, 0.05), (3, 4, 0.01), (10, 12, 0.2)])
def test_welch_significant_is_exactly_p_below_the_level(na, nb, significance):
    """The counting shortcut decides exactly as ``p < significance`` does, for t near the
    bounds, constant columns (equal or different) and NaN."""
    rng = np.random.default_rng(na * 100 + nb)
    a = rng.normal(0, 1, (200, na, 50))
    b = rng.normal(0, 1, (200, nb, 50)) + rng.uniform(-2, 2, (200, 1, 50))
    a[:3, :, :4], b[:3, :, :4] = 0.5, 0.5            # identical constants: p = 1
    a[3:6, :, :4], b[3:6, :, :4] = 0.5, 0.7          # different constants: p undefined
    a[6, 0, 7] = np.nan
    p = st.welch_ttest(a, b)["p"]
    with np.errstate(invalid="ignore"):
        want = p < significance
    got = st.welch_significant(a, b, significance)
    assert np.array_equal(got, want)
    assert 0 < want.sum() < want.size  # both outcomes occur
    t = np.abs(st.welch_ttest(a, b)["t"])
    assert ((t > sps.norm.isf(significance / 2)) & (t < sps.t.isf(significance / 2, min(na, nb) - 1))).any()


def test_welch_significant_edge_cases_match_the_exact_test():
    """Variances that underflow to 0 in a non-constant column (t = ±inf, df undefined: p NaN, not
    counted), a level so small that its half underflows, and a bad level."""
    a = np.array([[0.0, 0.0], [5e-324, 1.0], [0.0, 2.0]])
    b = np.array([[1.0, 5.0], [1.0, 6.0], [1.0, 7.0]])
    with np.errstate(invalid="ignore"):
        for level in (0.05, 5e-324):
            assert np.array_equal(st.welch_significant(a, b, level), st.welch_ttest(a, b)["p"] < level)
    assert not st.welch_significant(a, b, 0.05)[0]
    with pytest.raises(ValueError, match="significance must be < 1"):
        st.welch_significant(a, b, 1.5)


def test_corrections_equal_references():
    rng = np.random.default_rng(2)
    p = np.concatenate([rng.random(40), rng.random(10) * 0.01])
    assert np.allclose(st.benjamini_hochberg(p), sps.false_discovery_control(p, method="bh"), rtol=1e-12)
    assert np.allclose(st.holm(p), multipletests(p, method="holm")[1], rtol=1e-12)
    with_nan = np.array([0.01, np.nan, 0.04, 0.2])
    adj = st.adjust_pvalues(with_nan, "bh")
    assert np.isnan(adj[1]) and np.allclose(adj[[0, 2, 3]], sps.false_discovery_control([0.01, 0.04, 0.2]))


def test_welch_batched_over_leading_axes_equals_scipy_per_batch():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, (4, 5, 30)), rng.normal(0.5, 1.5, (4, 6, 30))
    ours = st.welch_ttest(a, b)
    for i in range(4):
        ref = sps.ttest_ind(a[i], b[i], axis=0, equal_var=False)
        np.testing.assert_allclose(ours["p"][i], ref.pvalue, rtol=1e-10, atol=1e-15)
