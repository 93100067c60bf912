"""The notebook series, executed end to end with papermill on tiny parameters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from kdfair_utils import series

NOTEBOOKS = series.series_notebooks()
TINY = dict(SEEDS=[0, 1, 2], TEACHER_SEEDS=[0, 1], TEMPERATURES=[1, 4, 20], TEACHER_EPOCHS=2, STUDENT_EPOCHS=2,
            IMAGE_SIZE=16, PER_COMBINATION=1, NULL_SPLITS=20, CLASS_BIAS_TEMPERATURES=[1, 4],
            # 2-epoch 100-class students can score 0 %, for which the ratio form is undefined
            NORMALIZATION="difference", CLASS_BIAS_TEACHER_EPOCHS=2, CLASS_BIAS_TEACHER_BATCH=None)


def test_series_is_ordered_and_complete():
    names = [p.name for p in NOTEBOOKS]
    assert names == ["01_setup_and_data.ipynb", "02_knowledge_distillation.ipynb", "03_class_bias.ipynb",
                     "04_group_fairness.ipynb", "05_individual_fairness.ipynb", "06_explore.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_with_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] <= 2
    assert nb.cells[0].cell_type == "markdown"  # every lesson opens with prose
    import papermill as pm

    declared = pm.inspect_notebook(str(path))
    assert {"PROFILE", "DEVICE", "SEEDS", "TEMPERATURES", "DATA_DIR", "RUNS_DIR", "OUT_DIR"} <= set(declared)


@pytest.fixture(scope="module")
def tiny_series(tmp_path_factory):
    root = tmp_path_factory.mktemp("series")
    report = series.run_series("quick", out_dir=root / "out", runs_dir=root / "runs", data_dir=root / "data",
                               extra_parameters=TINY, progress=False)
    return root, report, series.load_results(root / "out")


def test_every_notebook_ran_without_errors(tiny_series):
    root, _, results = tiny_series
    assert sorted(results) == [p.stem for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        nb = nbformat.read(root / "out" / path.name, as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        assert any(c.metadata.get("tags") == ["injected-parameters"] for c in nb.cells)


def test_recorded_values(tiny_series):
    root, report, r = tiny_series
    assert r["01_setup_and_data"]["n_train"] + r["01_setup_and_data"]["n_test"] == 1000
    assert 0 <= r["01_setup_and_data"]["base_rate_dpd"]["color"] < 100

    acc = r["02_knowledge_distillation"]["accuracy"]
    assert set(acc) == {"teacher", "nds", "ds@T=1", "ds@T=4", "ds@T=20"}
    assert acc["teacher"]["n"] == 2 and acc["nds"]["n"] == 3
    assert all(0 <= v["mean"] <= 100 for v in acc.values())
    assert r["02_knowledge_distillation"]["kd_loss_matches_hand_computation"] is True

    cb = r["03_class_bias"]["variants"]
    assert cb["shape"]["T"] == [1.0, 4.0] and len(cb["shape"]["SC_raw"]) == 2
    hard = cb["shape_color"]
    assert len(hard["class_names"]) == 100
    assert all(0 <= v <= 100 for v in hard["SC_raw"] + hard["TC_raw"] + hard["SC_bh"])
    assert all(bh <= raw for bh, raw in zip(hard["SC_bh"], hard["SC_raw"]))
    assert 0 < hard["null_p_value_raw"] <= 1

    gf = r["04_group_fairness"]
    assert gf["fairlearn_max_diff"] is not None and gf["fairlearn_max_diff"] <= 1e-12
    assert gf["hand_example"] == {"dpd": 0.25, "eod": 0.5}
    assert gf["T"] == [1.0, 4.0, 20.0] and len(gf["ds"]["eod"]) == 3
    assert all(0 <= v <= 100 for v in gf["ds"]["eod"] + gf["ds"]["dpd"] + [gf["nds"]["eod"], gf["teacher"]["dpd"]])
    assert gf["very_high_T"]["T"] == 20.0 and set(gf["by_attribute"]) == {"color", "texture"}
    assert gf["ds_mean_t1_10"]["n"] == 6 and gf["nds"]["n"] == 3  # DS at T = 1 and 4, 3 seeds each

    ind = r["05_individual_fairness"]
    assert len(ind["ds"]) == 3 and all(v >= 0 for v in ind["ds"] + [ind["teacher"], ind["nds"]])
    assert set(ind["by_attribute"]) == {"color", "texture"}

    claims = r["06_explore"]["claims"]
    assert r["06_explore"]["checked"] == len(claims) >= 8
    assert all(c["held"] in ("yes", "weakly", "no", "n/a") for c in claims)
    text = report.read_text()
    assert text.index("## Paper vs kdfair") < text.index("## Figures")
    assert "| claim | paper | kdfair | held |" in text
    pngs = {p.name for p in (root / "out" / "figures").glob("*.png")}
    assert {"01_gallery_shape_by_colour.png", "03_counts_vs_T_100_classes.png", "04_fairness_vs_T.png"} <= pngs
    assert (root / "out" / "figures" / "04_fairness_vs_T.svg").exists()


def test_one_notebook_alone_with_the_papermill_cli(tiny_series, tmp_path):
    """A notebook run by itself, as a user would, reusing the cached grid (nothing retrains)."""
    root, _, _ = tiny_series
    models_before = sorted((root / "runs" / "models").iterdir())
    args = [sys.executable, "-m", "papermill", str(NOTEBOOKS[4]), str(tmp_path / "out.ipynb"),
            "--cwd", str(NOTEBOOKS[4].parent), "-k", "python3",
            "-p", "RUNS_DIR", str(root / "runs"), "-p", "DATA_DIR", str(root / "data"),
            "-p", "OUT_DIR", str(tmp_path / "res")]
    for key in ("SEEDS", "TEACHER_SEEDS", "TEMPERATURES", "TEACHER_EPOCHS", "STUDENT_EPOCHS", "IMAGE_SIZE",
                "PER_COMBINATION"):
        args += ["-y", f"{key}: {json.dumps(TINY[key])}"]
    subprocess.run(args, check=True, capture_output=True)
    assert sorted((root / "runs" / "models").iterdir()) == models_before
    assert json.loads((tmp_path / "res" / "results" / "05_individual_fairness.json").read_text())["T"] == [1.0, 4.0, 20.0]


def test_claim_verdicts():
    assert series.trend_verdict(-0.8, -1) == "yes" and series.trend_verdict(-0.2, -1) == "weakly"
    assert series.trend_verdict(0.3, -1) == "no" and series.trend_verdict(None, -1) == "n/a"
    a = {"mean": 80.0, "std": 1.0, "n": 5}
    assert series.less_verdict(a, {"mean": 90.0, "std": 1.0, "n": 5}) == "yes"
    assert series.less_verdict(a, {"mean": 80.5, "std": 3.0, "n": 5}) == "weakly"
    assert series.less_verdict({"mean": 95.0}, a) == "no"
    from scipy.stats import ttest_ind

    x, z = [1.0, 2.0, 3.0], [2.5, 3.5, 4.5]
    p = ttest_ind(x, z, equal_var=False, alternative="less").pvalue
    stats = lambda v: {"eod": float(sum(v) / 3), "eod_std": 1.0, "n": 3}  # noqa: E731
    assert series.less_verdict(stats(x), stats(z), "eod") == ("yes" if p < 0.05 else "weakly")


def test_unknown_parameter_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown notebook parameter"):
        series.run_series("quick", out_dir=tmp_path, extra_parameters={"EPOCHS": 3}, progress=False)


def test_a_failing_notebook_names_the_cell(tmp_path):
    bad = tmp_path / "01_bad.ipynb"
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("PROFILE = 'quick'")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise KeyError('boom')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, bad)
    with pytest.raises(RuntimeError, match=r"01_bad.ipynb failed in cell \d+ \(KeyError: 'boom'\)"):
        series.run_series("quick", out_dir=tmp_path / "out", notebooks=[bad], progress=False)


@pytest.mark.slow
def test_kdfair_run_quick_end_to_end(tmp_path):
    """The main job, as `make reproduce` runs it (the whole quick profile, a few minutes)."""
    import time

    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "kdfair_utils.cli", "run", "--profile", "quick", "--quiet",
                           "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True, cwd=tmp_path)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "runs" / "quick" / "report.md").read_text()
    claims = json.loads((tmp_path / "runs" / "quick" / "claims.json").read_text())
    assert len(claims) >= 8 and all(c["kdfair"] != "n/a" for c in claims[:2])
    acc = json.loads((tmp_path / "runs" / "quick" / "results" / "02_knowledge_distillation.json").read_text())
    assert acc["accuracy"]["teacher"]["mean"] > 90  # a trained teacher, whatever the claims say
    print(f"kdfair run --profile quick: {elapsed:.0f} s\n{report[:3000]}")
