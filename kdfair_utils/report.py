"""The report: each of the paper's claims (:data:`kdfair_utils.paper.CLAIMS`) measured on a
run's recorded results, with the rule that decided, and ``report.md``.

Verdicts (stated in every report):

* **trend over T** (:class:`~kdfair_utils.paper.Trend`, :class:`~kdfair_utils.paper.CountTrend`):
  Spearman ρ between T and the distilled students' mean (or the count) over the claim's
  window — ``yes`` if ρ has the claimed sign and |ρ| ≥ 0.5, ``weakly`` if only the sign holds;
* **comparison of means** (:class:`~kdfair_utils.paper.Less`): Welch's one-sided t-test over
  the models (seeds) — ``yes`` if the direction holds with p < 0.05, ``weakly`` if only the
  direction holds;
* **count above chance** (:class:`~kdfair_utils.paper.AboveChance`): seed-permutation p < 0.05,
  ``n/a`` when the design cannot reach it;
* :class:`~kdfair_utils.paper.AtLeast` and :class:`~kdfair_utils.paper.Ordered` compare means.

``no``: the direction is opposite; ``n/a``: not measurable with this run's records.
"""

from __future__ import annotations

from functools import singledispatch
from pathlib import Path
from typing import Any

import numpy as np

from .cache import atomic_write, load_json, save_json
from .paper import CLAIMS, AboveChance, AtLeast, Claim, CountTrend, Less, Ordered, Select, Trend
from .results import ClaimVerdict, MetricSummary, Results, load_results
from .stats import population_stats, spearman, welch_less

TREND_RHO = 0.5
LEVEL = 0.05

VERDICTS = ("- **yes**: the direction holds and is clear — Spearman |ρ| ≥ 0.5 for trends over T, Welch "
            "one-sided p < 0.05 (over seeds) for comparisons of means, permutation p < 0.05 for counts;\n"
            "- **weakly**: the direction holds but not clearly (|ρ| < 0.5, or p ≥ 0.05);\n"
            "- **no**: the direction is opposite; **n/a**: not measurable in this run (too few seeds or "
            "temperatures, or an undefined value).")


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _digits(metric: str) -> int:
    return 4 if metric == "lipschitz" else 2


def _finite(values: Any) -> bool:
    return bool(np.all(np.isfinite(np.asarray(values, dtype=float))))


def trend_verdict(rho: float | None, expected_sign: int) -> str:
    """``yes`` if ρ has the expected sign and |ρ| ≥ 0.5, ``weakly`` if only the sign is right,
    ``n/a`` if ρ is undefined."""
    if rho is None or not np.isfinite(rho):
        return "n/a"
    signed = expected_sign * rho
    return "yes" if signed >= TREND_RHO else "weakly" if signed > 0 else "no"


def less_verdict(a: Any, b: Any) -> tuple[str, float | None]:
    """Is the mean of values ``a`` below that of ``b``? (verdict, Welch one-sided p); ``n/a``
    when a value is not finite."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not (_finite(a) and _finite(b)):
        return "n/a", None
    if not a.mean() < b.mean():
        return "no", None
    p = welch_less(a, b)
    return ("yes" if p is not None and p < LEVEL else "weakly"), p


def select_values(summary: MetricSummary, select: Select) -> tuple[str, list[float]] | None:
    """(display name, per-model values) of what ``select`` names; None if the run has none of it."""
    if select.population is not None:
        try:
            return select.population.name, list(summary.of(select.population).values)
        except KeyError:
            return None
    ds = summary.ds(select.window)
    if not ds:
        return None
    lo, hi = select.window  # type: ignore[misc]
    if select.pick == "highest":
        return ds[-1].population.name, list(ds[-1].values)
    return f"DS (T = {lo:g}..{hi:g})", [v for p in ds for v in p.values]


def _na(claim: Claim, why: str, ours: str = "n/a") -> ClaimVerdict:
    return ClaimVerdict(claim.id, claim.statement, claim.paper, ours, "n/a", why, None, None)


@singledispatch
def _evaluate(test: Any, claim: Claim, results: Results) -> ClaimVerdict:
    raise TypeError(f"no rule for claim test {type(test).__name__}")


def _metric(claim: Claim, results: Results, metric: str, attribute: str | None) -> MetricSummary | None:
    return results.metric(metric, attribute, experiment=claim.experiment)


@_evaluate.register
def _(test: AtLeast, claim: Claim, results: Results) -> ClaimVerdict:
    summary = _metric(claim, results, test.metric, test.attribute)
    chosen = summary and select_values(summary, test.select)
    if not chosen:
        return _na(claim, f"no {test.metric} recorded")
    if not _finite(chosen[1]):
        return _na(claim, f"{test.metric} is undefined for a model", f"{chosen[0]}: undefined")
    s = population_stats(chosen[1])
    return ClaimVerdict(claim.id, claim.statement, claim.paper, f"{s.mean:.2f} ± {_fmt(s.std)}",
                        "yes" if s.mean >= test.threshold else "no",
                        f"mean ≥ {test.threshold:g} over {s.n} models", s.mean, None)


@_evaluate.register
def _(test: Less, claim: Claim, results: Results) -> ClaimVerdict:
    summary = _metric(claim, results, test.metric, test.attribute)
    a = summary and select_values(summary, test.a)
    b = summary and select_values(summary, test.b)
    if not a or not b:
        return _na(claim, f"{test.metric} of both populations not recorded")
    held, p = less_verdict(a[1], b[1])
    if held == "n/a":
        return _na(claim, f"{test.metric} is undefined for a model", f"{a[0]} vs {b[0]}: undefined")
    sa, sb, d = population_stats(a[1]), population_stats(b[1]), _digits(test.metric)
    ours = (f"{a[0]} {sa.mean:.{d}f} ± {_fmt(sa.std, d)} vs {b[0]} {sb.mean:.{d}f} ± {_fmt(sb.std, d)}"
            + (f", p = {p:.3f}" if p is not None else ""))
    rule = f"Welch one-sided p < {LEVEL:g} over {sa.n} vs {sb.n} models"
    if any(s.window is not None and s.pick == "pooled" for s in (test.a, test.b)):
        rule += " (students pooled over T share seeds and teachers, so p is optimistic)"
    return ClaimVerdict(claim.id, claim.statement, claim.paper, ours, held, rule, sb.mean - sa.mean, p)


@_evaluate.register
def _(test: Trend, claim: Claim, results: Results) -> ClaimVerdict:
    summary = _metric(claim, results, test.metric, test.attribute)
    ds = summary.ds(test.window) if summary else []
    if not ds:
        return _na(claim, f"no distilled students with T in {test.window[0]:g}..{test.window[1]:g}")
    temps = [p.population.temperature for p in ds]
    means = [float(np.mean(p.values)) for p in ds]
    rho, d = spearman(temps, means), _digits(test.metric)
    unit = f" {summary.unit}" if summary and summary.unit else ""
    ours = f"{means[0]:.{d}f} (T={temps[0]:g}) → {means[-1]:.{d}f} (T={temps[-1]:g}){unit}, ρ = {_fmt(rho)}"
    rule = f"Spearman ρ over T = {test.window[0]:g}..{test.window[1]:g}, |ρ| ≥ {TREND_RHO:g}"
    return ClaimVerdict(claim.id, claim.statement, claim.paper, ours, trend_verdict(rho, test.sign), rule, rho, None)


@_evaluate.register
def _(test: CountTrend, claim: Claim, results: Results) -> ClaimVerdict:
    summary = results.class_bias(experiment=claim.experiment)
    rows = summary.within(test.window) if summary else []
    if not rows:
        return _na(claim, "no class-bias counts recorded in the window")
    raw = [getattr(r, test.count).raw for r in rows]
    bh = [getattr(r, test.count).bh for r in rows]
    rho = spearman([r.temperature for r in rows], raw)
    ours = (f"{raw[0]}→{raw[-1]} of {summary.n_classes} (T = {rows[0].temperature:g}→{rows[-1].temperature:g}), "
            f"ρ = {_fmt(rho)}; BH {bh[0]}→{bh[-1]}")
    return ClaimVerdict(claim.id, claim.statement, claim.paper, ours, trend_verdict(rho, test.sign),
                        f"Spearman ρ of the raw count over T = {test.window[0]:g}..{test.window[1]:g}, "
                        f"|ρ| ≥ {TREND_RHO:g}", rho, None)


@_evaluate.register
def _(test: AboveChance, claim: Claim, results: Results) -> ClaimVerdict:
    summary = results.class_bias(experiment=claim.experiment)
    chance = summary.chance if summary else None
    if chance is None:
        return _na(claim, "no permutation null recorded")
    p, min_p = chance.p_value_raw, chance.min_p_value
    testable = min_p < LEVEL
    ours = (f"{chance.observed.raw} vs chance ≈ {chance.expected_raw:.1f} (NDS vs DS@T={chance.temperature:g}), "
            f"p = {p:.3f}" + ("" if testable else f" (too few seeds: the smallest possible p is {min_p:.2f})"))
    held = "n/a" if not testable else "yes" if p < LEVEL else "no"
    return ClaimVerdict(claim.id, claim.statement, claim.paper, ours, held,
                        f"seed-permutation p < {LEVEL:g} over {chance.n_splits} relabellings",
                        chance.observed.raw - chance.expected_raw, p)


@_evaluate.register
def _(test: Ordered, claim: Claim, results: Results) -> ClaimVerdict:
    summary = _metric(claim, results, test.metric, test.attribute)
    chosen = [summary and select_values(summary, s) for s in test.selects]
    if not all(chosen):
        return _na(claim, f"{test.metric} not recorded for every population")
    if not all(_finite(c[1]) for c in chosen):  # type: ignore[index]
        return _na(claim, f"{test.metric} is undefined for a model", "undefined")
    means, d = [float(np.mean(c[1])) for c in chosen], _digits(test.metric)  # type: ignore[index]
    ours = " / ".join(f"{c[0]} {m:.{d}f}" for c, m in zip(chosen, means))  # type: ignore[index]
    held = "yes" if all(x < y for x, y in zip(means, means[1:])) else "no"
    return ClaimVerdict(claim.id, claim.statement, claim.paper, ours, held, "means in this order (models pooled)",
                        None, None)


def evaluate_claims(results: Results) -> list[ClaimVerdict]:
    """Every claim of :data:`~kdfair_utils.paper.CLAIMS`, measured on ``results``."""
    return [_evaluate(c.test, c, results) for c in CLAIMS]


# ----------------------------------------------------------------------------- markdown
def claims_frame(verdicts: list[ClaimVerdict]):
    import pandas as pd

    return pd.DataFrame([{"claim": v.statement, "paper": v.paper, "kdfair": v.kdfair, "held": v.held}
                         for v in verdicts])


def markdown_table(verdicts: list[ClaimVerdict]) -> str:
    if not verdicts:
        return "_no results recorded_\n"
    lines = ["| claim | paper | kdfair | held |", "|---|---|---|---|"]
    lines += [f"| {v.statement} | {v.paper} | {v.kdfair} | {v.held} |" for v in verdicts]
    return "\n".join(lines) + "\n"


def verdicts_of(results: Results) -> tuple[list[ClaimVerdict], str]:
    """The run's verdicts and where they came from: those a notebook recorded when they cover
    today's :data:`~kdfair_utils.paper.CLAIMS` and are at least as new as every other record
    (computed once, in that notebook), else evaluated now."""
    recorded = results.verdicts()
    if recorded and [v.claim for v in recorded] == [c.id for c in CLAIMS]:
        source = next(nb for nb, recs in results.by_notebook.items() if any(r in recorded for r in recs))
        if all(results.mtimes[source] >= t for t in results.mtimes.values()):
            return recorded, f"recorded by {source}"
    return evaluate_claims(results), "evaluated from the recorded summaries"


def write_report(out_dir: str | Path) -> Path:
    """``<out_dir>/report.md``: the paper-vs-kdfair table first, then run time and figures;
    also ``claims.json`` (the verdicts)."""
    out = Path(out_dir)
    results = load_results(out)
    verdicts, source = verdicts_of(results)
    held = sum(v.held == "yes" for v in verdicts)
    weak = sum(v.held == "weakly" for v in verdicts)
    run = load_json(out / "run.json") if (out / "run.json").exists() else {}
    parts = [f"# kdfair report — profile `{results.profile}`\n",
             "Trifeature (generated), ResNet-20 teacher → LeNet-5 students; every number below was measured "
             "in this run and recorded by the executed notebooks beside this file"
             + (f" ({run['machine']}, {run['date']})" if run.get("machine") else "") + ".\n",
             "## Paper vs kdfair\n", markdown_table(verdicts),
             f"\n{held} of {len(verdicts)} claims held clearly and {weak} weakly in this run "
             f"(verdicts {source}). Verdicts:\n\n{VERDICTS}\n\n"
             "Where a claim did not hold, the numbers above are what we measured; notebook 06 discusses why.\n"]
    timings = run.get("timings", {})
    if timings:
        parts.append("\n## Run time\n\n" + "\n".join(f"- `{k}`: {v:.0f} s" for k, v in timings.items())
                     + f"\n- total: {sum(timings.values()):.0f} s\n")
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
