"""The report's inference rule against scipy/statsmodels and brute force."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps

from kdfair_utils import inference as inf


def test_blocked_slope_equals_statsmodels_fixed_effects():
    rng = np.random.default_rng(0)
    temps = np.array([2.0, 4, 6, 8, 10])
    y = rng.normal(0, 1, (5, 5)) + np.arange(5)[:, None] * 3 - 0.2 * temps
    fit = inf.blocked_slope(y, temps)
    df = pd.DataFrame({"y": y.ravel(), "T": np.tile(temps, 5), "seed": np.repeat(np.arange(5), 5)})
    ref = smf.ols("y ~ T + C(seed)", df).fit()
    assert fit.estimate == pytest.approx(ref.params["T"], rel=1e-12)
    assert fit.se == pytest.approx(ref.bse["T"], rel=1e-10)
    assert fit.df == ref.df_resid
    assert fit.p_two_sided == pytest.approx(ref.pvalues["T"], rel=1e-9)
    lo, hi = ref.conf_int().loc["T"]
    assert (fit.ci_low, fit.ci_high) == pytest.approx((lo, hi), rel=1e-10)


def _brute_slopes(y, temps):
    """Slope of every within-seed reordering, enumerated with itertools."""
    s, k = y.shape
    tc = temps - temps.mean()
    out = []
    for perms in itertools.product(itertools.permutations(range(k)), repeat=s):
        permuted = np.stack([y[i, list(p)] for i, p in enumerate(perms)])
        out.append(float((permuted.mean(0) * tc).sum() / (tc @ tc)))
    return np.array(out)


def test_trend_test_exhaustive_equals_brute_force():
    y = np.array([[3.0, 1.0, 2.0], [5.0, 4.0, 4.5]])
    temps = np.array([2.0, 5.0, 10.0])
    test = inf.trend_test(y, temps, n_perm=1000)
    assert test.exhaustive and test.n_orderings == 36
    null = _brute_slopes(y, temps)
    obs = inf.blocked_slope(y, temps).estimate
    assert test.p_increase == pytest.approx(np.mean(null >= obs - 1e-12), abs=0)
    assert test.p_decrease == pytest.approx(np.mean(null <= obs + 1e-12), abs=0)
    assert test.p_in(-1) == (test.p_decrease, test.p_increase)


def test_trend_test_random_orderings_detects_a_planted_trend_and_not_seed_effects():
    rng = np.random.default_rng(1)
    temps = np.array([2.0, 4, 6, 8, 10])
    seeds = rng.normal(0, 50, (5, 1))  # huge seed effects: blocking must remove them
    flat = seeds + rng.normal(0, 1, (5, 5))
    down = flat - 0.5 * temps
    t_down = inf.trend_test(down, temps, n_perm=999, seed=0)
    assert not t_down.exhaustive and t_down.n_orderings == 1000
    assert t_down.p_decrease == pytest.approx(1 / 1000)  # only the observed ordering is as extreme
    assert inf.verdict(*t_down.p_in(-1)) == inf.HOLDS
    assert inf.verdict(*t_down.p_in(+1)) == inf.OPPOSITE
    t_flat = inf.trend_test(flat, temps, n_perm=999, seed=0)
    assert t_flat.p_decrease > 0.05 and t_flat.p_increase > 0.05


def test_comparisons_equal_scipy():
    a, b = np.array([85.0, 84.1, 86.3, 83.9, 85.5]), np.array([88.2, 86.0, 89.1, 86.5, 87.9])
    paired = inf.paired_comparison(a, b)
    assert paired.p_less == pytest.approx(sps.ttest_rel(a, b, alternative="less").pvalue, rel=1e-12)
    assert paired.p_greater == pytest.approx(sps.ttest_rel(a, b, alternative="greater").pvalue, rel=1e-12)
    ci = sps.ttest_rel(b, a).confidence_interval(0.95)
    assert (paired.ci_low, paired.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert paired.difference == pytest.approx((b - a).mean(), rel=1e-12)
    welch = inf.welch_comparison(a[:2], b)
    assert welch.p_less == pytest.approx(sps.ttest_ind(a[:2], b, equal_var=False, alternative="less").pvalue,
                                         rel=1e-12)
    one = inf.one_sample([99.4, 99.7, 99.6], 99.0)
    assert one.p_less == pytest.approx(sps.ttest_1samp([99.4, 99.7, 99.6], 99.0, alternative="greater").pvalue,
                                       rel=1e-12)
    assert math.isnan(inf.paired_comparison([1.0], [2.0]).p_less)
    with pytest.raises(ValueError, match="differ in length"):
        inf.paired_comparison([1.0, 2.0], [1.0, 2.0, 3.0])


def test_verdict_rule():
    assert inf.verdict(0.01, 0.99) == inf.HOLDS
    assert inf.verdict(0.99, 0.01) == inf.OPPOSITE
    assert inf.verdict(0.3, 0.7) == inf.NOT_SIGNIFICANT
    assert inf.verdict(None, 0.5) == inf.NA and inf.verdict(math.nan, 0.5) == inf.NA


def test_bootstrap_support_is_the_share_of_measurable_resamples_with_the_same_verdict():
    values = np.array([1.0, 2.0, 3.0, 4.0, 10.0])

    def verdict_of(picks):
        v = values[picks["seeds"]]
        if picks["seeds"][0] == picks["seeds"][1] == 0:
            return inf.NA  # not measurable (a stand-in): left out of the share
        return inf.HOLDS if v.mean() > 3 else inf.NOT_SIGNIFICANT

    draw = inf.independent_units({"seeds": 5})
    rng = np.random.default_rng(7)
    manual = [verdict_of(draw(rng)) for _ in range(200)]
    measurable = [v for v in manual if v != inf.NA]
    assert 0 < len(manual) - len(measurable) < 30
    expected = sum(v == inf.HOLDS for v in measurable) / len(measurable)
    assert inf.bootstrap_support(verdict_of, draw, inf.HOLDS, draws=200, seed=7) == pytest.approx(expected)
    two = inf.independent_units({"seeds": 2})  # half the resamples repeat one unit: too few for a support
    assert inf.bootstrap_support(lambda p: inf.HOLDS if np.ptp(p["seeds"]) else inf.NA, two, inf.HOLDS) is None
    assert inf.bootstrap_support(lambda p: inf.HOLDS, draw, inf.HOLDS, draws=20) == 1.0
    assert inf.bootstrap_support(verdict_of, draw, inf.NA) is None
    assert inf.bootstrap_support(lambda p: inf.NA, draw, inf.HOLDS, draws=5) is None


def test_teacher_clusters_resample_students_with_their_teacher():
    teacher_of = [0, 1, 0, 1, 0]  # same_seed pairing: 5 students, 2 teachers
    draw = inf.teacher_clusters(teacher_of, 2)
    rng = np.random.default_rng(0)
    for _ in range(50):
        picks = draw(rng)
        assert len(picks["teachers"]) == 2
        drawn = [teacher_of[i] for i in picks["seeds"]]
        # every student drawn belongs to a drawn teacher, as often as that teacher was drawn
        for t in (0, 1):
            expected = sum(teacher_of.count(t) for x in picks["teachers"] if x == t)
            assert drawn.count(t) == expected
    assert len(inf.teacher_clusters([0, 0, 0], 2)(np.random.default_rng(1))["seeds"]) in (0, 3, 6)
