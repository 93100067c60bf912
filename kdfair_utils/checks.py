"""Self-checks for the notebook exercises: ``checks.check_kd_loss(my_kd_loss)`` and five more
(:data:`CHECKS`), and :func:`check_result` (listed in :data:`GENERIC_CHECKS`, not in ``CHECKS``)
for an exercise without a dedicated check: one call of the student's function against the
library's value.

Each check runs the student's function and the package's reference implementation on the same
fixed list of seeded random and edge-case inputs and prints exactly one line:

* ``✓ check_NAME: passed (N cases)`` and returns ``True``, or
* ``✗ check_NAME: HINT. Failing case i/N: INPUTS; expected X, got Y`` and returns ``False``
  (it stops at the first failing case).

Every line any check prints starts with ``✓ `` or ``✗ ``, the check's name and a colon, and never
contains "..".

Conventions:

* Deterministic and fast: the same inputs at every call (fixed seeds), well under a second.
* The student's function gets fresh copies of the inputs; identity is kept within one run (the
  KD check passes the *same* teacher-logit object at two temperatures, to catch cached targets).
  A function that changes an input in place fails with a hint saying so.
* A check never raises because of the student's function: ``NotImplementedError`` (the
  exercise stub) gives "not implemented yet", any other exception its type and message, ``None``
  "did you forget `return`?", and a result of the wrong type or shape a hint on what to return.
  Warnings are silenced while the checks run. Only a bad argument to the check itself raises
  (``TypeError``: ``fn`` not callable).
* Diagnosis: when a result differs from the reference (``np.isclose``, rtol 1e-5, atol 1e-8),
  the check also runs the student's function on the remaining cases and names the first typical
  mistake that reproduces it on *every* case where both give a value (cases where the student's
  function raises or returns something unreadable or non-finite are skipped), the failing case
  included; else the hint is "differs from the reference". One case alone is not enough: integer
  results (the Welch count) coincide. A mistake of one case only (the cached teacher targets, the
  constant class of the Welch count) needs to match on that case. The cases are chosen so that
  every listed mistake differs from the reference, and from the mistakes before it, somewhere.

The checks, their signatures and references:

* :func:`check_kd_loss` — ``fn(student_logits, teacher_logits, targets, temperature, alpha)``
  → scalar differentiable tensor (float64 inputs; value *and* gradient w.r.t. the student logits
  are compared) vs :func:`kdfair_utils.distill.kd_loss`.
* :func:`check_welch_count` — ``fn(acc_a, overall_a, acc_b, overall_b, significance)`` → int
  vs ``class_bias_from_accuracy(...).counts.raw``. The package's convention: a class constant
  within both populations at different values (Welch's t undefined, infinite) is not counted,
  where scipy's p = 0 would count it.
* :func:`check_bh` — ``fn(p_values, q)`` → boolean mask in input order vs
  ``kdfair_utils.stats.benjamini_hochberg(p) <= q``.
* :func:`check_dpd` / :func:`check_eod` — ``fn(y_true, y_pred, groups)`` → float (0/1 labels,
  any number of int or string groups) vs :mod:`kdfair_utils.group_fairness`.
* :func:`check_lipschitz` — ``fn(probs, probs_pair, x, x_pair)`` → float (TV over RMS-L2 of the
  flattened inputs, mean over pairs) vs :func:`kdfair_utils.individual_fairness.lipschitz_ratio`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from scipy import stats as sps
from torch.nn import functional as F

from .class_bias import class_bias_from_accuracy
from .distill import distillation_term, kd_loss
from .group_fairness import demographic_parity_difference, equalized_odds_difference
from .individual_fairness import input_distance, lipschitz_ratio, output_distance, softmax
from .stats import adjust_pvalues, benjamini_hochberg, holm

__all__ = ["PASSED", "FAILED", "CHECKS", "GENERIC_CHECKS", "check_kd_loss", "check_welch_count", "check_bh",
           "check_dpd", "check_eod", "check_lipschitz", "check_result"]

PASSED = "✓"
FAILED = "✗"
RTOL, ATOL = 1e-5, 1e-8
DIFFERS = "differs from the reference"
NOT_IMPLEMENTED = "not implemented yet: replace the `raise NotImplementedError` stub with your code"
RETURNS_NONE = "returns None: did you forget `return`?"

Fn = Callable[..., Any]
Mistake = tuple[str, Fn]  # (hint, a wrong implementation with the check's signature)


class _Wrong(Exception):
    """A result of the wrong type or shape; the message is the hint."""


@dataclass(frozen=True)
class _Case:
    label: str                          # the inputs in a few words
    inputs: tuple                       # never passed to anyone: every call gets copies
    mistakes: tuple[Mistake, ...] = ()  # mistakes of this case only, tried before the check's own
    fallback: str = DIFFERS             # the hint when no mistake matches
    error_note: str = ""                # appended to the hint when the student's function raises


@dataclass(frozen=True)
class _Spec:
    name: str
    arg_names: tuple[str, ...]
    reference: Fn
    mistakes: tuple[Mistake, ...]
    cases: Callable[[], list[_Case]]
    read: Callable[[Any, tuple], np.ndarray]  # (result, its args) → comparable array, or raise _Wrong
    show: Callable[[np.ndarray], str] = lambda v: f"{v.item():.6g}"
    nonfinite: str = "returns NaN or inf where the reference is finite"


# ----------------------------------------------------------------------------- the runner
def _run(spec: _Spec, fn: Fn) -> bool:
    """Run ``fn`` on every case of ``spec``; print one line; True when all match the reference."""
    if not callable(fn):
        raise TypeError(f"check_{spec.name} needs your function, got {type(fn).__name__}")
    with _quiet():
        cases = spec.cases()
        memo: dict = {}  # the student's copies keep the inputs' identity across cases
        values: list[np.ndarray | None] = []  # the student's readable results so far
        for i, case in enumerate(cases):
            expected = _evaluate(spec, spec.reference, case)
            hint, got, value = _judge(spec, fn, case, expected, memo)
            if hint is None:  # a readable value that differs: which mistake gives it on every case?
                values += [value] + [_student_value(spec, fn, later, memo) for later in cases[i + 1:]]
                hint = _diagnose(spec, cases, i, values)
            if hint:
                _say(FAILED, f"check_{spec.name}", f"{_sentence(hint)} Failing case {i + 1}/{len(cases)}: "
                     f"{case.label}; expected {spec.show(expected)}, got {got}")
                return False
            values.append(value)
    _say(PASSED, f"check_{spec.name}", f"passed ({len(cases)} cases)")
    return True


def _quiet() -> contextlib.ExitStack:
    """While a check runs: warnings and numpy floating-point messages silenced, and torch on one
    thread (the inputs are tiny; a thread pool on a busy machine makes each op milliseconds)."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    stack.enter_context(np.errstate(all="ignore"))
    warnings.simplefilter("ignore")
    stack.callback(torch.set_num_threads, torch.get_num_threads())
    torch.set_num_threads(1)
    return stack


def _say(mark: str, name: str, text: str) -> None:
    """Print the check's one line ``MARK NAME: TEXT``: whitespace (newlines too) collapsed, and in
    ``TEXT`` every run of periods (a student's message ending in one, a truncation) becomes "…"."""
    print(" ".join(f"{mark} {name}:".split()), re.sub(r"\.{2,}", "…", " ".join(text.split())))


def _sentence(hint: str) -> str:
    """``hint`` ended as a sentence: a period added unless it ends in . ? ! or …."""
    return hint if hint.endswith((".", "?", "!", "…")) else hint + "."


def _evaluate(spec: _Spec, func: Fn, case: _Case) -> np.ndarray:
    args = copy.deepcopy(case.inputs)
    return spec.read(func(*args), args)


def _call(fn: Fn, args: tuple) -> tuple[Any, str, str]:
    """``(fn(*args), "", "")`` or, when it raises, ``(None, hint, the exception's type)``: the student's
    error is the report."""
    try:
        return fn(*args), "", ""
    except NotImplementedError:
        return None, NOT_IMPLEMENTED, "NotImplementedError"
    except Exception as e:  # noqa: BLE001
        return None, f"your function raised {type(e).__name__}: {_oneline(e)}", type(e).__name__


def _judge(spec: _Spec, fn: Fn, case: _Case, expected: np.ndarray,
           memo: dict) -> tuple[str | None, str, np.ndarray | None]:
    """(hint, what the student's function gave, its readable value): hint "" when the result matches,
    None when it is readable but differs (for :func:`_diagnose`)."""
    args = copy.deepcopy(case.inputs, memo)
    result, error, raised = _call(fn, args)
    if error:
        return error + (case.error_note if raised != "NotImplementedError" else ""), raised, None
    if result is None:
        return RETURNS_NONE, "None", None
    changed = [n for n, a, b in zip(spec.arg_names, args, case.inputs) if not _same(a, b)]
    if changed:
        return (f"changes its input `{changed[0]}` in place (e.g. x.sort(), x /= T): work on a copy",
                _brief(result), None)
    try:
        got = spec.read(result, args)
    except _Wrong as w:
        return str(w), _brief(result), None
    except Exception as e:  # noqa: BLE001
        return (f"returns {_brief(result)}, which cannot be read ({type(e).__name__}: {_oneline(e)})",
                _brief(result), None)
    if _close(got, expected):
        return "", "", got
    if np.isfinite(expected).all() and not np.isfinite(got).all():
        return spec.nonfinite, spec.show(got), got
    return None, spec.show(got), got


def _student_value(spec: _Spec, fn: Fn, case: _Case, memo: dict) -> np.ndarray | None:
    """The student's readable value on ``case``, None where it raises or returns something unreadable."""
    args = copy.deepcopy(case.inputs, memo)
    result, error, _ = _call(fn, args)
    try:
        return None if error or result is None else spec.read(result, args)
    except Exception:  # noqa: BLE001 - _Wrong or worse: skipped for matching
        return None


def _diagnose(spec: _Spec, cases: list[_Case], failing: int, values: list[np.ndarray | None]) -> str:
    """The hint of the first typical mistake that reproduces the student's function, else the fallback.

    A mistake of the failing case only (``_Case.mistakes``: the cached teacher targets, the constant
    class) needs to give the student's value on that case. A mistake of the check (``_Spec.mistakes``)
    must give it on the failing case *and* on every other case where both are defined (the student's
    function neither raised nor returned something unreadable or non-finite, e.g. a NaN gradient on
    huge logits; the mistake did not raise): with integer results, one case alone matches by
    coincidence."""
    case = cases[failing]
    for hint, wrong in case.mistakes:
        if _gives(spec, wrong, case, values[failing]):
            return hint
    for hint, wrong in spec.mistakes:
        if _gives(spec, wrong, case, values[failing]) and all(
                _gives(spec, wrong, other, value) is not False
                for j, (other, value) in enumerate(zip(cases, values))
                if j != failing and value is not None and np.isfinite(value).all()):
            return hint
    return case.fallback


def _gives(spec: _Spec, wrong: Fn, case: _Case, value: np.ndarray) -> bool | None:
    """Does the mistake ``wrong`` give ``value`` on ``case``? None when it is undefined there (raises,
    e.g. a paired test on 4 vs 6 models)."""
    try:
        return _close(_evaluate(spec, wrong, case), value)
    except Exception:  # noqa: BLE001
        return None


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True))


def _same(a: Any, b: Any) -> bool:
    """Is the student's copy ``a`` still equal to the original ``b``?"""
    if isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.equal(a.detach(), b.detach())
    if isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and a.shape == b.shape and np.array_equal(a, b)
    return True  # numbers are immutable


def _oneline(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:199] + "…"


def _a(kind: str) -> str:
    """``a float``, ``an int``, ``an ndarray``."""
    return f"{'an' if kind[:1].lower() in 'aeiou' or kind.startswith('nd') else 'a'} {kind}"


def _brief(x: Any) -> str:
    """``a float 0.25``, ``an ndarray of shape (3,)``: what a result is, in a few words."""
    kind = _a(type(x).__name__)
    if x is None:
        return "None"
    try:
        if hasattr(x, "shape") and np.ndim(x) > 0:
            return f"{kind} of shape {tuple(x.shape)}"
        text = " ".join(repr(x.item() if isinstance(x, np.generic) else x).split())
    except Exception:  # noqa: BLE001 - a result that cannot even be shown
        return kind
    return f"{kind} {text if len(text) <= 60 else text[:59] + '…'}"


# ----------------------------------------------------------------------------- result readers
_DIFFERENTIABLE = "keep it a differentiable torch tensor (no .item(), .detach() or numpy)"


def _read_loss(loss: Any, args: tuple) -> np.ndarray:
    """Loss value and its gradient w.r.t. the student logits (``args[0]``), flattened."""
    student = args[0]
    if not isinstance(loss, torch.Tensor):
        raise _Wrong(f"returns {_brief(loss)}: {_DIFFERENTIABLE}")
    if loss.ndim != 0:
        b, c = student.shape
        what = {(b,): "average over the batch", (b, c): "sum over the classes and average over the batch"}
        raise _Wrong(f"returns shape {tuple(loss.shape)}: {what.get(tuple(loss.shape), 'return a scalar loss')}")
    grad = torch.autograd.grad(loss, student, allow_unused=True)[0] if loss.requires_grad else None
    if grad is None:
        raise _Wrong(f"returns a tensor with no gradient w.r.t. student_logits: {_DIFFERENTIABLE}")
    return np.concatenate([[loss.item()], grad.detach().double().cpu().numpy().ravel()])


def _read_count(count: Any, args: tuple) -> np.ndarray:
    if isinstance(count, (bool, np.bool_)) or np.ndim(count) != 0 or not float(count).is_integer():
        raise _Wrong(f"returns {_brief(count)}: return the number of significant classes (an int)")
    return np.array([float(count)])


def _read_mask(mask: Any, args: tuple) -> np.ndarray:
    arr, p = np.asarray(mask), args[0]
    if arr.dtype.kind not in "biuf":
        raise _Wrong(f"returns {_brief(mask)}: return a boolean mask, one entry per p-value")
    if arr.ndim == 0:
        raise _Wrong(f"returns one number ({_brief(mask)}), a count?: return a boolean mask, one entry per p-value")
    if arr.shape != p.shape:
        raise _Wrong(f"returns shape {arr.shape}: return a boolean mask shaped like p_values {p.shape}")
    if arr.dtype.kind == "f":
        raise _Wrong("returns floats, the adjusted p-values?: return a boolean mask of the rejected hypotheses")
    if arr.dtype != bool:
        raise _Wrong(f"returns dtype {arr.dtype}: return a boolean mask (dtype bool)")
    return arr.astype(float)


def _read_float(value: Any, args: tuple, *, what: str) -> np.ndarray:
    if isinstance(value, (bool, np.bool_)) or np.ndim(value) != 0:
        raise _Wrong(f"returns {_brief(value)}: return a single float ({what})")
    return np.array([float(value)])


# ----------------------------------------------------------------------------- 1. KD loss
_STABLE = "numerically unstable on large logits: use F.log_softmax, never torch.log(F.softmax(x)) or a bare exp"
_CACHED = "softened teacher targets were cached/reused across calls: recompute them at each call's temperature"


def _kd_variant(soft: Callable[..., torch.Tensor], hard_at_t: bool = False) -> Fn:
    """A wrong loss: α·soft(s, t, T) + (1 − α)·CE, the CE on student/T when ``hard_at_t``."""
    return lambda s, t, y, T, a: a * soft(s, t, T) + (1 - a) * F.cross_entropy(s / T if hard_at_t else s, y)


def _reverse_kl(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    log_s, log_t = F.log_softmax(s / T, dim=-1), F.log_softmax(t / T, dim=-1)
    return T**2 * F.kl_div(log_t, log_s, reduction="batchmean", log_target=True)


def _soft_cross_entropy(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """T²·H(teacher, student) = the distillation term + T²·(the teacher's entropy)."""
    log_p_t = F.log_softmax(t / T, dim=-1)
    return distillation_term(s, t, T) - T**2 * (log_p_t.exp() * log_p_t).sum(-1).mean()


_KD_MISTAKES: tuple[Mistake, ...] = (
    ("the distillation term is not multiplied by T² (multiply the KL by temperature**2)",
     lambda s, t, y, T, a: kd_loss(s, t, y, T, a, t2_scaling=False)),
    ("the distillation term is multiplied by T instead of T²",
     _kd_variant(lambda s, t, T: distillation_term(s, t, T) / T)),
    ('the KL uses reduction="mean", which also divides by the number of classes: use reduction="batchmean"',
     _kd_variant(lambda s, t, T: distillation_term(s, t, T) / s.shape[1])),
    ("the KL is summed over the batch: average it over the batch (reduction=\"batchmean\")",
     _kd_variant(lambda s, t, T: distillation_term(s, t, T) * s.shape[0])),
    ("both terms are summed over the batch: average over the batch, don't sum (the KL with "
     "reduction=\"batchmean\", the cross-entropy with its default reduction=\"mean\")",
     lambda s, t, y, T, a: kd_loss(s, t, y, T, a) * s.shape[0]),
    ("uses the cross-entropy with the soft targets instead of the KL divergence: they differ by the teacher's "
     "entropy (same gradient, different value)", _kd_variant(_soft_cross_entropy)),
    ("the temperature is used as an integer (int(T), round(T) or //): T can be any positive number (e.g. 2.5)",
     lambda s, t, y, T, a: kd_loss(s, t, y, int(T), a)),
    ("alpha and 1 − alpha are swapped: alpha weights the distillation (KL) term, 1 − alpha the cross-entropy",
     lambda s, t, y, T, a: kd_loss(s, t, y, T, 1 - a)),
    ("the KL direction is reversed: use KL(teacher ‖ student), i.e. F.kl_div(log p_student, p_teacher)",
     _kd_variant(_reverse_kl)),
    ("the cross-entropy uses the softened logits student/T: use the raw student logits (T = 1)",
     _kd_variant(distillation_term, hard_at_t=True)),
    ("the teacher's logits are not divided by T before the softmax",
     _kd_variant(lambda s, t, T: distillation_term(s, t * T, T))),
    ("the student's logits are not divided by T before the log-softmax",
     _kd_variant(lambda s, t, T: distillation_term(s * T, t, T))),
)


def _kd_cases() -> list[_Case]:
    gen = torch.Generator().manual_seed(0)

    def case(b: int, c: int, T: float, alpha: float, scale: float = 3.0, teacher: Any = None, **kw: Any) -> _Case:
        s = torch.randn(b, c, generator=gen, dtype=torch.float64) * scale
        t = torch.randn(b, c, generator=gen, dtype=torch.float64) * scale if teacher is None else teacher
        y = torch.randint(0, c, (b,), generator=gen)
        label = f"batch {b}, {c} classes, logits ~ ±{scale:g}, T={T:g}, alpha={alpha:g}" + kw.pop("note", "")
        return _Case(label, (s.requires_grad_(), t, y, float(T), float(alpha)), **kw)

    first = case(8, 5, 2, 0.8)
    cached = (_CACHED, _kd_variant(lambda s, t, T: distillation_term(s, t * T / 2, T)))  # teacher softened at T=2
    return [first,
            case(8, 5, 4, 0.8, teacher=first.inputs[1], mistakes=(cached,), note=", the same teacher_logits as case 1"),
            case(1, 3, 4, 0.5),
            case(5, 4, 2.5, 0.7),
            case(16, 10, 10, 0.0),
            case(6, 4, 1, 1.0),
            case(4, 6, 1, 0.8, scale=1000.0, fallback=_STABLE)]


_KD = _Spec("kd_loss", ("student_logits", "teacher_logits", "targets", "temperature", "alpha"), kd_loss,
            _KD_MISTAKES, _kd_cases, _read_loss,
            show=lambda v: f"loss {v[0]:.6g} (gradient norm {np.linalg.norm(v[1:]):.4g})",
            nonfinite=f"returns NaN or inf: {_STABLE}")


def check_kd_loss(fn: Fn) -> bool:
    """Check ``fn(student_logits, teacher_logits, targets, temperature, alpha)`` → scalar loss
    tensor against :func:`kdfair_utils.distill.kd_loss`: α·T²·KL(softmax(teacher/T) ‖
    softmax(student/T)) (batch-mean) + (1 − α)·CE(student, targets), value and gradient."""
    return _run(_KD, fn)


# ----------------------------------------------------------------------------- 2. Welch count
def _welch_result(acc_a: np.ndarray, ov_a: np.ndarray, acc_b: np.ndarray, ov_b: np.ndarray,
                  significance: float, normalization: str = "ratio") -> Any:
    return class_bias_from_accuracy(acc_a, ov_a, acc_b, ov_b, significance=significance, normalization=normalization)


def _welch_count(acc_a: np.ndarray, ov_a: np.ndarray, acc_b: np.ndarray, ov_b: np.ndarray,
                 significance: float) -> int:
    return _welch_result(acc_a, ov_a, acc_b, ov_b, significance).counts.raw


def _adjusted(method: str, identical: float) -> Fn:
    """Count of the classes with ``method``-adjusted p < significance ("" for raw p >= significance),
    a class constant and identical in both populations having p = ``identical`` (the package: 1; the
    notebook's hand-written p-values: NaN, left out)."""
    def count(*a: Any) -> int:
        result = _welch_result(*a)
        p = np.where(result.table["status"] == "identical_constant", identical, result.table["p"].to_numpy(float))
        return int(np.sum(adjust_pvalues(p, method) < a[-1])) if method else int(np.sum(p >= a[-1]))
    return count


def _per_class(test: Fn, *, divide: bool = True, constant: bool = True) -> Fn:
    """Count of the classes with ``test(xa, xb)`` p < significance, xa = acc / overall (acc − overall
    when not ``divide``); with ``constant=False`` a class constant in both populations is left out
    (p = NaN, as the notebook does), else it gets whatever ``test`` gives it."""
    def count(acc_a: np.ndarray, ov_a: np.ndarray, acc_b: np.ndarray, ov_b: np.ndarray, significance: float) -> int:
        xa, xb = (acc_a / ov_a[:, None], acc_b / ov_b[:, None]) if divide else (acc_a - ov_a[:, None],
                                                                              acc_b - ov_b[:, None])
        p = np.asarray(test(xa, xb), dtype=float)
        if not constant:
            p = np.where((np.ptp(xa, axis=0) == 0) & (np.ptp(xb, axis=0) == 0), np.nan, p)
        return int(np.sum(p < significance))
    return count


def _either(hint: str, *wrongs: Fn) -> tuple[Mistake, ...]:
    """One mistake written several ways (e.g. with and without the notebook's constant-class rule)."""
    return tuple((hint, wrong) for wrong in wrongs)


def _welch_ddof0(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """A hand-written Welch test with np.var's default ddof=0."""
    va, vb = xa.var(axis=0) / len(xa), xb.var(axis=0) / len(xb)
    df = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1))
    return 2 * sps.t.sf(np.abs(xa.mean(0) - xb.mean(0)) / np.sqrt(va + vb), df)


def _variants(test: Fn) -> tuple[Fn, Fn]:
    return _per_class(test), _per_class(test, constant=False)


_WELCH_TEST = "the paper's test is Welch's unpaired t-test, scipy.stats.ttest_ind(xa, xb, equal_var=False)"
_WELCH_MISTAKES: tuple[Mistake, ...] = (
    ("no normalisation: divide each model's class accuracies by its overall accuracy (acc / overall[:, None])",
     lambda aa, oa, ab, ob, s: _welch_count(aa, np.ones_like(oa), ab, np.ones_like(ob), s)),
    *_either("normalises by subtraction (acc − overall): the paper divides each model's class accuracies by its "
             "overall accuracy (acc / overall[:, None])",
             _per_class(lambda xa, xb: sps.ttest_ind(xa, xb, equal_var=False).pvalue, divide=False),
             lambda *a: _welch_result(*a, normalization="difference").counts.raw),
    *_either("Student's t-test (equal_var=True): use Welch's unequal-variance test (equal_var=False)",
             *_variants(lambda xa, xb: sps.ttest_ind(xa, xb, equal_var=True).pvalue)),
    ("sample variances with ddof=0 (np.var's default): Welch's test uses the unbiased variances, "
     "np.var(x, axis=0, ddof=1)", _per_class(_welch_ddof0)),
    ("tests along the wrong axis (one test per model): test each class across the models (axis=0)",
     _per_class(lambda xa, xb: sps.ttest_ind(xa, xb, axis=1, equal_var=False).pvalue)),
    *_either(f"paired test (ttest_rel): {_WELCH_TEST}; a paired test pairs the models by their position, "
             "which is not the paper's #SC/#TC count", *_variants(lambda xa, xb: sps.ttest_rel(xa, xb).pvalue)),
    *_either(f"a rank test (Mann–Whitney U): {_WELCH_TEST}",
             *_variants(lambda xa, xb: sps.mannwhitneyu(xa, xb, axis=0).pvalue)),
    *_either("counts BH-corrected p-values: #SC/#TC count raw p < significance, no correction",
             _adjusted("bh", 1.0), _adjusted("bh", np.nan)),
    *_either("counts Holm-corrected p-values: #SC/#TC count raw p < significance, no correction",
             _adjusted("holm", 1.0), _adjusted("holm", np.nan)),
    *_either("counts p >= significance: count the classes with p < significance",
             _adjusted("", 1.0), _adjusted("", np.nan)),
    ("ignores the significance argument (uses 0.05)", lambda aa, oa, ab, ob, s: _welch_count(aa, oa, ab, ob, 0.05)),
)

_CONSTANT = ("counts a class that is constant within both populations at different values: Welch's t is "
             "undefined there (infinite), and the package's convention is not to count such a class "
             "(scipy's p = 0 would count it)",
             lambda *a: _welch_count(*a) + _welch_result(*a).degenerate["constant_different"])


def _welch_case(seed: int, n_a: int, n_b: int, c: int, significance: float, degenerate: bool = False) -> _Case:
    """Two populations with true effects in ~30 % of the classes and unequal variances."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.5, 0.95, c)
    effect = np.where(rng.random(c) < 0.3, rng.normal(0, 0.08, c), 0.0)
    noise_a = rng.uniform(0.01, 0.05, c)
    noise_b = noise_a * rng.choice([0.3, 1.0, 4.0], c)
    ov_a, ov_b = rng.uniform(0.7, 0.85, n_a), rng.uniform(0.6, 0.8, n_b)
    acc_a = np.clip(ov_a[:, None] * (base + noise_a * rng.normal(size=(n_a, c))), 0, 1)
    acc_b = np.clip(ov_b[:, None] * (base + effect + noise_b * rng.normal(size=(n_b, c))), 0, 1)
    label = f"{n_a} vs {n_b} models, {c} classes, significance {significance:g}"
    if degenerate:  # class 0: normalised 1.0 vs 0.5 exactly in every model; class 1: 0 everywhere
        acc_a[:, 0], acc_b[:, 0], acc_a[:, 1], acc_b[:, 1] = ov_a, ov_b * 0.5, 0.0, 0.0
        label += "; class 0 constant within each population (1.0 vs 0.5), class 1 always 0"
    return _Case(label, (acc_a, ov_a, acc_b, ov_b, significance), mistakes=(_CONSTANT,) if degenerate else ())


_WELCH = _Spec("welch_count", ("acc_a", "overall_a", "acc_b", "overall_b", "significance"), _welch_count,
               _WELCH_MISTAKES, lambda: [_welch_case(4, 5, 5, 100, 0.05), _welch_case(2, 5, 5, 40, 0.05, True),
                                         _welch_case(3, 4, 6, 60, 0.05), _welch_case(1, 5, 5, 30, 0.01),
                                         _welch_case(6, 3, 8, 80, 0.05), _welch_case(8, 6, 6, 80, 0.05)],
               _read_count, show=lambda v: str(int(v.item())))


def check_welch_count(fn: Fn) -> bool:
    """Check ``fn(acc_a, overall_a, acc_b, overall_b, significance)`` → int, the paper's #SC/#TC:
    classes whose ratio-normalised accuracy differs (Welch, raw p < significance), against
    :func:`kdfair_utils.class_bias.class_bias_from_accuracy` (``.counts.raw``)."""
    return _run(_WELCH, fn)


# ----------------------------------------------------------------------------- 3. Benjamini–Hochberg
def _bh_reference(p: np.ndarray, q: float) -> np.ndarray:
    return benjamini_hochberg(p) <= q


def _bh_step(p: np.ndarray, q: float, *, rule: str = "up", first_rank: int = 1) -> np.ndarray:
    """A hand-written BH with a mistake: ``rule`` "down" stops at the first failure, "each" compares
    each p-value with its own threshold; or ranks from ``first_rank``."""
    m, order = len(p), np.argsort(p)
    below = p[order] <= q * np.arange(first_rank, first_rank + m) / m
    if rule == "each":
        k_mask = below
    else:
        k = (m if below.all() else int(np.argmin(below))) if rule == "down" else (
            int(np.flatnonzero(below).max()) + 1 if below.any() else 0)
        k_mask = np.arange(m) < k
    mask = np.zeros(m, dtype=bool)
    mask[order] = k_mask
    return mask


_BH_MISTAKES: tuple[Mistake, ...] = (
    ("Bonferroni (p <= q/m): BH compares the i-th smallest p-value with i·q/m", lambda p, q: p <= q / len(p)),
    ("no correction (p <= q): compare the i-th smallest p-value with i·q/m", lambda p, q: p <= q),
    ("stops at the first p_(i) > i·q/m (step-down): BH is step-up, reject all up to the LARGEST i with "
     "p_(i) <= i·q/m", functools.partial(_bh_step, rule="down")),
    ("compares each p-value with its own threshold only: BH rejects every p-value up to the largest rank k that "
     "passes, even ones above their own threshold (step-up)", functools.partial(_bh_step, rule="each")),
    ("the mask is in sorted order: return it in the input order (mask[order] = rejected)",
     lambda p, q: _bh_reference(p, q)[np.argsort(p)]),
    ("ranks start at 0: the i-th smallest p-value has rank i = 1 to m (threshold i·q/m)",
     functools.partial(_bh_step, first_rank=0)),
    ("Holm's step-down thresholds q/(m − i + 1): BH uses i·q/m", lambda p, q: holm(p) <= q),
)


def _bh_cases() -> list[_Case]:
    rng = np.random.default_rng(5)
    steps = np.array([0.004, 0.0105, 0.025, 0.043, 0.046, 0.049, 0.065, 0.09, 0.3, 0.7])
    mixed = np.concatenate([rng.uniform(0, 0.004, 8), rng.uniform(0, 1, 22)])
    ties = np.array([0.04, 0.01, 0.5, 0.01, 0.03, 0.04, 0.2, 0.01])
    return [_Case("10 unsorted p-values, q=0.1, one in the middle above its threshold i·q/m",
                  (steps[[9, 3, 0, 7, 5, 1, 8, 4, 2, 6]], 0.1)),
            _Case("30 unsorted p-values (8 below 0.004), q=0.05", (rng.permutation(mixed), 0.05)),
            _Case("8 p-values with ties (0.01 three times), q=0.05", (ties, 0.05)),
            _Case("a single p-value 0.03, q=0.05", (np.array([0.03]), 0.05)),
            _Case("15 null p-values (all above 0.2), q=0.05", (rng.uniform(0.2, 1, 15), 0.05))]


_BH = _Spec("bh", ("p_values", "q"), _bh_reference, _BH_MISTAKES, _bh_cases, _read_mask,
            show=lambda v: "mask " + "".join("1" if b else "0" for b in v) + f" ({int(v.sum())} rejected)")


def check_bh(fn: Fn) -> bool:
    """Check ``fn(p_values, q)`` → boolean mask (input order) of the hypotheses Benjamini–Hochberg
    rejects at FDR level q, against ``kdfair_utils.stats.benjamini_hochberg(p) <= q``."""
    return _run(_BH, fn)


# ----------------------------------------------------------------------------- 4./5. DPD and EOD
_FIRST_TWO = "uses only the first two groups: take max − min over all groups"
_PERCENT = "returns a percentage: return a fraction (the lessons print DPD/EOD ×100, the functions return 0 to 1)"


def _dpd(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, **options: Any) -> float:
    return demographic_parity_difference(y_true, y_pred, sensitive_features=groups, **options)


def _eod(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, **options: Any) -> float:
    return equalized_odds_difference(y_true, y_pred, sensitive_features=groups, **options)


def _per_group(stat: Fn, y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray) -> np.ndarray:
    return np.array([stat(y_true[groups == g], y_pred[groups == g]) for g in np.unique(groups)])


def _accuracy_gap(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray) -> float:
    return float(np.ptp(_per_group(lambda t, p: np.mean(t == p), y_true, y_pred, groups)))


def _first_two(metric: Fn) -> Fn:
    def wrong(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray) -> float:
        keep = np.isin(groups, np.unique(groups)[:2])
        return metric(y_true[keep], y_pred[keep], groups[keep])
    return wrong


def _rate_gap(label: int) -> Fn:
    """max − min over groups of P(ŷ = 1 | Y = label, A = a): the TPR (1) or FPR (0) difference."""
    return lambda y_true, y_pred, groups: _dpd(y_true[y_true == label], y_pred[y_true == label],
                                               groups[y_true == label])


_DPD_MISTAKES: tuple[Mistake, ...] = (
    ("uses y_true (base rates): the selection rate P(ŷ = 1 | A = a) comes from y_pred",
     lambda yt, yp, g: _dpd(yt, yt, g)),
    (_FIRST_TWO, _first_two(_dpd)),
    ("returns the ratio min/max of the selection rates: DPD is their difference max − min",
     lambda yt, yp, g: (lambda r: r.min() / r.max())(_per_group(lambda t, p: p.mean(), yt, yp, g))),
    ("reversed conditioning P(A = a | ŷ = 1): use the selection rate P(ŷ = 1 | A = a), the mean of y_pred "
     "within each group", lambda yt, yp, g: float(np.ptp(_per_group(lambda t, p: p.sum(), yt, yp, g) / yp.sum()))),
    ('the largest deviation from the overall selection rate (fairlearn\'s method="to_overall"): take max − min '
     "between groups", functools.partial(_dpd, method="to_overall")),
    ("compares accuracy between groups: DPD compares selection rates P(ŷ = 1 | A = a)", _accuracy_gap),
    (_PERCENT, lambda *a: 100 * _dpd(*a)),
)

_EOD_MISTAKES: tuple[Mistake, ...] = (
    ("uses the TPR difference only (equal opportunity): return the larger of the TPR and FPR differences",
     _rate_gap(1)),
    ("uses the FPR difference only: return the larger of the TPR and FPR differences", _rate_gap(0)),
    ('averages the TPR and FPR differences (agg="mean"): return the larger (worst case)',
     functools.partial(_eod, agg="mean")),
    ("adds the TPR and FPR differences: return the larger of the two",
     lambda yt, yp, g: _rate_gap(1)(yt, yp, g) + _rate_gap(0)(yt, yp, g)),
    ("computes the demographic parity difference: EOD conditions on the true label (TPR = P(ŷ = 1 | Y = 1, A), "
     "FPR = P(ŷ = 1 | Y = 0, A))", _dpd),
    ("compares accuracy between groups: EOD compares TPR and FPR between groups", _accuracy_gap),
    (_FIRST_TWO, _first_two(_eod)),
    (_PERCENT, lambda *a: 100 * _eod(*a)),
)


def _groups_case(seed: int, labels: list, sizes: list[int], base: list[float], tpr: list[float],
                 fpr: list[float]) -> _Case:
    """Binary labels and predictions with exactly the given base rate, TPR and FPR in each group."""
    parts = []
    for g, n, b, tp, fp in zip(labels, sizes, base, tpr, fpr):
        pos = round(b * n)
        hits, alarms = round(tp * pos), round(fp * (n - pos))
        y_true = np.repeat([1, 0], [pos, n - pos])
        y_pred = np.repeat([1, 0, 1, 0], [hits, pos - hits, alarms, n - pos - alarms])
        parts.append((y_true, y_pred, np.full(n, g)))
    order = np.random.default_rng(seed).permutation(sum(sizes))
    y_true, y_pred, groups = (np.concatenate(p)[order] for p in zip(*parts))
    kind = "string" if isinstance(labels[0], str) else "int"
    return _Case(f"{len(labels)} {kind} groups of sizes {'/'.join(map(str, sizes))}", (y_true, y_pred, groups))


def _dpd_cases() -> list[_Case]:
    ten = list(range(10))
    return [_groups_case(0, [0, 1, 2], [40, 25, 15], [0.5, 0.3, 0.6], [0.8, 0.7, 0.9], [0.2, 0.1, 0.4]),
            _groups_case(1, [0, 1], [30, 50], [0.4, 0.6], [0.9, 0.6], [0.3, 0.1]),
            _groups_case(2, [3 * g + 1 for g in ten], [8 + 3 * (g % 4) for g in ten], [0.3 + 0.05 * g for g in ten],
                         [0.9 - 0.04 * g for g in ten], [0.05 + 0.03 * (g % 5) for g in ten]),
            _groups_case(3, ["female", "male", "nonbinary"], [30, 36, 10], [0.5, 0.5, 0.4], [0.7, 0.8, 0.5],
                         [0.2, 0.3, 0.1])]


def _eod_cases() -> list[_Case]:
    return [_groups_case(4, [0, 1, 2], [40, 30, 20], [0.5, 0.4, 0.6], [0.65, 0.75, 0.8], [0.1, 0.3, 0.5]),
            _groups_case(5, ["a", "b", "c"], [30, 40, 20], [0.5, 0.5, 0.6], [0.9, 0.6, 0.5], [0.2, 0.25, 0.3]),
            _groups_case(6, [0, 1], [50, 30], [0.4, 0.6], [0.6, 0.9], [0.1, 0.3]),
            _groups_case(7, [1, 2, 3, 4, 5], [20, 15, 25, 10, 30], [0.4, 0.5, 0.6, 0.5, 0.3],
                         [0.5, 0.6, 0.7, 0.8, 0.9], [0.1, 0.2, 0.3, 0.2, 0.1])]


_GROUP_ARGS = ("y_true", "y_pred", "groups")
_DPD = _Spec("dpd", _GROUP_ARGS, _dpd, _DPD_MISTAKES, _dpd_cases,
             functools.partial(_read_float, what="max − min over the groups"))
_EOD = _Spec("eod", _GROUP_ARGS, _eod, _EOD_MISTAKES, _eod_cases,
             functools.partial(_read_float, what="the larger of the TPR and FPR differences"))


def check_dpd(fn: Fn) -> bool:
    """Check ``fn(y_true, y_pred, groups)`` → float, the demographic parity difference (max − min
    over groups of P(ŷ = 1 | A = a)), against
    :func:`kdfair_utils.group_fairness.demographic_parity_difference`."""
    return _run(_DPD, fn)


def check_eod(fn: Fn) -> bool:
    """Check ``fn(y_true, y_pred, groups)`` → float, the equalized odds difference (the larger of
    the TPR and FPR differences, each max − min over groups), against
    :func:`kdfair_utils.group_fairness.equalized_odds_difference`."""
    return _run(_EOD, fn)


# ----------------------------------------------------------------------------- 6. Lipschitz ratio
def _last_axis(p: np.ndarray, q: np.ndarray, x: np.ndarray, x2: np.ndarray) -> float:
    """Mean of D / d with d the RMS over the last axis only (a per-pair loop gives this)."""
    d = np.sqrt(((x - x2) ** 2).mean(-1))
    return float(np.mean(output_distance(p, q).reshape((-1,) + (1,) * (d.ndim - 1)) / d))


_LIP_MISTAKES: tuple[Mistake, ...] = (
    ("ratio of means (mean D / mean d): take the mean over pairs of the ratios D/d",
     lambda p, q, x, x2: output_distance(p, q).mean() / input_distance(x, x2).mean()),
    ("L1 output distance: the total variation is half of it, ½·Σ|p − p′|",
     functools.partial(lipschitz_ratio, output="l1")),
    ("plain L2 norm of the input difference: d is the RMS distance sqrt(mean((x − x′)²)), i.e. divide by √dim",
     lambda p, q, x, x2: lipschitz_ratio(p, q, x, x2) / np.sqrt(x[0].size)),
    ("L2 output distance: use the total variation ½·Σ|p − p′|", functools.partial(lipschitz_ratio, output="l2")),
    ("squared input distance (missing square root): d = sqrt(mean((x − x′)²))",
     lambda p, q, x, x2: float(np.mean(output_distance(p, q) / input_distance(x, x2) ** 2))),
    ("max over pairs: take the mean over pairs", lambda *a: float(lipschitz_ratio(*a, reduce=False).max())),
    ("distance over the last axis only: flatten each input (x.reshape(len(x), -1)) before taking d", _last_axis),
)


def _pairs_case(seed: int, shape: tuple[int, ...], classes: int) -> _Case:
    """Inputs in [0, 1] with partners at varied distances, and probabilities from nearby logits."""
    rng = np.random.default_rng(seed)
    x = rng.random(shape)
    step = rng.uniform(0.02, 0.3, (shape[0],) + (1,) * (len(shape) - 1))
    x_pair = np.clip(x + step * rng.normal(size=shape), 0, 1)
    logits = rng.normal(0, 2, (shape[0], classes))
    probs, probs_pair = softmax(logits), softmax(logits + rng.normal(0, 1, logits.shape))
    kind = "image" if len(shape) > 2 else "feature"
    note = f" (x has shape {shape}: flatten each input before taking d)" if len(shape) > 2 else ""
    return _Case(f"{shape[0]} {kind} pairs, x of shape {shape}, {classes} classes", (probs, probs_pair, x, x_pair),
                 error_note=note)


_LIP = _Spec("lipschitz", ("probs", "probs_pair", "x", "x_pair"), lipschitz_ratio, _LIP_MISTAKES,
             lambda: [_pairs_case(0, (12, 3, 8, 8), 10), _pairs_case(1, (20, 16), 4), _pairs_case(2, (1, 3, 8, 8), 5),
                      _pairs_case(3, (6, 1, 5, 7), 3)],
             functools.partial(_read_float, what="the mean over pairs"))


def check_lipschitz(fn: Fn) -> bool:
    """Check ``fn(probs, probs_pair, x, x_pair)`` → float, the mean over pairs of TV(p, p′) / RMS(x − x′)
    (inputs flattened), against :func:`kdfair_utils.individual_fairness.lipschitz_ratio`."""
    return _run(_LIP, fn)


CHECKS: dict[str, Callable[[Fn], bool]] = {
    f.__name__: f for f in (check_kd_loss, check_welch_count, check_bh, check_dpd, check_eod, check_lipschitz)}


# ----------------------------------------------------------------------------- the generic check
def check_result(name: str, fn: Fn, args: tuple, expected: Any, *, rtol: float = 1e-9, atol: float = 1e-12) -> bool:
    """Check one call ``fn(*args)`` (array and tensor arguments copied) against ``expected``, the
    library's value, for an exercise without a dedicated check; print one line ``✓ NAME: matches the
    library (VALUE)`` and return True, or ``✗ NAME: HINT`` and return False.

    Numbers, arrays and tensors match when they have the same shape and kind (a tensor for a tensor,
    booleans for booleans) and equal values: exactly for booleans and integers, else
    ``np.allclose(got, expected, rtol, atol)`` (NaN equal to NaN). Anything else matches by ``==``.
    Never raises because of ``fn``; ``TypeError`` when ``name`` is not a str, ``fn`` not callable or
    ``args`` not a tuple (or list)."""
    if not isinstance(name, str):
        raise TypeError(f"check_result needs the exercise's name (a str) first, got {type(name).__name__}")
    if not callable(fn):
        raise TypeError(f"check_result needs your function, got {type(fn).__name__}")
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"check_result needs the arguments as a tuple, e.g. (x,), got {type(args).__name__}")
    with _quiet():
        result, hint, _ = _call(fn, tuple(_copy(a) for a in args))
        if not hint:
            try:
                hint = _compare(result, expected, rtol, atol)
            except Exception as e:  # noqa: BLE001 - a result that cannot even be compared
                hint = f"returns {_brief(result)}, which cannot be compared ({type(e).__name__}: {_oneline(e)})"
    if hint:
        _say(FAILED, name, hint)
        return False
    _say(PASSED, name, f"matches the library ({_short(expected)})")
    return True


def _copy(arg: Any) -> Any:
    if isinstance(arg, np.ndarray):
        return arg.copy()
    if isinstance(arg, torch.Tensor):
        return arg.detach().clone().requires_grad_(arg.requires_grad) if arg.is_leaf else arg.clone()
    return arg


def _numbers(x: Any) -> np.ndarray | None:
    """``x`` as a numeric array (a tensor detached), None when it is not numbers."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if x is None or isinstance(x, (str, bytes, dict, set)):
        return None
    try:
        arr = np.asarray(x)
    except Exception:  # noqa: BLE001 - ragged or exotic
        return None
    return arr if arr.dtype.kind in "biufc" else None


def _compare(result: Any, expected: Any, rtol: float, atol: float) -> str:
    """"" when ``result`` matches ``expected``, else the hint."""
    if result is None and expected is not None:
        return RETURNS_NONE
    want = _numbers(expected)
    if want is None:
        arrays = isinstance(result, np.ndarray) or isinstance(expected, np.ndarray)
        same = np.array_equal(np.asarray(result, dtype=object), np.asarray(expected, dtype=object)) if arrays else (
            result is expected or bool(result == expected))
        return "" if same else _differs(_short(expected), _short(result), expected, result)
    got = _numbers(result)
    if (got is None or got.shape != want.shape or isinstance(result, torch.Tensor) != isinstance(expected, torch.Tensor)
            or (got.dtype.kind == "b") != (want.dtype.kind == "b")):
        return f"returns {_brief(result)}, expected {_kind(expected, want)}"
    exact = want.dtype.kind in "biu"
    same = (got == want) if exact else np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if np.all(same):
        return ""
    if want.ndim == 0:
        return _differs(_short(expected), _short(result), want.item(), got.item())
    first = tuple(np.argwhere(~np.asarray(same))[0])
    at = "[" + ", ".join(map(str, first)) + "]"
    return (_differs(f"{at} = {_number(want[first])}", f"{at} = {_number(got[first])}", want[first].item(),
                     got[first].item(), at=f"{at} = ")
            + f" (first of {int(np.size(same) - np.sum(same))} differing entries of {want.size}, shape {want.shape})")


def _differs(expected: str, got: str, want: Any, value: Any, at: str = "") -> str:
    """The "differs" hint; full precision when the short renderings look the same."""
    if expected == got:
        expected, got = at + repr(want), at + repr(value)
    return f"differs from the library: expected {expected}, got {got}"


def _kind(x: Any, arr: np.ndarray) -> str:
    """``a float``, ``a bool``, ``an ndarray of shape (3,) of bool``: what ``expected`` is."""
    if arr.ndim == 0 and not isinstance(x, (torch.Tensor, np.ndarray)):
        return "a bool" if arr.dtype.kind == "b" else "an int" if arr.dtype.kind in "iu" else "a float"
    return f"{_a(type(x).__name__)} of shape {tuple(arr.shape)}{' of bool' if arr.dtype.kind == 'b' else ''}"


def _number(v: Any) -> str:
    return f"{v:.8g}" if isinstance(v, (float, np.floating)) else str(v)


def _short(x: Any) -> str:
    """A few characters of ``x``: a number, a small array's entries, else its kind and shape."""
    arr = _numbers(x)
    if arr is None:
        return _brief(x)
    if arr.ndim == 0:
        return _number(arr.item() if arr.dtype.kind != "b" else bool(arr))
    if arr.size <= 6:
        return "[" + ", ".join(_number(v) for v in arr.ravel().tolist()) + "]" + (
            f" of shape {arr.shape}" if arr.ndim > 1 else "")
    return _brief(x)


GENERIC_CHECKS: tuple[str, ...] = ("check_result",)
