"""The claim sets of every data set (kdfair_utils.paper.claims_for) against the paper's tables,
and the report on synthetic CelebA-like and class-bias-like records whose verdicts are known."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from kdfair_utils import inference as inf
from kdfair_utils import paper, report
from kdfair_utils.experiments import PROFILES
from kdfair_utils.paper import (CELEBA_MALE_APPROX, CELEBA_TABLE2, CELEBA_YOUNG, CELEBA_YOUNG_HIGH_T_APPROX, CLAIM_SETS,
                                TABLE1, TABLE4, Approx, claims_for)
from kdfair_utils.results import (ClassAccuracies, MetricSummary, Population, PopulationClassAccuracy,
                                  PopulationValues, metric_column, record)

TEACHER, NDS, D = Population.teacher(), Population.nds(), Population.ds
DATASETS = ("trifeature", "cifar100", "tinyimagenet", "imagenet", "celeba", "hatexplain")
NUMBER = r"\d+(?:\.\d+)?"
PAPER_MD = Path(__file__).resolve().parents[2] / "shared" / "reference" / "paper.md"
OPTS = report.Options(permutations=200, bootstrap_draws=20, seed=0, null_splits=20)


def _attributes(claim) -> set:
    test = claim.test
    return {test.attribute} - {None} if hasattr(test, "attribute") else set()


def _by_id(dataset: str) -> dict:
    return {c.id: c for c in claims_for(dataset)}


# ----------------------------------------------------------------------------- the sets
def test_known_sets_and_unknown_names():
    assert tuple(CLAIM_SETS) == DATASETS
    assert claims_for("trifeature") is paper.CLAIMS
    for name in ("svhn", "cifar10", "Celeba", ""):
        with pytest.raises(ValueError, match="known: trifeature, cifar100, tinyimagenet, imagenet, celeba, hatexplain"):
            claims_for(name)


@pytest.mark.parametrize("dataset", DATASETS)
def test_ids_are_distinct_and_names_exist_in_the_profile(dataset):
    claims = claims_for(dataset)
    assert len({c.id for c in claims}) == len(claims)
    profiles = [p for p in PROFILES.values() if p.main.dataset == dataset]
    assert profiles, f"no profile runs {dataset}"
    for profile in profiles:
        assert {c.experiment for c in claims} <= set(profile.experiments)
    for c in claims:
        metric = getattr(c.test, "metric", None)
        if metric is not None:
            metric_column(metric, c.test.attribute)  # a known metric, with an attribute exactly where it needs one
            if getattr(c.test, "shown", None):
                metric_column(c.test.shown, c.test.attribute)
    used = set().union(*map(_attributes, claims))
    if dataset == "celeba":
        assert used == {"young", "male", "nn"}
        assert all(a in profiles[0].analysis.attributes for c in claims for a in _attributes(c)
                   if c.test.metric.startswith(("eod", "dpd")))
        assert all(c.experiment == "main" for c in claims) and "teacher_accuracy" not in _by_id(dataset)
    elif dataset == "trifeature":
        assert used == {"color"}
    elif dataset == "hatexplain":  # Fig. 5: gender and race; no pairs for individual fairness on text
        assert used == {"gender", "race"} and all(c.experiment == "main" for c in claims)
        assert _by_id(dataset)["very_high_t_reverses_gender"].paper == "EOD 1.13 (T=10) → 4.49 (T=40); DPD 0.64 → 2.32"
    else:
        assert used == set() and all(c.experiment == "class_bias" for c in claims)
        assert [c.id for c in claims] == ["ds_more_accurate", "sc_rises", "sc_above_chance", "sc_beyond_accuracy",
                                          "beyond_accuracy_rises", "tc_falls"]


def test_celeba_claims_per_attribute():
    ids = list(_by_id("celeba"))
    shapes = ["eod_falls", "dpd_falls", "ds_fairer_than_nds", "ds1_fairer_than_nds", "ds_dpd_below_teacher",
              "very_high_t_reverses"]
    for attribute in ("young", "male"):
        mine = [c for c in claims_for("celeba") if _attributes(c) == {attribute}]
        # Male's values are read off a raster figure that does not resolve DS@T=1 from the NDS: no T = 1 claim
        expected = [s for s in shapes if attribute == "young" or s != "ds1_fairer_than_nds"]
        assert [c.id for c in mine] == [f"{s}_{attribute}" for s in expected]
        assert all(attribute.capitalize() in c.statement for c in mine)  # the table rows say which attribute
    assert ids[:2] == ["ds_more_accurate", "ds1_more_accurate"] and ids[-2:] == ["lipschitz_falls", "individual_order"]
    assert {c.test.attribute for c in claims_for("celeba") if c.id in ids[-2:]} == {"nn"}
    assert _by_id("celeba")["ds_fairer_than_nds_male"].paper == "NDS ≈4.3 vs DS ≈4.3 (T=1) → ≈2.8–3.3 (T=10)"


@pytest.mark.parametrize("dataset, row", [("cifar100", "CIFAR-100, ResNet-56 → ResNet-20"),
                                          ("imagenet", "ImageNet, ResNet-50 → ResNet-18")])
def test_class_bias_paper_columns_are_table1(dataset, row):
    table, c = TABLE1[row], _by_id(dataset)
    ds = [table[D(t)] for t in range(2, 11)]
    acc = [r.accuracy for r in ds]
    assert c["ds_more_accurate"].paper == f"NDS {table[NDS].accuracy:.2f} vs DS {min(acc):.2f}–{max(acc):.2f}"
    assert f"{ds[0].sc}→{ds[-1].sc}" in c["sc_rises"].paper
    assert f"{ds[0].tc}→{ds[-1].tc}" in c["tc_falls"].paper
    tc_min = min(r.tc for r in ds)
    assert (f"min {tc_min}" in c["tc_falls"].paper) == (tc_min < min(ds[0].tc, ds[-1].tc))
    assert "ImageNet" not in c["sc_rises"].paper and "CIFAR" not in c["tc_falls"].paper  # its own row only


def test_the_class_bias_numbers_as_the_paper_prints_them():
    c, i = _by_id("cifar100"), _by_id("imagenet")
    assert c["ds_more_accurate"].paper == "NDS 68.39 vs DS 68.63–69.81"
    assert c["sc_rises"].paper.endswith("5→22") and c["tc_falls"].paper.endswith("15→11 (min 6)")
    assert i["sc_rises"].paper.endswith("77→408") and i["tc_falls"].paper.endswith("314→86")


def test_tinyimagenet_invents_no_numbers():
    for c in claims_for("tinyimagenet"):
        assert c.paper == "not tested in the paper" or (
            "Table 6 not retrieved" in c.paper and re.findall(NUMBER, c.paper) == ["6"])


def test_celeba_paper_columns_are_table2_fig4b_and_table4():
    c, t2, t4 = _by_id("celeba"), CELEBA_TABLE2, TABLE4["CelebA"]
    acc = [t2[D(t)].accuracy for t in range(1, 11)]
    assert c["ds_more_accurate"].paper == f"NDS {t2[NDS].accuracy:.2f} vs DS {min(acc):.2f}–{max(acc):.2f}"
    assert c["ds_more_accurate"].paper == "NDS 92.03 vs DS 92.12–93.18"
    assert c["ds1_more_accurate"].paper == f"NDS {t2[NDS].accuracy:.2f} vs DS@T=1 {t2[D(1)].accuracy:.2f}"
    assert c["eod_falls_young"].paper == f"{t2[D(2)].eod:.2f}→{t2[D(10)].eod:.2f} (%)"
    assert c["dpd_falls_young"].paper == f"{t2[D(2)].dpd:.2f}→{t2[D(10)].dpd:.2f} (%)"
    assert c["ds_dpd_below_teacher_young"].paper == f"{t2[D(10)].dpd:.2f} (T=10) < {t2[TEACHER].dpd:.2f}"
    high = CELEBA_YOUNG_HIGH_T_APPROX[D(40)]
    assert c["very_high_t_reverses_young"].paper == (f"EOD {t2[D(10)].eod:.2f} (T=10) → {high.eod} (T=40); "
                                                     f"DPD {t2[D(10)].dpd:.2f} → {high.dpd}")
    assert c["very_high_t_reverses_young"].paper == "EOD 4.98 (T=10) → ≈6.05 (T=40); DPD 8.86 → ≈10.1"
    male = CELEBA_MALE_APPROX
    assert c["eod_falls_male"].paper == f"{male[D(2)].eod}→{male[D(10)].eod} (%)"
    assert c["ds_dpd_below_teacher_male"].paper == f"{male[D(10)].dpd} (T=10) < {male[TEACHER].dpd}"
    assert all(p.count("≈") >= 2 for p in (c[f"{s}_male"].paper for s in ("eod_falls", "dpd_falls",
                                                                         "very_high_t_reverses")))
    assert c["lipschitz_falls"].paper == f"{t4[D(2)]:g} (T=2) → {t4[D(10)]:g} (T=10)"
    order = c["individual_order"].paper
    ds = [t4[D(t)] for t in range(1, 11)]
    assert order == f"{t4[TEACHER]:g} < {min(ds):g}–{max(ds):g} < {t4[NDS]:g}" == "0.0407 < 0.0697–0.113 < 0.124"
    assert CELEBA_YOUNG[D(10)] is t2[D(10)] and CELEBA_YOUNG[D(20)] is CELEBA_YOUNG_HIGH_T_APPROX[D(20)]


def test_approximate_readings_print_as_read():
    assert str(Approx(13.0, 13.15)) == "≈13.0–13.15" and str(Approx(3.65)) == "≈3.65"
    assert str(Approx(10.1)) == "≈10.1"
    assert Approx(2.8, 3.3).upper == 3.3 and Approx(4.1).upper == 4.1
    shown = paper.frame(CELEBA_MALE_APPROX).set_index("T")  # the notebooks' display of the table
    assert shown.loc[8.0, "dpd"] == "≈13.0–13.15" and shown.loc[10.0, "eod"] == "≈2.8–3.3"


@pytest.mark.skipif(not PAPER_MD.exists(), reason="shared/reference/paper.md is not beside this checkout")
def test_celeba_approximate_values_are_transcribed_from_paper_md():
    text = PAPER_MD.read_text()
    section = text.split("### CelebA, attribute `Male`", 1)[1].split("###", 1)[0]
    male = section.split("- CelebA-Male:", 1)[1].split("- CelebA-Young", 1)[0]
    young = section.split("- CelebA-Young at high T:", 1)[1]

    def readings(line: str) -> dict:
        out = {}
        for a, b, value in re.findall(rf"T(\d+)(?:–(\d+))? ≈ ({NUMBER}(?:–{NUMBER})?)", line):
            for t in range(int(a), int(b or a) + 1):
                out[D(t)] = "≈" + value
        return out

    lines = {key: next(line for line in male.splitlines() if f"- {key}:" in line) for key in ("DS DPD", "DS EOD")}
    for metric, key in (("dpd", "DS DPD"), ("eod", "DS EOD")):
        read = readings(lines[key])
        assert len(read) == 13 and {p: str(getattr(r, metric)) for p, r in CELEBA_MALE_APPROX.items()
                                    if p.role == "ds"} == read
    for who, pop in (("Teacher", TEACHER), ("NDS", NDS)):
        dpd, eod = re.search(rf"{who} DPD ≈ ({NUMBER}(?:–{NUMBER})?), EOD ≈ ({NUMBER})", male).groups()
        assert (str(CELEBA_MALE_APPROX[pop].dpd), str(CELEBA_MALE_APPROX[pop].eod)) == ("≈" + dpd, "≈" + eod)
    dpd_part, eod_part = young.split("DS EOD", 1)
    for metric, part in (("dpd", dpd_part), ("eod", eod_part)):
        assert {p: str(getattr(r, metric)) for p, r in CELEBA_YOUNG_HIGH_T_APPROX.items()} == readings(part)


# ----------------------------------------------------------------------------- synthetic runs
SEEDS = (0, 1, 2, 3, 4)
CELEBA = "CelebA (synthetic records), ResNet-50 teacher → ResNet-18 students"
CELEBA_T = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30, 40)
CLASS_BIAS_T = (2, 3, 4, 5, 6, 7, 8, 9, 10)


def _summary(metric, attribute, teacher, nds, ds, temps, rng, noise=0.02) -> MetricSummary:
    """A summary whose every population's 5 models scatter (``noise``) around the given means; ``ds(T)``."""
    def pop(p, mean, teachers=None):
        return PopulationValues(p, SEEDS, tuple(float(v) for v in mean + noise * rng.standard_normal(5)), teachers)

    pops = (pop(TEACHER, teacher), pop(NDS, nds), *(pop(D(t), ds(t), SEEDS) for t in temps))
    return MetricSummary("main", "smiling", "test", metric, attribute, "", pops)


def _fairness(attribute, excess, rng) -> list[MetricSummary]:
    """EOD and DPD of ``attribute``, each as raw, reference, its band and excess; ``excess`` gives
    (teacher, NDS, DS(T)) excess means; the reference is 1 everywhere."""
    t_mean, n_mean, ds = excess
    out = []
    for m in ("eod", "dpd"):
        for part, base in {"": 1.0, "_ref": 1.0, "_ref_low": 0.5, "_ref_high": 1.5, "_excess": 0.0}.items():
            add = part in ("", "_excess")
            out.append(_summary(m + part, attribute, base + add * t_mean, base + add * n_mean,
                                lambda t, base=base, add=add: base + add * ds(t), CELEBA_T, rng))
    return out


def _write(out: Path, profile: str, records: dict) -> None:
    for notebook, recs in records.items():
        record(out, notebook, recs, profile=profile, config_key="synthetic")


@pytest.fixture(scope="module")
def celeba_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("celeba")
    rng = np.random.default_rng(0)
    _write(out, "celeba", {
        "02_knowledge_distillation": [_summary("accuracy", None, 93.0, 92.0, lambda t: 92.6, CELEBA_T, rng)],
        # young: the DS excess falls over T = 2..10 and rises again at very high T (as the paper says)
        "04_group_fairness": _fairness("young", (3.0, 4.0, lambda t: 3.0 - 0.1 * t if t <= 10 else 2.0 + 0.05 * t),
                                       rng)
        # male: built the opposite way, the excess rises with T
        + _fairness("male", (1.0, 1.0, lambda t: 1.0 + 0.1 * t), rng),
        "05_individual_fairness": [_summary("lipschitz", "nn", 0.04, 0.12, lambda t: 0.11 - 0.004 * t, CELEBA_T, rng,
                                            noise=0.002)],
    })
    path = report.write_report(out, OPTS, dataset="celeba", description=CELEBA)
    return out, path.read_text(), {v["claim"]: v for v in json.loads((out / "claims.json").read_text())}


def test_celeba_report_has_its_claims_with_verdicts(celeba_report):
    out, text, verdicts = celeba_report
    assert list(verdicts) == [c.id for c in claims_for("celeba")]
    for c in claims_for("celeba"):
        assert f"| {c.statement} | {c.paper} |" in text
    held = {k: v["held"] for k, v in verdicts.items()}
    assert held["eod_falls_young"] == inf.HOLDS and held["eod_falls_male"] == inf.OPPOSITE
    assert held["very_high_t_reverses_young"] == inf.HOLDS and held["ds_fairer_than_nds_young"] == inf.HOLDS
    assert held["ds_dpd_below_teacher_young"] == inf.HOLDS
    assert held["ds_more_accurate"] == inf.HOLDS and held["ds1_more_accurate"] == inf.HOLDS
    assert held["lipschitz_falls"] == inf.HOLDS and held["individual_order"] == inf.HOLDS
    assert "n/a" not in {held[c] for c in ("eod_falls_young", "dpd_falls_male", "lipschitz_falls")}
    assert verdicts["eod_falls_young"]["support"] is not None  # the teacher-cluster bootstrap ran


def test_celeba_report_sections(celeba_report):
    out, text, _ = celeba_report
    assert f"\n{CELEBA}; every number below" in text
    assert "Trifeature" not in text and "## Class bias" not in text
    for attribute in ("young", "male"):
        assert f"## Group fairness beside its zero-disparity reference ({attribute})\n" in text
    assert text.count(report.FAIRNESS_NOTE) == 1
    young = text.split("reference (young)", 1)[1].split("## ", 1)[0]
    assert "| DS@T=40 |" in young and "| teacher |" in young
    assert report.write_report(out, OPTS, dataset="celeba", description=CELEBA).read_text() == text


def test_the_default_header_is_the_data_sets_setup(celeba_report):
    out, _, _ = celeba_report
    text = report.write_report(out, OPTS, dataset="celeba").read_text()
    assert f"\n{paper.DESCRIPTIONS['celeba']}; every number" in text
    with pytest.raises(ValueError, match="known: trifeature"):
        report.write_report(out, OPTS, dataset="svhn")


def _class_accuracies(experiment: str, rng, n: int = 20) -> ClassAccuracies:
    """Per-class accuracies where the DS at T takes the teacher's class-specific shifts on the
    first 2(T − 1) of 18 classes (NDS elsewhere): #SC rises and #TC falls with T. The shifts
    alternate in sign, so the overall accuracy stays the same."""
    shift = np.array([0.15 * (1 if c % 2 == 0 else -1) if c < 18 else 0.0 for c in range(n)])

    def pop(p, k):
        acc = np.clip(0.7 + np.where(np.arange(n) < k, shift, 0.0) + 0.01 * rng.standard_normal((5, n)), 0, 1)
        return PopulationClassAccuracy(p, SEEDS, tuple(float(v) for v in acc.mean(1)),
                                       tuple(tuple(float(v) for v in row) for row in acc))

    pops = (pop(TEACHER, 18), pop(NDS, 0), *(pop(D(t), 2 * (t - 1)) for t in CLASS_BIAS_T))
    return ClassAccuracies(experiment, "class", tuple(f"c{i}" for i in range(n)), (50,) * n, pops)


def test_class_bias_report(tmp_path):
    rng = np.random.default_rng(1)
    accuracy = _summary("accuracy", None, 71.0, 68.4, lambda t: 69.3, CLASS_BIAS_T, rng, noise=0.1)
    cb = _class_accuracies("class_bias", rng)
    _write(tmp_path, "cifar100", {"02_knowledge_distillation": [accuracy], "03_class_bias": [cb]})
    text = report.write_report(tmp_path, OPTS, dataset="cifar100").read_text()
    verdicts = {v["claim"]: v for v in json.loads((tmp_path / "claims.json").read_text())}
    assert list(verdicts) == [c.id for c in claims_for("cifar100")]
    assert verdicts["sc_rises"]["held"] == inf.HOLDS and verdicts["tc_falls"]["held"] == inf.HOLDS
    sc, tc = (re.match(r"(\d+)→(\d+) of 20 ", verdicts[c]["kdfair"]).groups() for c in ("sc_rises", "tc_falls"))
    assert int(sc[0]) <= 4 and int(sc[1]) >= 18 and int(tc[0]) >= 16 and int(tc[1]) <= 2  # 2→18 and 16→0 built in
    # the class-bias experiment is the main grid: its accuracy is main's record
    assert verdicts["ds_more_accurate"]["held"] == inf.HOLDS
    assert verdicts["ds_more_accurate"]["kdfair"].startswith("NDS 68.4")
    assert f"\n{paper.DESCRIPTIONS['cifar100']}; every number" in text
    assert text.count("\n## Class bias, ") == 1 and "\n## Class bias, 20 classes\n" in text
    assert "shape" not in text and "## Group fairness" not in text

    # a main grid of its own: two sections, and no class-bias accuracy to compare
    _write(tmp_path, "cifar100", {"03_class_bias": [_class_accuracies("main", np.random.default_rng(2)), cb]})
    rewritten = report.write_report(tmp_path, OPTS, dataset="cifar100").read_text()
    assert rewritten.count("\n## Class bias, ") == 2
    assert json.loads((tmp_path / "claims.json").read_text())[0]["held"] == inf.NA
    # both experiments recorded with the same records: the report of the class-bias grid alone
    same = ClassAccuracies("main", cb.task, cb.class_names, cb.test_per_class, cb.populations)
    _write(tmp_path, "cifar100", {"03_class_bias": [same, cb]})
    assert report.write_report(tmp_path, OPTS, dataset="cifar100").read_text() == text
