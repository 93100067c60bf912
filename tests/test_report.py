"""The report reads the typed records the notebooks write: these tests build them with the same
library calls the notebooks make, without running a notebook, so a renamed field fails here."""

import os
import warnings

import numpy as np
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps

from kdfair_utils import group_fairness, individual_fairness, report
from kdfair_utils import inference as inf
from kdfair_utils.class_bias import class_bias_summary, class_bias_test
from kdfair_utils.class_bias_controls import class_accuracies
from kdfair_utils.datasets import dataset_summary
from kdfair_utils.paper import CLAIMS, claims_for
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
                                                 null_splits=a.null_splits),
                              class_accuracies(nb.grid(), experiment="main"),
                              class_accuracies(nb.grid("class_bias"), experiment="class_bias")],
            "04_group_fairness": group_fairness.summaries(table, a.attributes),
            "05_individual_fairness": individual_fairness.summaries(table, a.pair_kinds),
        }
    for name, recs in records.items():
        nb.notebook = name
        nb.record(*recs)
    return nb, table, load_results(nb.out_dir)


OPTS = report.Options(permutations=200, bootstrap_draws=20, seed=0, null_splits=20)


@pytest.fixture(scope="module")
def verdicts(recorded):
    return {v.claim: v for v in report.evaluate_claims(recorded[2], OPTS)}


def test_every_claim_is_measured_from_the_records(recorded, verdicts):
    assert list(verdicts) == [c.id for c in CLAIMS]
    assert all(v.held in inf.VERDICTS for v in verdicts.values())
    main = [c.id for c in CLAIMS if c.experiment == "main"]
    missing = [(c, verdicts[c].kdfair, verdicts[c].rule) for c in main if verdicts[c].kdfair == "n/a" or not verdicts[c].evidence]
    assert not missing  # every main claim found its records
    for v in verdicts.values():
        assert v.held != "n/a" or v.support is None  # (a measurable verdict can lack a support: too few units)
        assert v.support is None or 0 <= v.support <= 1
    assert verdicts["teacher_accuracy"].support is None or verdicts["teacher_accuracy"].held == "n/a"  # 2 teachers
    # 3 + 3 models cannot reach p < 0.05 in the permutation null
    assert verdicts["sc_above_chance"].held == "n/a"


def test_claim_values_equal_hand_computations(recorded, verdicts):
    _, table, results = recorded
    v = verdicts
    nds = table[table.role == "nds"].sort_values("seed")
    ds = table[(table.role == "ds") & (table["T"] <= 10)]
    # paired over seeds: NDS accuracy below the per-seed mean of the DS over T = 1..10
    per_seed = ds.groupby("seed")["accuracy"].mean().loc[nds["seed"]].to_numpy()
    p = sps.ttest_rel(nds["accuracy"].to_numpy(), per_seed, alternative="less").pvalue
    assert v["ds_more_accurate"].p_value == pytest.approx(p, rel=1e-12)
    # the seed-blocked slope of the EOD excess over T = 2..10 equals statsmodels' fixed-effects OLS
    window = ds[ds["T"] >= 2]
    fit = smf.ols("eod_excess_color ~ T + C(seed)", window).fit()
    assert v["eod_falls"].estimate == pytest.approx(fit.params["T"], rel=1e-9, abs=1e-12)
    teachers = table.loc[table.role == "teacher", "accuracy"]
    assert v["teacher_accuracy"].estimate == pytest.approx(teachers.mean())
    assert v["teacher_accuracy"].p_value == pytest.approx(sps.ttest_1samp(teachers, 99.0, alternative="greater").pvalue)
    # #TC at each T equals the paper's Welch count (ratio) computed from the predictions
    grid = recorded[0].grid("class_bias")
    y = grid.dataset.test.labels
    if v["tc_falls"].held != "n/a":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tc = [class_bias_test(y, grid.predictions(Population.teacher()), grid.predictions(Population.ds(t)),
                                  normalization="ratio").counts.raw for t in (2.0, 8.0)]
        assert v["tc_falls"].kdfair.startswith(f"{tc[0]}→{tc[-1]} of 100")


def test_undefined_values_give_n_a():
    from kdfair_utils.results import MetricSummary, PopulationValues, Results

    nan = float("nan")
    pops = (PopulationValues(Population.teacher(), (0, 1), (3.0, 3.5)), PopulationValues(Population.nds(), (0, 1), (9.0, nan)),
            *(PopulationValues(Population.ds(t), (0, 1), (5.0 - t / 10, nan if t == 4 else 4.0)) for t in (1, 2, 4, 10)))
    excess = MetricSummary("main", "shape", "test", "eod_excess", "color", "", pops)
    results = Results({"04_group_fairness": [excess]}, "quick", "k", {"04_group_fairness": 0.0})
    v = {x.claim: x for x in report.evaluate_claims(results, OPTS)}
    assert v["eod_falls"].held == "n/a" and v["ds_fairer_than_nds"].held == "n/a"
    assert v["very_high_t_reverses"].held == "n/a"  # no T in 20..40 recorded
    assert excess.frame()["mean"].isna().sum() == 2  # displayed as undefined, not averaged away


def test_report_readme_and_the_once_computed_verdicts(recorded, tmp_path):
    nb, _, results = recorded
    verdicts, source = report.verdicts_of(results, OPTS)
    assert source == "evaluated from the recorded summaries"
    nb.notebook = "06_explore"
    nb.record(*verdicts)
    path = nb.out_dir / "results" / "06_explore.json"
    again, source = report.verdicts_of(load_results(nb.out_dir))
    assert again == verdicts and source == "recorded by 06_explore"
    changed = load_results(nb.out_dir)
    changed.by_notebook["06_explore"] = changed.by_notebook["06_explore"][1:]  # a claim added since the run
    assert report.verdicts_of(changed)[1] == "evaluated from the recorded summaries"
    celeba = claims_for("celeba")  # recorded verdicts of other claims are not reused
    other, source = report.verdicts_of(load_results(nb.out_dir), OPTS, celeba)
    assert [v.claim for v in other] == [c.id for c in celeba] and source == "evaluated from the recorded summaries"
    stale = nb.out_dir / "results" / "02_knowledge_distillation.json"
    os.utime(stale, (path.stat().st_mtime + 10, path.stat().st_mtime + 10))  # 02 re-run after 06
    assert report.verdicts_of(load_results(nb.out_dir))[1] == "evaluated from the recorded summaries"

    text = report.write_report(nb.out_dir, OPTS).read_text()
    assert "| claim | paper | kdfair | test | verdict | support |" in text and CLAIMS[0].paper in text
    assert "zero-disparity reference" in text and "## Class bias, 10 classes (shape)\n" in text
    assert "\nTrifeature (generated), ResNet-20 teacher → LeNet-5 students; every number" in text
    assert "## Class bias, 100 classes (shape × colour)\n" in text
    for name in ("colour", "texture"):  # every recorded attribute
        assert f"## Group fairness beside its zero-disparity reference ({name})\n" in text
    assert report.write_report(nb.out_dir, OPTS).read_text() == text  # deterministic: no run times, seeded resampling
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
    name, values, seeds = report.select_values(acc, DS_POOLED)
    assert name == "DS (T = 1..10, per-seed mean)" and len(values) == 3 and seeds == (0, 1, 2)
    expected = np.mean([acc.of(Population.ds(t)).values for t in (1, 2, 4)], axis=0)
    np.testing.assert_allclose(values, expected, rtol=1e-12)
    assert list(report.select_values(acc, Select(Population.teacher()))[1]) == list(acc.of(Population.teacher()).values)
