"""The report: each of the paper's claims for the run's data set
(:func:`kdfair_utils.paper.claims_for`; Trifeature by default) measured on a run's recorded
results under one inference rule (:mod:`kdfair_utils.inference`), and ``report.md``.

Every claim row has an estimate, a test (p-value and interval), a verdict and the verdict's
bootstrap support over seeds:

* **trend over T** (:class:`~kdfair_utils.paper.Trend`): slope of the per-model value on T with a
  fixed effect per seed, over T = 2..10 (T = 1 shown separately), p from permuting T within
  each seed; :class:`~kdfair_utils.paper.CountTrend`: the same permutation for #SC / #TC;
* **comparison** (:class:`~kdfair_utils.paper.Less`): per-seed values, paired t-test where both
  sides are students (same seed → same initialisation and batch order; a pooled window is
  averaged per seed first), Welch's test against the teachers; the paper's unpaired Welch p is
  shown beside a paired one; :class:`~kdfair_utils.paper.Ordered`: every neighbouring pair must
  hold; :class:`~kdfair_utils.paper.AtLeast`: one-sample t over models;
* **count above chance** (:class:`~kdfair_utils.paper.AboveChance`): seed-permutation p; the
  chance level excludes the observed split and its mirror;
* fairness claims are judged on the **excess** over the zero-disparity reference, and the raw
  values are shown beside it.

Verdicts: ``holds`` (p < 0.05 in the paper's direction), ``not significant``, ``opposite``
(p < 0.05 against it), ``n/a`` (not measurable with this run's records).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import singledispatch
from pathlib import Path
from typing import Any

import numpy as np

from . import inference as inf
from .cache import atomic_write, load_json, save_json
from .class_bias_controls import ClassBiasInference, chance_test, class_bias_inference, count_trend
from .paper import (CLAIMS, CLASS_BIAS_WINDOW, DESCRIPTIONS, AboveChance, AtLeast, Claim, CountTrend, Less, Ordered,
                    Select, Trend, claims_for)
from .results import ClaimVerdict, ClassAccuracies, MetricSummary, Population, Results, load_results

LEVEL = inf.LEVEL
BOOTSTRAP_PERMUTATIONS = 100  # orderings per bootstrap resample of a trend test (the observed test uses more)

VERDICTS = ("- **holds**: p < 0.05 in the paper's direction; **not significant**: neither direction reaches "
            "p < 0.05; **opposite**: p < 0.05 against the paper; **n/a**: not measurable in this run.\n"
            "- Trends over T: slope per unit T with a fixed effect per seed over T = 2..10 (two-sided 95 % t interval); "
            "p from permuting T within each seed (seed effects are not evidence). T = 1 and the very high T are "
            "reported separately.\n"
            "- Comparisons: paired t-test on per-seed values where both sides are students (same seed: same "
            "initialisation and batch order; a window of T is averaged per seed first); Welch's unpaired test "
            "against the teachers; the paper-style unpaired Welch p is shown beside.\n"
            "- Counts: #SC/#TC are the paper's raw Welch counts (ratio normalisation); chance is a seed "
            "permutation whose chance level excludes the observed split and its mirror.\n"
            "- Fairness claims are judged on the excess of DPD/EOD over the zero-disparity reference (predictions "
            "shuffled within each true class across groups); the raw values are shown.\n"
            "- support: share of bootstrap resamples that give the same verdict, among those where it is "
            "measurable (n/a when fewer than 80 % are: too few units, e.g. 2 teachers); teachers are resampled, and each drawn teacher's students with it (students of one "
            "teacher are a cluster). The p-values of comparisons and counts treat the student seeds as "
            "independent, although students that share a teacher are not (the quick profile: 2 teachers for 5 "
            "seeds, seeds 0, 2, 4 and 1, 3; the paper's design gives each seed its own teacher), so where teachers "
            "are shared they are optimistic; intervals are two-sided 95 %.")


@dataclass(frozen=True)
class Options:
    """How much resampling the report does (:class:`~kdfair_utils.experiments.AnalysisConfig`)."""

    permutations: int = 1000
    bootstrap_draws: int = 200
    seed: int = 0
    null_splits: int = 300


@dataclass(frozen=True)
class Measured:
    held: str
    estimate: float | None
    p_value: float | None
    kdfair: str = ""
    evidence: str = ""
    rule: str = ""


Picks = dict[str, np.ndarray] | None


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _p(p: float | None) -> str:
    """``p = 0.012``, ``p < 0.001`` or ``p n/a``."""
    return "p n/a" if p is None or not np.isfinite(p) else ("p < 0.001" if p < 0.001 else f"p = {p:.3f}")


def _p_both(held: str, p_paper: float | None, p_opposite: float | None) -> str:
    """The p in the paper's direction, and the opposite one where it decided the verdict."""
    return _p(p_paper) + (f" (opposite direction: {_p(p_opposite)})" if held == inf.OPPOSITE else "")


def _digits(metric: str) -> int:
    return 4 if metric.startswith("lipschitz") else 2


def _finite(values: Any) -> bool:
    return bool(np.all(np.isfinite(np.asarray(values, dtype=float))))


# ----------------------------------------------------------------------------- values
def _pick(values: np.ndarray, population: Population, picks: Picks) -> np.ndarray:
    if picks is None:
        return values
    return values[picks["teachers" if population.role == "teacher" else "seeds"]]


def select_values(summary: MetricSummary, select: Select, picks: Picks = None) -> tuple[str, np.ndarray, tuple] | None:
    """(display name, one value per unit, seeds) of what ``select`` names — a population's
    models, or the distilled students of a window averaged per seed — with the bootstrap
    ``picks`` applied; None if the run has none of it."""
    if select.population is not None:
        try:
            pv = summary.of(select.population)
        except KeyError:
            return None
        return select.population.name, _pick(np.asarray(pv.values, dtype=float), select.population, picks), pv.seeds
    ds = summary.ds(select.window)
    if not ds:
        return None
    lo, hi = select.window  # type: ignore[misc]
    if select.pick == "highest":
        top = ds[-1]
        return top.population.name, _pick(np.asarray(top.values, dtype=float), top.population, picks), top.seeds
    if len({p.seeds for p in ds}) > 1:
        return None
    per_seed = np.asarray([p.values for p in ds], dtype=float).mean(0)
    return f"DS (T = {lo:g}..{hi:g}, per-seed mean)", _pick(per_seed, ds[0].population, picks), ds[0].seeds


def _students(select: Select) -> bool:
    return select.population is None or select.population.role != "teacher"


def _class_accuracy_records(results: Results) -> tuple[ClassAccuracies | None, ClassAccuracies | None, bool]:
    """The class accuracies of ``main`` and ``class_bias``, and whether ``class_bias`` ran on the
    main grid (the class-bias profiles): notebook 03 then records it for ``class_bias`` only (or
    both records are the same but for their experiment)."""
    main, other = (results.class_accuracies(experiment=e) for e in ("main", "class_bias"))
    same = other is not None and (main is None or dataclasses.replace(main, experiment=other.experiment) == other)
    return main, other, same


def _metric(claim: Claim, results: Results, metric: str, attribute: str | None) -> MetricSummary | None:
    """The claim's experiment's summary of ``metric``; ``main``'s where ``class_bias`` ran on the
    main grid (notebook 02 records ``main``'s metrics only)."""
    summary = results.metric(metric, attribute, experiment=claim.experiment)
    if summary is None and claim.experiment == "class_bias" and _class_accuracy_records(results)[2]:
        summary = results.metric(metric, attribute, experiment="main")
    return summary


def _orderings(opts: Options, picks: Picks) -> int:
    """Within-seed orderings of a trend test: fewer inside a bootstrap resample."""
    return opts.permutations if picks is None else BOOTSTRAP_PERMUTATIONS


def _resampler(results: Results):
    """The bootstrap's draw: teachers, and each teacher's students as a cluster (from the
    recorded teacher of each DS model); None when the records do not say."""
    acc = results.metric("accuracy", None, experiment="main")
    if acc is None:
        return None
    try:
        teachers = acc.of(Population.teacher()).seeds
        nds = acc.of(Population.nds()).seeds
    except KeyError:
        return None
    ds = acc.ds()
    if not ds or ds[0].seeds != nds or ds[0].teacher_seeds is None:
        return None
    return inf.teacher_clusters([teachers.index(t) for t in ds[0].teacher_seeds], len(teachers))


# ----------------------------------------------------------------------------- rules
@singledispatch
def _measure(test: Any, claim: Claim, results: Results, opts: Options, picks: Picks) -> Measured:
    raise TypeError(f"no rule for claim test {type(test).__name__}")


def _na(why: str, ours: str = "n/a") -> Measured:
    return Measured(inf.NA, None, None, ours, "", why)


@_measure.register
def _(test: AtLeast, claim: Claim, results: Results, opts: Options, picks: Picks) -> Measured:
    summary = _metric(claim, results, test.metric, test.attribute)
    chosen = summary and select_values(summary, test.select, picks)
    if not chosen:
        return _na(f"no {test.metric} recorded")
    c = inf.one_sample(chosen[1], test.threshold)
    held = inf.verdict(c.p_less, c.p_greater)
    return Measured(held, c.mean_b, c.p_less, f"{chosen[0]} {c.mean_b:.2f} (n = {c.n_b})",
                    f"Δ = {c.difference:+.2f} [{_fmt(c.ci_low)}, {_fmt(c.ci_high)}], "
                    f"{_p_both(held, c.p_less, c.p_greater)}",
                    f"one-sample t over {c.n_b} models, mean > {test.threshold:g}")


Selected = tuple[str, np.ndarray, tuple]  # what select_values picks: (name, values, seeds)


def compare(summary: MetricSummary, a: Select, b: Select,
            picks: Picks = None) -> tuple[inf.Comparison, Selected, Selected] | None:
    """The comparison of ``a`` below ``b`` under the report's rule, with what was selected."""
    sa, sb = select_values(summary, a, picks), select_values(summary, b, picks)
    if not sa or not sb:
        return None
    paired = _students(a) and _students(b) and sa[2] == sb[2]
    c = inf.paired_comparison(sa[1], sb[1]) if paired else inf.welch_comparison(sa[1], sb[1])
    return c, sa, sb


@_measure.register
def _(test: Less, claim: Claim, results: Results, opts: Options, picks: Picks) -> Measured:
    summary = _metric(claim, results, test.metric, test.attribute)
    found = summary and compare(summary, test.a, test.b, picks)
    if not found:
        return _na(f"{test.metric} of both populations not recorded")
    c, sa, sb = found
    held = inf.verdict(c.p_less, c.p_greater)
    if picks is not None:
        return Measured(held, c.difference, c.p_less)
    d = _digits(test.metric)
    ours = f"{sa[0]} {c.mean_a:.{d}f} vs {sb[0]} {c.mean_b:.{d}f}"
    if test.shown:
        shown = _metric(claim, results, test.shown, test.attribute)
        raw = shown and compare(shown, test.a, test.b)
        if raw:
            ours += f" (excess; raw {raw[0].mean_a:.{d}f} vs {raw[0].mean_b:.{d}f})"
    evidence = (f"Δ = {c.difference:+.{d}f} [{_fmt(c.ci_low, d)}, {_fmt(c.ci_high, d)}], "
                f"{_p_both(held, c.p_less, c.p_greater)}")
    if c.test == "paired t":
        welch = inf.welch_comparison(sa[1], sb[1])
        evidence += f"; unpaired Welch {_p(welch.p_less)}"
    return Measured(held, c.difference, c.p_less, ours, evidence, f"{c.test} over {c.n_a} vs {c.n_b} "
                    + ("seeds" if c.test == "paired t" else "models") + ", one-sided")


def _ds_matrix(summary: MetricSummary, window: tuple[float, float]) -> tuple[list[float], np.ndarray] | None:
    ds = summary.ds(window)
    if len(ds) < 2 or len({p.seeds for p in ds}) > 1:
        return None
    return [p.population.temperature for p in ds], np.asarray([p.values for p in ds], dtype=float).T  # [S, T]


@_measure.register
def _(test: Trend, claim: Claim, results: Results, opts: Options, picks: Picks) -> Measured:
    summary = _metric(claim, results, test.metric, test.attribute)
    found = summary and _ds_matrix(summary, test.window)
    if not found:
        return _na(f"fewer than two temperatures in {test.window[0]:g}..{test.window[1]:g}")
    temps, y = found
    if picks is not None:
        y = y[picks["seeds"]]
    if not _finite(y) or len(y) < 2:
        return _na(f"{test.metric} is undefined for a model")
    t = inf.trend_test(y, temps, n_perm=_orderings(opts, picks), seed=opts.seed)
    held = inf.verdict(*t.p_in(test.sign))
    if picks is not None:
        return Measured(held, t.slope.estimate, t.p_in(test.sign)[0])
    d, means = _digits(test.metric), y.mean(0)
    unit = f" {summary.unit}" if summary.unit else ""
    ours = f"{means[0]:.{d}f} (T={temps[0]:g}) → {means[-1]:.{d}f} (T={temps[-1]:g}){unit}"
    if test.shown:
        shown = _metric(claim, results, test.shown, test.attribute)
        raw = shown and _ds_matrix(shown, test.window)
        if raw:
            ours += f" (excess; raw {raw[1].mean(0)[0]:.{d}f} → {raw[1].mean(0)[-1]:.{d}f})"
    t1 = summary.ds((1.0, 1.0))
    if t1:
        ours += f"; T=1: {np.mean(t1[0].values):.{d}f}"
    sd = d + 1
    evidence = (f"slope {t.slope.estimate:+.{sd}f} [{_fmt(t.slope.ci_low, sd)}, {_fmt(t.slope.ci_high, sd)}] per unit T, "
                f"{_p_both(held, *t.p_in(test.sign))}")
    rule = (f"seed-blocked slope over T = {test.window[0]:g}..{test.window[1]:g}, within-seed permutation "
            f"({'all' if t.exhaustive else t.n_orderings} orderings)")
    return Measured(held, t.slope.estimate, t.p_in(test.sign)[0], ours, evidence, rule)


def _class_record(claim: Claim, results: Results):
    return results.class_accuracies(experiment=claim.experiment)


@_measure.register
def _(test: CountTrend, claim: Claim, results: Results, opts: Options, picks: Picks) -> Measured:
    record = _class_record(claim, results)
    temps = record.temperatures(test.window) if record else []
    if len(temps) < 2:
        return _na("no per-class accuracies recorded for two temperatures in the window")
    students = None if picks is None else picks["seeds"]
    teachers = None if picks is None else picks["teachers"]
    try:
        counts, t = count_trend(record, temps, test.count, n_perm=_orderings(opts, picks), seed=opts.seed,
                                students=students, teachers=teachers)
    except ValueError as exc:  # e.g. a model with accuracy 0: the ratio is undefined
        return _na(str(exc))
    held = inf.verdict(*t.p_in(test.sign))
    if picks is not None:
        return Measured(held, t.slope.estimate, t.p_in(test.sign)[0])
    n = len(record.class_names)
    ours = f"{int(counts[0])}→{int(counts[-1])} of {n} (T = {temps[0]:g}→{temps[-1]:g})"
    evidence = f"slope {t.slope.estimate:+.2f} classes per unit T, {_p_both(held, *t.p_in(test.sign))}"
    rule = (f"slope of the raw count over T = {test.window[0]:g}..{test.window[1]:g}, DS models permuted over T "
            f"within seed ({'all' if t.exhaustive else t.n_orderings} orderings)")
    return Measured(held, t.slope.estimate, t.p_in(test.sign)[0], ours, evidence, rule)


@_measure.register
def _(test: AboveChance, claim: Claim, results: Results, opts: Options, picks: Picks) -> Measured:
    record = _class_record(claim, results)
    temps = record.temperatures(CLASS_BIAS_WINDOW) if record else []
    if not temps:
        return _na("no per-class accuracies recorded")
    students = None if picks is None else picks["seeds"]
    try:
        chance = chance_test(record, temps[-1], test.count, max_splits=opts.null_splits, seed=opts.seed,
                             students=students)
    except ValueError as exc:
        return _na(str(exc))
    if chance.min_p_value >= LEVEL:
        return Measured(inf.NA, None, None, f"{chance.observed} vs chance {chance.chance:.1f}", "",
                        f"too few seeds: the smallest possible p is {chance.min_p_value:.2f}")
    held = inf.HOLDS if chance.p_value < LEVEL else inf.NOT_SIGNIFICANT
    if picks is not None:
        return Measured(held, chance.observed - chance.chance, chance.p_value)
    what = "NDS vs DS" if test.count == "sc" else "accuracy-matched NDS vs DS"
    return Measured(held, chance.observed - chance.chance, chance.p_value,
                    f"{chance.observed} of {len(record.class_names)} vs chance {chance.chance:.1f} "
                    f"({what}@T={temps[-1]:g})", f"{_p(chance.p_value)}",
                    f"seed-permutation p over {chance.n_splits} relabellings (chance level without the observed "
                    "split and its mirror)")


@_measure.register
def _(test: Ordered, claim: Claim, results: Results, opts: Options, picks: Picks) -> Measured:
    summary = _metric(claim, results, test.metric, test.attribute)
    if summary is None:
        return _na(f"{test.metric} not recorded")
    pairs = [compare(summary, a, b, picks) for a, b in zip(test.selects, test.selects[1:])]
    if not all(pairs):
        return _na(f"{test.metric} not recorded for every population")
    held_each = [inf.verdict(c.p_less, c.p_greater) for c, _, _ in pairs]  # type: ignore[misc]
    held = (inf.HOLDS if all(h == inf.HOLDS for h in held_each) else inf.NA if inf.NA in held_each
            else inf.OPPOSITE if inf.OPPOSITE in held_each else inf.NOT_SIGNIFICANT)
    p = max(c.p_less for c, _, _ in pairs)  # type: ignore[misc]
    if picks is not None:
        return Measured(held, None, p)
    d = _digits(test.metric)
    names = [pairs[0][1][0]] + [b[0] for _, _, b in pairs]  # type: ignore[index, misc]
    means = [pairs[0][0].mean_a] + [c.mean_b for c, _, _ in pairs]  # type: ignore[index]
    ours = " / ".join(f"{n} {m:.{d}f}" for n, m in zip(names, means))
    evidence = "; ".join(f"{c.test} {_p(c.p_less)}" for c, _, _ in pairs)  # type: ignore[misc]
    return Measured(held, None, p, ours, evidence, "each neighbouring pair one-sided (all must hold)")


def evaluate_claim(claim: Claim, results: Results, opts: Options = Options()) -> ClaimVerdict:
    """One claim under the report's rule, with its bootstrap support."""
    m = _measure(claim.test, claim, results, opts, None)
    draw = _resampler(results)
    support = None
    if draw is not None and m.held != inf.NA:
        support = inf.bootstrap_support(lambda picks: _measure(claim.test, claim, results, opts, picks).held,
                                        draw, m.held, draws=opts.bootstrap_draws, seed=opts.seed)
    return ClaimVerdict(claim.id, claim.statement, claim.paper, m.kdfair, m.evidence, m.held, support, m.rule,
                        m.estimate, m.p_value)


def evaluate_claims(results: Results, opts: Options = Options(),
                    claims: tuple[Claim, ...] | None = None) -> list[ClaimVerdict]:
    """Every one of ``claims`` (None: Trifeature's, :data:`~kdfair_utils.paper.CLAIMS`), measured on ``results``."""
    return [evaluate_claim(c, results, opts) for c in (CLAIMS if claims is None else claims)]


# ----------------------------------------------------------------------------- markdown
def _support(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def claims_frame(verdicts: list[ClaimVerdict]):
    import pandas as pd

    return pd.DataFrame([{"claim": v.statement, "paper": v.paper, "kdfair": v.kdfair, "test": v.evidence,
                          "verdict": v.held, "support": _support(v.support)} for v in verdicts])


def markdown_table(verdicts: list[ClaimVerdict]) -> str:
    if not verdicts:
        return "_no results recorded_\n"
    lines = ["| claim | paper | kdfair | test | verdict | support |", "|---|---|---|---|---|---|"]
    lines += [f"| {v.statement} | {v.paper} | {v.kdfair} | {v.evidence or v.rule} | {v.held} | {_support(v.support)} |"
              for v in verdicts]
    return "\n".join(lines) + "\n"


def options_of(analysis: Any = None) -> Options:
    """The report's resampling settings: from ``analysis`` (an AnalysisConfig), else the defaults."""
    if analysis is None:
        return Options()
    if isinstance(analysis, Options):
        return analysis
    return Options(analysis.permutations, analysis.bootstrap_draws, analysis.inference_seed, analysis.null_splits)


def verdicts_of(results: Results, opts: Options = Options(),
                claims: tuple[Claim, ...] | None = None) -> tuple[list[ClaimVerdict], str]:
    """The run's verdicts on ``claims`` (None: Trifeature's) and where they came from: those a
    notebook recorded when they are exactly these claims (same ids, same order) and at least as
    new as every other record (computed once, in that notebook), else evaluated now."""
    claims = CLAIMS if claims is None else claims
    recorded = results.verdicts()
    if recorded and [v.claim for v in recorded] == [c.id for c in claims]:
        source = next(nb for nb, recs in results.by_notebook.items() if any(r in recorded for r in recs))
        if all(results.mtimes[source] >= t for t in results.mtimes.values()):
            return recorded, f"recorded by {source}"
    return evaluate_claims(results, opts, claims), "evaluated from the recorded summaries"


def fairness_markdown(results: Results, attribute: str = "color") -> str:
    """Per population: accuracy, and DPD/EOD raw, zero-disparity reference [interval] and excess
    (means over the population's models)."""
    acc = results.metric("accuracy", None, experiment="main")
    parts = ("", "_ref", "_ref_low", "_ref_high", "_excess")
    if acc is None or any(results.metric(m + part, attribute, experiment="main") is None
                          for m in ("eod", "dpd") for part in parts):
        return ""
    lines = ["| population | accuracy | EOD | EOD reference [per-model 95 % band] | EOD excess | DPD | "
             "DPD reference [per-model 95 % band] | DPD excess |", "|---|---|---|---|---|---|---|---|"]
    for pv in sorted(acc.populations, key=lambda p: p.population.sort_key):
        pop = pv.population
        cells = [pop.name, f"{np.mean(pv.values):.2f}"]
        for m in ("eod", "dpd"):
            get = {part: results.metric(m + part, attribute, experiment="main") for part in parts}
            mean = {k: float(np.mean(v.of(pop).values)) for k, v in get.items()}  # type: ignore[union-attr]
            std = float(np.std(get["_excess"].of(pop).values, ddof=1)) if len(pv.values) > 1 else float("nan")  # type: ignore[union-attr]
            cells += [f"{mean['']:.2f}", f"{mean['_ref']:.2f} [{mean['_ref_low']:.2f}, {mean['_ref_high']:.2f}]",
                      f"{mean['_excess']:+.2f} ± {_fmt(std)}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def class_bias_markdown(inference: ClassBiasInference) -> str:
    """The class-bias table of one experiment, with its chance levels."""
    lines = ["| T | DS accuracy | #SC | #SC BH | #SC (difference) | of #SC at the ceiling | #SC from accuracy alone | "
             "DS vs accuracy-matched NDS | #TC | #TC BH |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in inference.rows:
        lines.append(f"| {r.temperature:g} | {r.ds_accuracy:.2f} | {r.sc} | {r.sc_bh} | {r.sc_difference} | "
                     f"{r.sc_ceiling} | {r.sc_accuracy_only} | {r.sc_beyond_accuracy} | {r.tc} | {r.tc_bh} |")
    out = "\n".join(lines) + "\n"
    for name, trend in (("#SC", inference.sc_trend), ("#TC", inference.tc_trend),
                        ("DS vs accuracy-matched NDS", inference.beyond_trend)):
        if trend is not None:
            out += (f"\n- {name} trend over T = {inference.window[0]:g}..{inference.window[-1]:g}: slope "
                    f"{trend.slope.estimate:+.2f} per unit T; rise: {_p(trend.p_increase)}, "
                    f"fall: {_p(trend.p_decrease)} (within-seed permutation)")
    for name, chance in (("#SC", inference.chance), ("DS vs accuracy-matched NDS", inference.beyond_accuracy)):
        if chance is not None:
            out += (f"\n- {name} at T = {inference.window[-1]:g}: {chance.observed} vs chance {chance.chance:.1f}, "
                    f"{_p(chance.p_value)} ({chance.n_splits} seed relabellings; smallest possible p "
                    f"{chance.min_p_value:.3f})")
    return out + "\n"


CLASS_BIAS_NOTE = (
    "#SC/#TC: the paper's raw per-class Welch counts on acc_c/acc (ratio normalisation), p < 0.05; BH: after "
    "Benjamini–Hochberg; *difference*: the same test on acc_c − mean accuracy; *ceiling*: significant classes at "
    "≥ 95 % in every model of both populations, where the ratio moves only because the overall accuracy does; "
    "*from accuracy alone*: #SC of the NDS against itself with every class's errors scaled by one factor to each "
    "paired DS's accuracy (no class-specific effect); *DS vs accuracy-matched NDS*: classes where the DS differs "
    "from that accuracy-matched NDS, i.e. beyond what the accuracy change explains (a count of its own, not a "
    "difference of the other two). Chance levels relabel all models as exchangeable, ignoring the per-seed "
    "pairing of NDS and DS (a null that only swaps within seeds has 2⁵ = 32 splits and could not reach "
    "p < 0.05 with 5 seeds).")


FAIRNESS_NOTE = (
    "The reference is the same model's predictions shuffled within each true class across the attribute's groups: "
    "it keeps the accuracy and removes any effect of the attribute, so it is the EOD/DPD that the error rate and "
    "finite groups produce on their own. The excess is what an effect of the attribute adds. Means over each "
    "population's models (excess ± std); the band is each model's 2.5th–97.5th percentile of the shuffles, "
    "averaged over the population.\n")
_ATTRIBUTE_NAMES = {"color": "colour"}
_TASK_NAMES = {"shape_color": "shape × colour", "class": ""}  # "": the label is the class itself


def fairness_attributes(results: Results) -> list[str]:
    """The protected attributes with a zero-disparity reference recorded (experiment ``main``), in record order."""
    return list(dict.fromkeys(s.attribute for s in results.all(MetricSummary)
                              if s.metric == "eod_ref" and s.experiment == "main" and s.attribute))


def class_bias_records(results: Results) -> list[ClassAccuracies]:
    """The class accuracies to report: ``main``'s and ``class_bias``'s, one record where both
    experiments are the main grid."""
    main, other, same = _class_accuracy_records(results)
    return [r for r in ((None if same else main), other) if r is not None]


def _class_bias_title(record: ClassAccuracies) -> str:
    task = _TASK_NAMES.get(record.task, record.task)
    return f"{len(record.class_names)} classes" + (f" ({task})" if task else "")


def write_report(out_dir: str | Path, analysis: Any = None, *, dataset: str | None = None,
                 description: str | None = None) -> Path:
    """``<out_dir>/report.md``: the paper-vs-kdfair table of ``dataset``'s claims
    (:func:`~kdfair_utils.paper.claims_for`) first, then the fairness and class-bias tables and
    the figures; also ``claims.json`` (the verdicts). ``description`` (e.g. "CelebA, ResNet-50
    teacher → ResNet-18 students") heads it. Both default to what the run's ``run.json`` says
    (``kdfair run`` writes them), else Trifeature and the data set's setup in the paper.
    Deterministic: the same records give the same bytes (run times live in ``run.json``)."""
    out = Path(out_dir)
    run = load_json(out / "run.json") if (out / "run.json").exists() else {}
    dataset = dataset or run.get("dataset", "trifeature")
    description = description or run.get("description")
    claims = claims_for(dataset)
    results = load_results(out)
    opts = options_of(analysis)
    verdicts, source = verdicts_of(results, opts, claims)
    counts = {h: sum(v.held == h for v in verdicts) for h in inf.VERDICTS}
    parts = [f"# kdfair report — profile `{results.profile}`\n",
             f"{description or DESCRIPTIONS[dataset]}; every number below was measured "
             "in this run and recorded by the executed notebooks beside this file"
             + (f" ({run['machine']}, {run['date']})" if run.get("machine") else "") + ".\n",
             "## Paper vs kdfair\n", markdown_table(verdicts),
             f"\n{counts[inf.HOLDS]} of {len(verdicts)} claims hold, {counts[inf.NOT_SIGNIFICANT]} are not "
             f"significant, {counts[inf.OPPOSITE]} go the opposite way and {counts[inf.NA]} are not measurable "
             f"in this run (verdicts {source}). The rule:\n\n{VERDICTS}\n"]
    fairness = [(a, table) for a in fairness_attributes(results) if (table := fairness_markdown(results, a))]
    for i, (attribute, table) in enumerate(fairness):
        name = _ATTRIBUTE_NAMES.get(attribute, attribute)
        parts += [f"\n## Group fairness beside its zero-disparity reference ({name})\n",
                  *([FAIRNESS_NOTE] if i == 0 else []), table]
    for record in class_bias_records(results):
        if len(record.temperatures(CLASS_BIAS_WINDOW)) >= 1:
            try:
                table = class_bias_markdown(class_bias_inference(
                    record, window=CLASS_BIAS_WINDOW, n_perm=opts.permutations, max_splits=opts.null_splits,
                    seed=opts.seed))
            except ValueError as exc:
                table = f"_not measurable in this run: {exc}_\n"
            parts += [f"\n## Class bias, {_class_bias_title(record)}\n", table]
    if any(p.startswith("\n## Class bias") for p in parts):
        parts.append(CLASS_BIAS_NOTE + "\n")
    figures = sorted((out / "figures").glob("*.png"))
    if figures:
        parts.append("\n## Figures\n")
        parts += [f"\n### {f.stem.replace('_', ' ')}\n\n![{f.stem}](figures/{f.name})\n" for f in figures]
    path = out / "report.md"
    atomic_write(path, lambda tmp: tmp.write_text("\n".join(parts)))
    save_json(out / "claims.json", [vars(v) for v in verdicts])
    return path


README_BEGIN, README_END = "<!-- claims:begin -->", "<!-- claims:end -->"


def readme_block(out_dir: str | Path) -> str:
    """The README's claims table, generated from a run's ``claims.json`` and ``run.json``."""
    out = Path(out_dir)
    verdicts = [ClaimVerdict(**v) for v in load_json(out / "claims.json")]
    run = load_json(out / "run.json") if (out / "run.json").exists() else {}
    where = f"{run.get('machine', 'machine not recorded')}, {run.get('date', 'date not recorded')}"
    return (f"{README_BEGIN}\nGenerated from `{out.parent.name}/{out.name}/claims.json` by `make readme` "
            f"(profile `{run.get('profile', out.name)}`; {where}):\n\n{markdown_table(verdicts)}\nVerdicts:\n\n"
            f"{VERDICTS}\n{README_END}")


def update_readme(readme: str | Path, out_dir: str | Path) -> Path:
    """Replace the block between the claims markers of ``readme`` with :func:`readme_block`."""
    path = Path(readme)
    text = path.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{path} has no {README_BEGIN} … {README_END} block")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    atomic_write(path, lambda tmp: tmp.write_text(head + readme_block(out_dir) + tail))
    return path
