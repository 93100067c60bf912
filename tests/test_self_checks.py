"""The notebooks' self-checks (:mod:`kdfair_utils.checks`): a correct student function passes, each
typical mistake, written as a student would write it, fails with the hint that names it, and a
mistake is named only when it reproduces the student's function on every case."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import torch
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from torch.nn import functional as F

from kdfair_utils import checks

CE = F.cross_entropy


LINE = re.compile(r"[✓✗] [^\s:]+: \S[^\n]*\n")


def run(check, fn, capsys) -> tuple[object, str]:
    """``check(fn)`` and its output, which is one line ``✓/✗ NAME: …`` without ".."."""
    result = check(fn)
    out = capsys.readouterr().out
    assert LINE.fullmatch(out) and out.startswith(f"{'✓' if result else '✗'} {check.__name__}: "), out
    assert ".." not in out, out
    return result, out


# ----------------------------------------------------------------------------- students: KD loss
def kl_t(s, t, T, reduction="batchmean"):
    """A student's KL(softmax(t/T) ‖ softmax(s/T))."""
    return F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction=reduction)


def kd_ok(s, t, y, T, a):
    return a * T**2 * kl_t(s, t, T) + (1 - a) * CE(s, y)


def kd_notebook(student_logits, teacher_logits, targets, temperature, alpha):
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(1).mean()
    return alpha * temperature**2 * kl + (1 - alpha) * F.cross_entropy(student_logits, targets)


_soft_targets: dict = {}


def kd_cached(s, t, y, T, a):
    if t not in _soft_targets:  # "the teacher's soft targets once per teacher batch"
        _soft_targets[t] = F.softmax(t / T, dim=1)
    kl = F.kl_div(F.log_softmax(s / T, dim=1), _soft_targets[t], reduction="batchmean")
    return a * T**2 * kl + (1 - a) * CE(s, y)


def kd_log_softmax(s, t, y, T, a):
    p_s, p_t = F.softmax(s / T, dim=1), F.softmax(t / T, dim=1)
    kl = (p_t * (torch.log(p_t) - torch.log(p_s))).sum(1).mean()
    return a * T**2 * kl + (1 - a) * CE(s, y)


def kd_exp(s, t, y, T, a):
    p_s = torch.exp(s / T) / torch.exp(s / T).sum(1, keepdim=True)
    p_t = torch.exp(t / T) / torch.exp(t / T).sum(1, keepdim=True)
    return a * T**2 * (p_t * torch.log(p_t / p_s)).sum(1).mean() + (1 - a) * CE(s, y)


def kd_eps(s, t, y, T, a):
    p_t = F.softmax(t / T, dim=1)
    kl = F.kl_div(torch.log(F.softmax(s / T, dim=1) + 1e-300), p_t, reduction="batchmean")
    return a * T**2 * kl + (1 - a) * CE(s, y)


def kd_int_temperature(s, t, y, T, a):
    T = int(T)  # "the temperature is a whole number"
    return kd_ok(s, t, y, T, a)


def kd_soft_cross_entropy(s, t, y, T, a):  # Hinton's soft cross-entropy, not the KL
    soft_ce = -(F.softmax(t / T, dim=1) * F.log_softmax(s / T, dim=1)).sum(1).mean()
    return a * T**2 * soft_ce + (1 - a) * CE(s, y)


def kd_no_return(s, t, y, T, a):
    a * T**2 * kl_t(s, t, T) + (1 - a) * CE(s, y)  # computed, never returned


def kd_per_example(s, t, y, T, a):
    return a * T**2 * kl_t(s, t, T, "none").sum(1) + (1 - a) * CE(s, y, reduction="none")


KD_WRONG = {
    "no T²": (lambda s, t, y, T, a: a * kl_t(s, t, T) + (1 - a) * CE(s, y), "not multiplied by T²"),
    "T": (lambda s, t, y, T, a: a * T * kl_t(s, t, T) + (1 - a) * CE(s, y), "multiplied by T instead of T²"),
    "mean": (lambda s, t, y, T, a: a * T**2 * kl_t(s, t, T, "mean") + (1 - a) * CE(s, y), 'reduction="batchmean"'),
    "sum": (lambda s, t, y, T, a: a * T**2 * kl_t(s, t, T, "sum") + (1 - a) * CE(s, y), "summed over the batch"),
    "swapped": (lambda s, t, y, T, a: (1 - a) * T**2 * kl_t(s, t, T) + a * CE(s, y), "swapped"),
    "reversed": (lambda s, t, y, T, a: a * T**2 * kl_t(t, s, T) + (1 - a) * CE(s, y), "KL direction is reversed"),
    "soft CE": (lambda s, t, y, T, a: a * T**2 * kl_t(s, t, T) + (1 - a) * CE(s / T, y), "softened logits"),
    "teacher T": (lambda s, t, y, T, a: a * T**2 * F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t, dim=1),
                                                             reduction="batchmean") + (1 - a) * CE(s, y),
                  "teacher's logits are not divided by T"),
    "student T": (lambda s, t, y, T, a: a * T**2 * F.kl_div(F.log_softmax(s, dim=1), F.softmax(t / T, dim=1),
                                                             reduction="batchmean") + (1 - a) * CE(s, y),
                  "student's logits are not divided by T"),
    "cached": (kd_cached, "cached/reused across calls: recompute them at each call's temperature"),
    "log(softmax)": (kd_log_softmax, "use F.log_softmax"),
    "exp": (kd_exp, "numerically unstable"),
    "log(softmax + eps)": (kd_eps, "numerically unstable"),
    ".item()": (lambda *a: kd_ok(*a).item(), "keep it a differentiable torch tensor"),
    ".detach()": (lambda *a: kd_ok(*a).detach(), "keep it a differentiable torch tensor"),
    "numpy": (lambda *a: kd_ok(*a).detach().numpy(), "no .item(), .detach() or numpy"),
    "per example": (kd_per_example, "returns shape (8,): average over the batch"),
    "int(T)": (kd_int_temperature, "the temperature is used as an integer"),
    "round(T)": (lambda s, t, y, T, a: kd_ok(s, t, y, round(T), a), "T can be any positive number (e.g. 2.5)"),
    "soft cross-entropy": (kd_soft_cross_entropy, "uses the cross-entropy with the soft targets instead of the KL "
                                                  "divergence: they differ by the teacher's entropy"),
    "both summed": (lambda s, t, y, T, a: a * T**2 * kl_t(s, t, T, "sum") + (1 - a) * CE(s, y, reduction="sum"),
                    "both terms are summed over the batch: average over the batch, don't sum"),
    "no return": (kd_no_return, "returns None: did you forget `return`?"),
}


# ----------------------------------------------------------------------------- students: Welch count
def welch_notebook(acc_a, overall_a, acc_b, overall_b, significance):
    xa, xb = acc_a / overall_a[:, None], acc_b / overall_b[:, None]
    constant = (np.ptp(xa, axis=0) == 0) & (np.ptp(xb, axis=0) == 0)
    p = sps.ttest_ind(xa, xb, axis=0, equal_var=False).pvalue
    return int(np.sum((p < significance) & ~constant))


def welch_p(xa, xb, ttest=sps.ttest_ind, **options):
    """A student's per-class p-values (Welch's by default), NaN where a class is constant in both populations."""
    p = (ttest(xa, xb, **{"axis": 0, "equal_var": False, **options}) if ttest is sps.ttest_ind
         else ttest(xa, xb, axis=0)).pvalue
    return np.where((np.ptp(xa, axis=0) == 0) & (np.ptp(xb, axis=0) == 0), np.nan, p)


def welch_norm_p(aa, oa, ab, ob, **options):
    return welch_p(aa / oa[:, None], ab / ob[:, None], **options)


def welch_ok(aa, oa, ab, ob, sig):
    return int(np.sum(welch_norm_p(aa, oa, ab, ob) < sig))


def welch_holm(aa, oa, ab, ob, sig):
    p = welch_norm_p(aa, oa, ab, ob)
    return int(multipletests(p[~np.isnan(p)], alpha=sig, method="holm")[0].sum())


WELCH_WRONG = {
    "raw accuracy": (lambda aa, oa, ab, ob, sig: int(np.sum(welch_p(aa, ab) < sig)), "no normalisation"),
    "Student": (lambda aa, oa, ab, ob, sig: int(np.sum(welch_norm_p(aa, oa, ab, ob, equal_var=True) < sig)),
                "Student's t-test (equal_var=True)"),
    "axis": (lambda aa, oa, ab, ob, sig: int(np.sum(sps.ttest_ind(aa / oa[:, None], ab / ob[:, None], axis=1,
                                                                  equal_var=False).pvalue < sig)), "wrong axis"),
    "paired": (lambda aa, oa, ab, ob, sig: int(np.sum(sps.ttest_rel(aa / oa[:, None], ab / ob[:, None]).pvalue
                                                      < sig)), "paired test (ttest_rel): the paper's test is "
               "Welch's unpaired t-test, scipy.stats.ttest_ind(xa, xb, equal_var=False); a paired test pairs the "
               "models by their position, which is not the paper's #SC/#TC count"),
    "paired, notebook's constant rule": (lambda aa, oa, ab, ob, sig: int(np.sum(welch_norm_p(
        aa, oa, ab, ob, ttest=sps.ttest_rel) < sig)), "paired test (ttest_rel)"),
    "BH": (lambda aa, oa, ab, ob, sig: int(np.sum(sps.false_discovery_control(
        welch_norm_p(aa, oa, ab, ob)[~np.isnan(welch_norm_p(aa, oa, ab, ob))]) < sig)), "counts BH-corrected"),
    "Holm": (welch_holm, "counts Holm-corrected"),
    "inverted": (lambda aa, oa, ab, ob, sig: int(np.sum(welch_norm_p(aa, oa, ab, ob) >= sig)), "counts p >= sig"),
    "constant class": (lambda aa, oa, ab, ob, sig: int(np.sum(sps.ttest_ind(
        aa / oa[:, None], ab / ob[:, None], equal_var=False).pvalue < sig)), "constant within both populations at "
        "different values: Welch's t is undefined there (infinite), and the package's convention is not to count "
        "such a class (scipy's p = 0 would count it)"),
    "fixed 0.05": (lambda aa, oa, ab, ob, sig: welch_ok(aa, oa, ab, ob, 0.05), "ignores the significance argument"),
    "mask": (lambda aa, oa, ab, ob, sig: welch_norm_p(aa, oa, ab, ob) < sig, "return the number of significant"),
}


# ----------------------------------------------------------------------------- students: BH
def bh_notebook(p_values, q):
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p)
    below = p[order] <= q * np.arange(1, m + 1) / m
    k = int(np.flatnonzero(below).max()) + 1 if below.any() else 0
    reject = np.zeros(m, dtype=bool)
    reject[order[:k]] = True
    return reject


def bh_loop(p_values, q):
    m = len(p_values)
    ranked = sorted(range(m), key=lambda j: p_values[j])
    k = max([i for i, j in enumerate(ranked, 1) if p_values[j] <= i * q / m], default=0)
    return np.array([j in ranked[:k] for j in range(m)], dtype=bool)


def bh_step_down(p_values, q):
    reject = np.zeros(len(p_values), dtype=bool)
    for i, j in enumerate(np.argsort(p_values), 1):
        if p_values[j] > i * q / len(p_values):
            break
        reject[j] = True
    return reject


def bh_sorted(p_values, q):
    p, m = np.sort(p_values), len(p_values)
    below = p <= q * np.arange(1, m + 1) / m
    return np.arange(m) < (np.flatnonzero(below).max() + 1 if below.any() else 0)


def bh_rank0(p_values, q):
    m, order = len(p_values), np.argsort(p_values)
    below = p_values[order] <= q * np.arange(m) / m
    reject = np.zeros(m, dtype=bool)
    reject[order[: np.flatnonzero(below).max() + 1 if below.any() else 0]] = True
    return reject


def bh_holm(p_values, q):
    reject, m = np.zeros(len(p_values), dtype=bool), len(p_values)
    for i, j in enumerate(np.argsort(p_values), 1):
        if p_values[j] > q / (m - i + 1):
            break
        reject[j] = True
    return reject


def bh_own_threshold(p_values, q):
    ranks = np.argsort(np.argsort(p_values)) + 1
    return p_values <= ranks * q / len(p_values)


def bh_in_place(p_values, q):
    p_values.sort()
    return bh_notebook(p_values, q)


BH_WRONG = {
    "Bonferroni": (lambda p, q: p <= q / len(p), "Bonferroni"),
    "none": (lambda p, q: p <= q, "no correction"),
    "step-down": (bh_step_down, "step-up"),
    "sorted order": (bh_sorted, "sorted order"),
    "rank 0": (bh_rank0, "ranks start at 0"),
    "Holm": (bh_holm, "Holm"),
    "adjusted": (lambda p, q: sps.false_discovery_control(p), "adjusted p-values"),
    "count": (lambda p, q: int(bh_notebook(p, q).sum()), "a count"),
    "in place": (bh_in_place, "changes its input `p_values` in place"),
    "own threshold": (bh_own_threshold, "compares each p-value with its own threshold only: BH rejects every "
                                        "p-value up to the largest rank k that passes"),
}


# ----------------------------------------------------------------------------- students: DPD, EOD
def rates(values, groups):
    return np.array([values[groups == g].mean() for g in np.unique(groups)])


def dpd_notebook(y_true, y_pred, groups):
    r = [y_pred[groups == g].mean() for g in np.unique(groups)]
    return float(max(r) - min(r))


def dpd_first_two(y_true, y_pred, groups):
    g0, g1 = np.unique(groups)[:2]
    return abs(y_pred[groups == g0].mean() - y_pred[groups == g1].mean())


def gap(y_true, y_pred, groups, label):
    return float(np.ptp(rates(y_pred[y_true == label], groups[y_true == label])))


def eod_notebook(y_true, y_pred, groups):
    return max(gap(y_true, y_pred, groups, 1), gap(y_true, y_pred, groups, 0))


def eod_first_two(y_true, y_pred, groups):
    keep = np.isin(groups, np.unique(groups)[:2])
    return eod_notebook(y_true[keep], y_pred[keep], groups[keep])


PERCENT = "returns a percentage: return a fraction (the lessons print DPD/EOD ×100, the functions return 0 to 1)"
DPD_WRONG = {
    "y_true": (lambda yt, yp, g: float(np.ptp(rates(yt, g))), "uses y_true (base rates)"),
    "first two": (dpd_first_two, "only the first two groups"),
    "ratio": (lambda yt, yp, g: rates(yp, g).min() / rates(yp, g).max(), "ratio min/max"),
    "reversed": (lambda yt, yp, g: float(np.ptp([np.mean(g[yp == 1] == a) for a in np.unique(g)])),
                 "reversed conditioning"),
    "to overall": (lambda yt, yp, g: float(np.max(np.abs(rates(yp, g) - yp.mean()))), 'method="to_overall"'),
    "accuracy": (lambda yt, yp, g: float(np.ptp(rates(yt == yp, g))), "compares accuracy"),
    "per group": (lambda yt, yp, g: rates(yp, g), "return a single float"),
    "percent": (lambda yt, yp, g: 100 * dpd_notebook(yt, yp, g), PERCENT),
}

EOD_WRONG = {
    "TPR only": (lambda yt, yp, g: gap(yt, yp, g, 1), "TPR difference only"),
    "FPR only": (lambda yt, yp, g: gap(yt, yp, g, 0), "FPR difference only"),
    "mean": (lambda yt, yp, g: (gap(yt, yp, g, 1) + gap(yt, yp, g, 0)) / 2, 'agg="mean"'),
    "sum": (lambda yt, yp, g: gap(yt, yp, g, 1) + gap(yt, yp, g, 0), "adds the TPR and FPR"),
    "DPD": (dpd_notebook, "demographic parity difference"),
    "accuracy": (lambda yt, yp, g: float(np.ptp(rates(yt == yp, g))), "compares accuracy"),
    "first two": (eod_first_two, "only the first two groups"),
    "percent": (lambda yt, yp, g: 100 * eod_notebook(yt, yp, g), PERCENT),
}


# ----------------------------------------------------------------------------- students: Lipschitz
def tv(p, q):
    return 0.5 * np.abs(p - q).sum(axis=1)


def rms(x, x2):
    return np.sqrt(((x - x2) ** 2).reshape(len(x), -1).mean(axis=1))


def lip_notebook(probs, probs_pair, x, x_pair):
    tv = 0.5 * np.abs(probs - probs_pair).sum(axis=1)
    d = np.sqrt(((x - x_pair) ** 2).reshape(len(x), -1).mean(axis=1))
    return float(np.mean(tv / d))


def lip_loop(probs, probs_pair, x, x_pair):
    ratios = []
    for i in range(len(x)):
        d = np.sqrt(np.mean((x[i] - x_pair[i]) ** 2, axis=-1))  # forgot to flatten the image
        ratios.append(tv(probs, probs_pair)[i] / d)
    return float(np.mean(ratios))


LIP_WRONG = {
    "ratio of means": (lambda p, q, x, x2: float(tv(p, q).mean() / rms(x, x2).mean()), "ratio of means"),
    "L1": (lambda p, q, x, x2: float(np.mean(np.abs(p - q).sum(1) / rms(x, x2))), "L1 output distance"),
    "plain L2": (lambda p, q, x, x2: float(np.mean(tv(p, q) / np.linalg.norm((x - x2).reshape(len(x), -1), axis=1))),
                 "plain L2 norm"),
    "L2 output": (lambda p, q, x, x2: float(np.mean(np.linalg.norm(p - q, axis=1) / rms(x, x2))), "L2 output"),
    "squared": (lambda p, q, x, x2: float(np.mean(tv(p, q) / ((x - x2) ** 2).reshape(len(x), -1).mean(1))),
                "missing square root"),
    "max": (lambda p, q, x, x2: float(np.max(tv(p, q) / rms(x, x2))), "max over pairs"),
    "last axis (loop)": (lip_loop, "distance over the last axis only"),
    "last axis (vectorised)": (lambda p, q, x, x2: float(np.mean(tv(p, q) / np.sqrt(((x - x2) ** 2).mean(-1)))),
                               "flatten each input"),
}

CORRECT = {
    "check_kd_loss": [kd_ok, kd_notebook], "check_welch_count": [welch_ok, welch_notebook],
    "check_bh": [bh_notebook, bh_loop], "check_dpd": [dpd_notebook], "check_eod": [eod_notebook],
    "check_lipschitz": [lip_notebook],
}
WRONG = {"check_kd_loss": KD_WRONG, "check_welch_count": WELCH_WRONG, "check_bh": BH_WRONG, "check_dpd": DPD_WRONG,
         "check_eod": EOD_WRONG, "check_lipschitz": LIP_WRONG}


# ----------------------------------------------------------------------------- tests
def test_checks_lists_the_six():
    assert list(checks.CHECKS) == ["check_kd_loss", "check_welch_count", "check_bh", "check_dpd", "check_eod",
                                   "check_lipschitz"]
    assert all(checks.CHECKS[name].__name__ == name for name in checks.CHECKS)
    assert (checks.PASSED, checks.FAILED) == ("✓", "✗")


@pytest.mark.parametrize("name, fn", [(n, f) for n, fns in CORRECT.items() for f in fns],
                         ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_a_correct_function_passes(name, fn, capsys):
    result, out = run(checks.CHECKS[name], fn, capsys)
    assert result is True
    assert re.fullmatch(rf"✓ {name}: passed \(\d+ cases\)\n", out), out


@pytest.mark.parametrize("name, mistake", [(n, m) for n, table in WRONG.items() for m in table])
def test_each_mistake_fails_with_its_hint(name, mistake, capsys):
    fn, hint = WRONG[name][mistake]
    result, out = run(checks.CHECKS[name], fn, capsys)
    assert result is False
    assert out.startswith(f"✗ {name}: ") and out.count("\n") == 1, out
    assert hint in out and "Failing case" in out and "expected" in out, out


def test_the_cache_mistake_is_caught_at_the_second_temperature(capsys):
    _, out = run(checks.check_kd_loss, kd_cached, capsys)
    assert "Failing case 2/" in out and "the same teacher_logits as case 1" in out


@pytest.mark.parametrize("name", list(checks.CHECKS))
def test_a_stub_says_not_implemented(name, capsys):
    def stub(*args):
        raise NotImplementedError

    result, out = run(checks.CHECKS[name], stub, capsys)
    assert result is False
    assert out.startswith(f"✗ {name}: not implemented yet: replace the `raise NotImplementedError` stub"), out


@pytest.mark.parametrize("name", list(checks.CHECKS))
def test_another_exception_is_named_not_raised(name, capsys):
    def broken(*args):
        return {}["missing key"]

    result, out = run(checks.CHECKS[name], broken, capsys)
    assert result is False
    assert out.startswith(f"✗ {name}: your function raised KeyError: 'missing key'"), out


@pytest.mark.parametrize("name", list(checks.CHECKS))
def test_a_result_of_the_wrong_type_is_a_hint(name, capsys):
    result, out = run(checks.CHECKS[name], lambda *args: "hello", capsys)
    assert result is False and out.startswith(f"✗ {name}: returns a str"), out


@pytest.mark.parametrize("bad", [None, 42, "kd_loss"])
def test_a_check_refuses_what_is_not_a_function(bad):
    for check in checks.CHECKS.values():
        with pytest.raises(TypeError, match="needs your function"):
            check(bad)


@pytest.mark.parametrize("name", list(checks.CHECKS))
def test_checks_are_deterministic_and_fast(name, capsys):
    wrong = next(iter(WRONG[name].values()))[0]
    outputs = []
    for fn in (CORRECT[name][0], wrong) * 2:
        start = time.perf_counter()
        checks.CHECKS[name](fn)
        assert time.perf_counter() - start < 1.0
        outputs.append(capsys.readouterr().out)
    assert outputs[:2] == outputs[2:] and outputs[0] != outputs[1]


def test_the_student_gets_copies_and_the_cases_stay_pristine(capsys):
    assert run(checks.check_bh, bh_in_place, capsys)[0] is False
    assert run(checks.check_bh, bh_notebook, capsys)[0] is True  # the in-place sort did not reach the cases


@pytest.mark.parametrize("spec", [checks._KD, checks._WELCH, checks._BH, checks._DPD, checks._EOD, checks._LIP],
                         ids=lambda s: s.name)
def test_every_listed_mistake_is_diagnosed_by_its_own_hint(spec, capsys):
    """The case design: each built-in mistake differs from the reference somewhere, and where it
    first does, no earlier mistake in the list gives the same value."""
    for hint, wrong in spec.mistakes + tuple(m for case in spec.cases() for m in case.mistakes):
        assert checks._run(spec, wrong) is False
        assert hint in capsys.readouterr().out, hint


# ----------------------------------------------------------------------------- a mistake must reproduce every case
def welch_subtracted(aa, oa, ab, ob, sig):  # Hooker-style difference, per model
    return int(np.sum(welch_p(aa - oa[:, None], ab - ob[:, None]) < sig))


def welch_mann_whitney(aa, oa, ab, ob, sig):
    return int(np.sum(sps.mannwhitneyu(aa / oa[:, None], ab / ob[:, None], axis=0).pvalue < sig))


def welch_by_hand_ddof0(aa, oa, ab, ob, sig):
    xa, xb = aa / oa[:, None], ab / ob[:, None]
    va, vb = xa.var(axis=0) / len(xa), xb.var(axis=0) / len(xb)  # np.var: ddof=0
    t = (xa.mean(0) - xb.mean(0)) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1))
    return int(np.sum(2 * sps.t.sf(np.abs(t), df) < sig))


@pytest.mark.parametrize("fn, wrong, right", [
    (welch_subtracted, "paired test", "normalises by subtraction (acc − overall)"),
    (welch_mann_whitney, "no normalisation", "a rank test (Mann–Whitney U)"),
    (welch_by_hand_ddof0, "Student's t-test", "sample variances with ddof=0"),
], ids=["acc − overall", "Mann–Whitney", "ddof=0 by hand"])
def test_integer_coincidences_on_one_case_no_longer_name_the_wrong_mistake(fn, wrong, right, capsys):
    """The review's three cases: each matched the named mistake on the failing case only."""
    result, out = run(checks.check_welch_count, fn, capsys)
    assert result is False and wrong not in out
    assert right in out or checks.DIFFERS in out, out


def test_a_mistake_matching_the_failing_case_only_is_not_named(capsys):
    first = checks._WELCH.cases()[0].inputs[0]
    student_t = WELCH_WRONG["Student"][0]

    def student(aa, oa, ab, ob, sig):  # Student's t on case 1 (by chance), the reference everywhere else
        return (student_t if np.array_equal(aa, first) else welch_ok)(aa, oa, ab, ob, sig)

    _, out = run(checks.check_welch_count, student, capsys)
    assert "Failing case 1/" in out and f": {checks.DIFFERS}. Failing" in out, out
    assert run(checks.check_welch_count, student_t, capsys)[1].count("Student's t-test") == 1


def test_a_student_that_raises_on_some_cases_is_matched_on_the_others(capsys):
    def no_t2_on_small_batches(s, t, y, T, a):
        if len(s) > 8:
            raise RuntimeError("only batches up to 8")
        return KD_WRONG["no T²"][0](s, t, y, T, a)

    _, out = run(checks.check_kd_loss, no_t2_on_small_batches, capsys)
    assert "not multiplied by T²" in out and "Failing case 1/" in out, out


def test_the_paired_and_constant_hints_state_the_conventions(capsys):
    _, out = run(checks.check_welch_count, WELCH_WRONG["paired"][0], capsys)
    assert "independent" not in out and "Welch's unpaired t-test" in out and "by their position" in out
    _, out = run(checks.check_welch_count, WELCH_WRONG["constant class"][0], capsys)
    assert "Failing case 2/" in out and "convention" in out and "obviously" not in out


def test_bh_case_one_tells_step_up_from_step_down_and_own_thresholds():
    p, q = checks._BH.cases()[0].inputs
    masks = [bh_notebook(p, q), bh_step_down(p, q), bh_own_threshold(p, q)]
    assert len({m.tobytes() for m in masks}) == 3 and [int(m.sum()) for m in masks] == [7, 3, 6]


def test_kd_has_a_non_integer_temperature():
    assert any(not float(case.inputs[3]).is_integer() for case in checks._KD.cases())


@pytest.mark.parametrize("name", list(checks.CHECKS))
def test_returning_none_asks_about_return(name, capsys):
    def forgot_return(*args):
        args[0].copy() if hasattr(args[0], "copy") else None

    result, out = run(checks.CHECKS[name], forgot_return, capsys)
    assert result is False and out.startswith(f"✗ {name}: returns None: did you forget `return`? Failing case 1/")


def test_an_error_ending_in_a_period_prints_no_double_period(capsys):
    def in_place(s, t, y, T, a):
        s.div_(T)  # RuntimeError: "... used in an in-place operation."
        return kd_ok(s, t, y, T, a)

    _, out = run(checks.check_kd_loss, in_place, capsys)
    assert "your function raised RuntimeError" in out and "in-place operation. Failing case 1/" in out, out


def test_a_long_error_is_cut_with_an_ellipsis(capsys):
    def verbose(*args):
        raise ValueError("word " * 100 + "... the end.")

    _, out = run(checks.check_bh, verbose, capsys)
    assert "…" in out and "the end" not in out


# ----------------------------------------------------------------------------- check_result
def result_line(capsys, *args, **kw) -> tuple[object, str]:
    """``check_result(*args)`` and its one line (no "..")."""
    ok = checks.check_result(*args, **kw)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith(f"{'✓' if ok else '✗'} {args[0]}: ") and ".." not in out, out
    return ok, out


def test_check_result_is_public_but_not_one_of_the_six():
    assert "check_result" in checks.__all__ and checks.GENERIC_CHECKS == ("check_result",)
    assert "check_result" not in checks.CHECKS and "GENERIC_CHECKS" in checks.__all__


@pytest.mark.parametrize("fn, args, expected, shown", [
    (lambda x: x * 2, (np.arange(4),), np.arange(4) * 2, "[0, 2, 4, 6]"),
    (lambda x: x + 0.2, (0.1,), 0.3, "0.3"),  # 0.30000000000000004
    (lambda p, q: p <= q, (np.array([0.01, 0.2]), 0.05), np.array([True, False]), "[True, False]"),
    (lambda n: n // 2, (7,), 3, "3"),
    (lambda x: torch.tensor([1.0, 2.0]) * x, (2.0,), torch.tensor([2.0, 4.0]), "[2, 4]"),
    (lambda x: np.full((10, 10), x), (0.5,), np.full((10, 10), 0.5), "an ndarray of shape (10, 10)"),
    (lambda: "ratio", (), "ratio", "a str 'ratio'"),
], ids=["int array", "float within tolerance", "bool mask", "int", "tensor", "large array", "str"])
def test_check_result_passes_on_equal_values(fn, args, expected, shown, capsys):
    ok, out = result_line(capsys, "exercise_1", fn, args, expected)
    assert ok is True and out == f"✓ exercise_1: matches the library ({shown})\n"


def stub(*args):
    raise NotImplementedError


@pytest.mark.parametrize("fn, expected, hint", [
    (stub, 1.0, "not implemented yet: replace the `raise NotImplementedError` stub with your code"),
    (lambda x: x["key"], 1.0, "your function raised IndexError: only integers"),
    (lambda x: None, 1.0, "returns None: did you forget `return`?"),
    (lambda x: x.reshape(3, 1), np.ones(3), "returns an ndarray of shape (3, 1), expected an ndarray of shape (3,)"),
    (lambda x: x.mean(), np.ones(3), "returns a float64 1.0, expected an ndarray of shape (3,)"),
    (lambda x: x, 2.0, "returns an ndarray of shape (3,), expected a float"),
    (lambda x: torch.tensor(1.0), 1.0, "returns a Tensor tensor(1.), expected a float"),
    (lambda x: x > 0, np.array([1, 1, 1]), "returns an ndarray of shape (3,), expected an ndarray of shape (3,)"),
    (lambda x: x.sum(), 3.0 + 1e-6, "differs from the library: expected 3.000001, got 3"),
    (lambda x: int(x.sum()) + 1, 3, "differs from the library: expected 3, got 4"),
    (lambda x: 3.0 + 1e-11, 3, "differs from the library: expected 3, got 3.00000000001"),
    (lambda x: x * [1, 2, 1], np.ones(3), "differs from the library: expected [1] = 1, got [1] = 2 (first of 1 "
                                          "differing entries of 3, shape (3,))"),
    (lambda x: "mean", "max", "differs from the library: expected a str 'max', got a str 'mean'"),
], ids=["stub", "raises", "None", "shape", "scalar for array", "array for scalar", "tensor for float",
        "bool for int", "float off", "int off", "int not exact", "array entry", "str"])
def test_check_result_fails_with_a_hint(fn, expected, hint, capsys):
    ok, out = result_line(capsys, "exercise_2", fn, (np.ones(3),), expected)
    assert ok is False and out.startswith(f"✗ exercise_2: {hint}"), out


def test_check_result_tolerances_are_arguments(capsys):
    assert result_line(capsys, "e", lambda: 1.001, (), 1.0, rtol=1e-2)[0] is True
    assert result_line(capsys, "e", lambda: 1e-10, (), 0.0, atol=1e-9)[0] is True
    assert result_line(capsys, "e", lambda: 1e-10, (), 0.0)[0] is False


class Hostile:
    def __eq__(self, other):
        raise ValueError("no comparing me")

    def __repr__(self):
        raise ValueError("no showing me")

    def __array__(self, *args, **kwargs):
        raise ValueError("no arrays either")


@pytest.mark.parametrize("fn", [lambda x: Hostile(), lambda x: {}, lambda x: [1, [2, 3]], lambda x: x.sort(),
                                lambda x: x.tolist().index(99)],
                         ids=["hostile", "dict", "ragged", "in-place sort", "raises"])
@pytest.mark.parametrize("expected", [0.5, np.array([1.0, 2.0, 3.0]), "text"])
def test_check_result_never_raises_because_of_fn(fn, expected, capsys):
    data = np.array([3.0, 1.0, 2.0])
    ok, _ = result_line(capsys, "exercise_3", fn, (data,), expected)
    assert ok is False and list(data) == [3.0, 1.0, 2.0]  # fn got a copy


@pytest.mark.parametrize("name, fn, args", [(None, len, ((),)), ("e", 42, ()), ("e", len, np.ones(2))],
                         ids=["name", "fn", "args"])
def test_check_result_refuses_bad_arguments(name, fn, args):
    with pytest.raises(TypeError, match="check_result needs"):
        checks.check_result(name, fn, args, 1)


def test_check_result_takes_the_arguments_as_a_list_too(capsys):
    assert result_line(capsys, "e", len, [[1, 2]], 2)[0] is True
