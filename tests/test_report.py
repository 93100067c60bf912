"""The report reads the typed records the notebooks write: these tests build them with the same
library calls the notebooks make, without running a notebook, so a renamed field fails here."""

import os
import warnings

import pytest
from scipy import stats as sps

from kdfair_utils import group_fairness, individual_fairness, report
from kdfair_utils.class_bias import class_bias_summary
from kdfair_utils.datasets import dataset_summary
from kdfair_utils.paper import CLAIMS
from kdfair_utils.results import Population, load_results, summarize


@pytest.fixture(scope="module")
def recorded(tiny_lesson):
    """Every record the series writes, from the tiny lesson, recorded as the notebooks do."""
    nb, a = tiny_lesson, tiny_lesson.analysis
    table = nb.table()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = {
            "01_setup_and_data": [dataset_summary(nb.data(), a.attributes)],
            "02_knowledge_distillation": [summarize(table, "accuracy")],
            "03_class_bias": [class_bias_summary(nb.grid(), experiment="main", significance=a.significance,
                                                 normalization=a.normalization),
                              class_bias_summary(nb.grid("class_bias"), experiment="class_bias",
                                                 significance=a.significance, normalization=a.normalization,
                                                 null_splits=a.null_splits)],
            "04_group_fairness": group_fairness.summaries(table, a.attributes),
            "05_individual_fairness": individual_fairness.summaries(table, a.twin_attributes),
        }
    for name, recs in records.items():
        nb.notebook = name
        nb.record(*recs)
    return nb, table, load_results(nb.out_dir)


def test_every_claim_is_measured_from_the_records(recorded):
    _, _, results = recorded
    verdicts = report.evaluate_claims(results)
    assert [v.claim for v in verdicts] == [c.id for c in CLAIMS]
    assert all(v.held in ("yes", "weakly", "no", "n/a") for v in verdicts)
    measured = {v.claim: v for v in verdicts}
    assert all(v.kdfair != "n/a" for v in verdicts)  # every claim found the records it reads
    # 3 + 3 models cannot reach p < 0.05 in the permutation null
    assert measured["sc_above_chance"].held == "n/a"
    assert "smallest possible p is 0.10" in measured["sc_above_chance"].kdfair


def test_claim_values_equal_hand_computations(recorded):
    _, table, results = recorded
    v = {x.claim: x for x in report.evaluate_claims(results)}
    ds_window = table[(table.role == "ds") & (table["T"] <= 10)]
    nds = table[table.role == "nds"]
    # Welch one-sided over models: NDS accuracy below the DS pooled over T = 1..10
    p = sps.ttest_ind(nds["accuracy"], ds_window["accuracy"], equal_var=False, alternative="less").pvalue
    if nds["accuracy"].mean() < ds_window["accuracy"].mean():
        assert v["ds_more_accurate"].p_value == pytest.approx(p, rel=1e-12)
    else:
        assert v["ds_more_accurate"].held == "no"
    # Spearman of the per-T mean EOD over T = 1..10
    for claim, column in (("lipschitz_falls", "lipschitz_color"), ("eod_falls", "eod_color")):
        means = ds_window.groupby("T")[column].mean()
        assert list(means.index) == [1.0, 2.0, 4.0]
        if means.nunique() > 1:
            assert v[claim].estimate == pytest.approx(sps.spearmanr(means.index, means.values).statistic, rel=1e-12)
        else:  # a constant series has no rank correlation
            assert v[claim].estimate is None and v[claim].held == "n/a"
    assert v["teacher_accuracy"].estimate == pytest.approx(table.loc[table.role == "teacher", "accuracy"].mean())
    cb = results.class_bias(experiment="class_bias")
    raw = [r.sc.raw for r in cb.within((2, 10))]
    assert v["sc_rises"].kdfair.startswith(f"{raw[0]}→{raw[-1]} of 100")
    order = [table.loc[table.role == "teacher", "lipschitz_color"].mean(), ds_window["lipschitz_color"].mean(),
             nds["lipschitz_color"].mean()]
    assert v["individual_order"].held == ("yes" if order[0] < order[1] < order[2] else "no")


def test_undefined_values_give_n_a_never_no():
    from kdfair_utils.results import MetricSummary, PopulationValues, Results

    nan = float("nan")
    pops = (PopulationValues(Population.teacher(), (0, 1), (3.0, 3.5)), PopulationValues(Population.nds(), (0, 1), (9.0, nan)),
            *(PopulationValues(Population.ds(t), (0, 1), (5.0 - t / 10, nan if t == 4 else 4.0)) for t in (1, 2, 4, 10)))
    eod = MetricSummary("main", "shape", "test", "eod", "color", "", pops)
    results = Results({"04_group_fairness": [eod]}, "quick", "k", {"04_group_fairness": 0.0})
    v = {x.claim: x for x in report.evaluate_claims(results)}
    assert v["eod_falls"].held == "n/a" and v["ds_fairer_than_nds"].held == "n/a"
    assert v["very_high_t_reverses"].held == "n/a"  # no T in 20..40 recorded
    assert "undefined" in v["ds_fairer_than_nds"].kdfair
    assert report.less_verdict([1.0, nan], [2.0, 3.0]) == ("n/a", None)
    assert report.trend_verdict(float("nan"), -1) == "n/a"
    assert eod.frame()["mean"].isna().sum() == 2  # displayed as undefined, not averaged away


def test_verdict_rules():
    assert report.trend_verdict(-0.8, -1) == "yes" and report.trend_verdict(-0.2, -1) == "weakly"
    assert report.trend_verdict(0.3, -1) == "no" and report.trend_verdict(None, -1) == "n/a"
    assert report.less_verdict([80.0, 81.0, 79.0], [90.0, 91.0, 89.0])[0] == "yes"
    assert report.less_verdict([80.0, 83.0, 77.0], [80.5, 84.0, 77.5])[0] == "weakly"
    assert report.less_verdict([95.0, 96.0], [80.0, 81.0]) == ("no", None)
    assert report.less_verdict([1.0], [2.0, 3.0]) == ("weakly", None)  # the direction, but no test


def test_report_readme_and_the_once_computed_verdicts(recorded, tmp_path):
    nb, _, results = recorded
    verdicts, source = report.verdicts_of(results)
    assert source == "evaluated from the recorded summaries"
    nb.notebook = "06_explore"
    nb.record(*verdicts)
    path = nb.out_dir / "results" / "06_explore.json"
    again, source = report.verdicts_of(load_results(nb.out_dir))
    assert again == verdicts and source == "recorded by 06_explore"
    changed = load_results(nb.out_dir)
    changed.by_notebook["06_explore"] = changed.by_notebook["06_explore"][1:]  # a claim added since the run
    assert report.verdicts_of(changed)[1] == "evaluated from the recorded summaries"
    stale = nb.out_dir / "results" / "02_knowledge_distillation.json"
    os.utime(stale, (path.stat().st_mtime + 10, path.stat().st_mtime + 10))  # 02 re-run after 06
    assert report.verdicts_of(load_results(nb.out_dir))[1] == "evaluated from the recorded summaries"

    text = report.write_report(nb.out_dir).read_text()
    assert "| claim | paper | kdfair | held |" in text and CLAIMS[0].paper in text
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.README_BEGIN}\nSTALE BLOCK\n{report.README_END}\nafter\n")
    report.update_readme(readme, nb.out_dir)
    body = readme.read_text()
    assert body.startswith("intro\n") and body.endswith("\nafter\n") and "STALE BLOCK" not in body
    assert CLAIMS[1].paper in body and "date not recorded" in body
    other = tmp_path / "other.md"
    other.write_text("no markers")
    with pytest.raises(ValueError, match="no <!-- claims:begin -->"):
        report.update_readme(other, nb.out_dir)


def test_the_readme_shows_the_papers_numbers_from_paper_py():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = text.split(report.README_BEGIN, 1)[1].split(report.README_END, 1)[0]
    for claim in CLAIMS:
        assert f"| {claim.statement} | {claim.paper} |" in block


def test_population_selection_for_claims(recorded):
    _, _, results = recorded
    acc = results.metric("accuracy")
    from kdfair_utils.paper import DS_HIGHEST, DS_POOLED, DS_VERY_HIGH, Select

    assert report.select_values(acc, DS_HIGHEST)[0] == "DS@T=4"
    assert report.select_values(acc, DS_VERY_HIGH)[0] == "DS@T=20"
    name, values = report.select_values(acc, DS_POOLED)
    assert name == "DS (T = 1..10)" and len(values) == 9
    assert report.select_values(acc, Select(Population.teacher()))[1] == list(acc.of(Population.teacher()).values)
