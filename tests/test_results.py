"""The results layer: populations selected by fields, one population_stats, typed records that
round-trip through JSON strictly."""

import json
import math
import warnings

import numpy as np
import pytest

from kdfair_utils.results import (SCHEMA, ClaimVerdict, ClassAccuracies, MetricSummary, Population, PopulationValues, SignificantCounts,
                                  load_results, metric_column, record, record_from_plain, record_to_plain,
                                  summarize)


def test_population_fields_and_display():
    assert Population.ds(4) == Population("ds", 4.0) and hash(Population.ds(4)) == hash(Population("ds", 4.0))
    assert Population.teacher().name == "teacher" and Population.nds().name == "NDS"
    assert Population.ds(4).name == "DS@T=4" and str(Population.ds(2.5)) == "DS@T=2.5"
    pops = [Population.ds(10), Population.nds(), Population.ds(2), Population.teacher()]
    assert sorted(pops, key=lambda p: p.sort_key) == [Population.teacher(), Population.nds(), Population.ds(2),
                                                      Population.ds(10)]


@pytest.mark.parametrize("role,t,match", [("student", None, "unknown role"), ("ds", None, "finite temperature"),
                                          ("ds", 0, "finite temperature"), ("ds", math.inf, "finite temperature"),
                                          ("ds", True, "finite temperature"), ("nds", 4.0, "has no temperature")])
def test_population_refuses_bad_fields(role, t, match):
    with pytest.raises(ValueError, match=match):
        Population(role, t)


def test_summarize_groups_by_fields(tiny_lesson):
    table = tiny_lesson.table()
    acc = summarize(table, "accuracy")
    assert [p.population for p in acc.populations] == tiny_lesson.grid().populations()
    ds4 = acc.of(Population.ds(4))
    assert ds4.seeds == (0, 1, 2)
    assert ds4.values == tuple(table.loc[(table.role == "ds") & (table["T"] == 4.0), "accuracy"])
    s = ds4.stats()
    assert s.mean == pytest.approx(np.mean(ds4.values)) and s.std == pytest.approx(np.std(ds4.values, ddof=1))
    assert [p.population.temperature for p in acc.ds((1, 10))] == [1.0, 2.0, 4.0]
    assert acc.task == "shape" and acc.split == "test" and acc.unit == "%" and "accuracy" in acc.definition
    eod = summarize(table, "eod", "color")
    assert eod.attribute == "color" and eod.of(Population.nds()).values == tuple(table.loc[table.role == "nds",
                                                                                           "eod_color"])
    frame = eod.frame()
    assert list(frame["population"]) == ["teacher", "NDS", "DS@T=1", "DS@T=2", "DS@T=4", "DS@T=20"]
    with pytest.raises(ValueError, match="no 'eod_size' column"):
        summarize(table, "eod", "size")
    with pytest.raises(ValueError, match="needs attribute"):
        metric_column("eod")
    with pytest.raises(KeyError, match="no DS@T=3"):
        acc.of(Population.ds(3))


def test_records_round_trip_exactly(tiny_lesson):
    from kdfair_utils.class_bias import class_bias_summary
    from kdfair_utils.datasets import dataset_summary

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cb = class_bias_summary(tiny_lesson.grid("class_bias"), experiment="class_bias", normalization="difference",
                                null_splits=20)
    from kdfair_utils.class_bias_controls import class_accuracies

    records = [summarize(tiny_lesson.table(), "lipschitz", "color"), cb,
               summarize(tiny_lesson.table(), "eod_excess", "color"),
               class_accuracies(tiny_lesson.grid("class_bias"), experiment="class_bias"),
               dataset_summary(tiny_lesson.data(), ("color", "texture")),
               ClaimVerdict("c", "s", "p", "k", "p = 0.01", "holds", 0.5, "rule", math.nan, None)]
    for rec in records:
        plain = json.loads(json.dumps(record_to_plain(rec)))
        back = record_from_plain(plain)
        assert type(back) is type(rec)
        if isinstance(rec, ClaimVerdict):
            assert back.estimate is None and back.p_value is None  # NaN is stored as null
        elif isinstance(rec, ClassAccuracies):  # classes absent from the tiny test split are NaN (≠ NaN)
            assert record_to_plain(back) == record_to_plain(rec) and back.populations[0].per_class
        else:
            assert back == rec


def test_reading_refuses_drifted_fields():
    rec = MetricSummary("main", "shape", "test", "accuracy", None, "", (
        PopulationValues(Population.nds(), (0, 1), (80.0, 82.0)),))
    plain = record_to_plain(rec)
    renamed = {**plain, "pops": plain["populations"]}
    del renamed["populations"]
    with pytest.raises(ValueError, match=r"missing \['populations'\], unknown \['pops'\]"):
        record_from_plain(renamed)
    wrong = json.loads(json.dumps(plain))
    wrong["populations"][0]["seeds"] = ["0", "1"]
    with pytest.raises(ValueError, match=r"populations\[0\]\.seeds\[0\]: expected int"):
        record_from_plain(wrong)
    with pytest.raises(ValueError, match="unknown record kind 'metrics'"):
        record_from_plain({**plain, "kind": "metrics"})
    with pytest.raises(ValueError, match="unknown metric 'acc'"):
        record_from_plain({**plain, "metric": "acc"})
    with pytest.raises(TypeError, match="not a record"):
        record_to_plain(SignificantCounts(1, 0, 0, 10))


def test_results_of_different_configurations_do_not_mix(tmp_path):
    rec = MetricSummary("main", "shape", "test", "accuracy", None, "", (
        PopulationValues(Population.nds(), (0,), (80.0,)),))
    record(tmp_path, "02_a", [rec], profile="quick", config_key="aaa")
    record(tmp_path, "04_b", [], profile="quick", config_key="aaa")
    results = load_results(tmp_path)
    assert results.metric("accuracy") == rec and results.metric("eod", "color") is None
    assert results.profile == "quick" and results.config_key == "aaa"
    record(tmp_path, "05_c", [], profile="quick", config_key="bbb")
    with pytest.raises(ValueError, match="different configurations"):
        load_results(tmp_path)
    (tmp_path / "results" / "05_c.json").write_text(json.dumps({"schema": 0, "records": []}))
    with pytest.raises(ValueError, match=f"not a kdfair results file of schema {SCHEMA}"):
        load_results(tmp_path)


def test_summary_table_shows_mean_and_std_per_population():
    from kdfair_utils.results import summary_table

    a = MetricSummary("main", "shape", "test", "accuracy", None, "", (
        PopulationValues(Population.ds(2), (0, 1), (80.0, 84.0)), PopulationValues(Population.nds(), (0, 1), (70.0, 71.0))))
    table = summary_table({"acc": a}, digits=1)
    assert list(table.index) == ["NDS", "DS@T=2"] and list(table["n"]) == [2, 2]
    assert table.loc["DS@T=2", "acc"] == f"82.0 ± {np.std([80.0, 84.0], ddof=1):.1f}"
