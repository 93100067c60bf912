"""The notebook series: structure checks (fast) and end-to-end runs with papermill (slow)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from conftest import TINY_OVERRIDES
from kdfair_utils import checks, course, runner
from kdfair_utils.results import ClaimVerdict, ClassBiasSummary, DatasetSummary, MetricSummary, Population

NOTEBOOKS = runner.series_notebooks()
PACKAGE = Path(runner.__file__).resolve().parent

# The series on tiny data: the whole notebook path in about a minute.
TINY = {**TINY_OVERRIDES, "teacher": "resnet20", "main.teacher_train.epochs": 2, "class_bias.teacher_train.epochs": 2,
        "student_train.epochs": 2}


def code_cells(path: Path, *, parameters: bool = True) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"
            and (parameters or "parameters" not in c.metadata.get("tags", []))]


def test_series_is_ordered_and_complete():
    names = [p.name for p in NOTEBOOKS]
    assert names == ["01_setup_and_data.ipynb", "02_knowledge_distillation.ipynb", "03_class_bias.ipynb",
                     "04_group_fairness.ipynb", "05_individual_fairness.ipynb", "06_explore.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_with_the_series_parameters(path):
    import papermill as pm

    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] <= 2
    assert nb.cells[0].cell_type == "markdown"  # every lesson opens with prose
    assert set(pm.inspect_notebook(str(path))) == set(runner.PARAMETERS)
    assert f'setup("{path.stem}", PROFILE, OVERRIDES' in "\n".join(code_cells(path))  # one call does the setup
    assert "lesson.record(" in code[-1].source  # and each lesson ends by recording its summaries


def _normalised_lines(source: str) -> list[str]:
    """Code lines as a duplicate scan sees them: no blanks, comments, imports or lone punctuation;
    names, strings and numbers folded, so lines of the same shape compare equal."""
    out = []
    for line in source.splitlines():
        line = line.split("  #")[0].strip()
        if not line or line.startswith(("#", "import ", "from ")) or re.fullmatch(r"[\W_]+", line):
            continue
        line = re.sub(r"(\"[^\"]*\"|'[^']*')", "S", line)
        line = re.sub(r"\b\d+(\.\d+)?\b", "N", line)
        out.append(re.sub(r"\b[A-Za-z_]\w*\b", "x", line))
    return out


def test_no_copied_setup_block_across_notebooks():
    """No run of 6 same-shaped code lines appears in two notebooks (the old 24-line setup block did)."""
    runs: dict[tuple[str, ...], set[str]] = {}
    for path in NOTEBOOKS:
        # the parameters cell is the series' interface, the same in every notebook by design
        lines = [x for cell in code_cells(path, parameters=False) for x in _normalised_lines(cell)]
        for i in range(len(lines) - 5):
            runs.setdefault(tuple(lines[i:i + 6]), set()).add(path.stem)
    shared = {run: nbs for run, nbs in runs.items() if len(nbs) > 1}
    assert not shared, f"{len(shared)} copied 6-line runs, e.g. in {sorted(next(iter(shared.values())))}"


def test_no_population_name_is_parsed_from_a_string():
    sources = {p: p.read_text() for p in PACKAGE.glob("*.py")}
    sources.update({p: "\n".join(code_cells(p)) for p in NOTEBOOKS})
    for path, text in sources.items():
        assert not re.search(r"split\(\s*[\"'][=@]", text), path
        assert '"ds@' not in text and "'ds@" not in text, path


def test_unknown_override_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="unknown override 'EPOCHS'; known: .*student_train.epochs"):
        runner.run_series("quick", {"EPOCHS": 3}, runs_dir=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())


def test_a_failing_notebook_names_the_cell(tmp_path):
    bad = tmp_path / "01_bad.ipynb"
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("\n".join(f"{name} = None" for name in runner.PARAMETERS))
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise KeyError('boom')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, bad)
    with pytest.raises(RuntimeError, match=r"01_bad.ipynb failed in cell \d+ \(KeyError: 'boom'\)"):
        runner.run_series("quick", runs_dir=tmp_path / "runs", notebooks=[bad], progress=False)
    nb.cells = nb.cells[1:]
    nbformat.write(nb, bad)
    with pytest.raises(ValueError, match=r"does not declare the series parameters \['DEVICE', 'OVERRIDES', 'PROFILE'\]"):
        runner.run_series("quick", runs_dir=tmp_path / "runs", notebooks=[bad], progress=False)


@pytest.mark.slow
def test_only_an_unfinished_exercise_in_a_tagged_cell_is_run_past(tmp_path):
    """Course mode: papermill runs past cells tagged raises-exception and reports their errors
    afterwards; the runner accepts a NotImplementedError there (a stub), nothing else."""
    bad = tmp_path / "01_bad.ipynb"
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("\n".join(f"{name} = None" for name in runner.PARAMETERS))
    p.metadata["tags"] = ["parameters"]
    stub = nbformat.v4.new_code_cell("raise KeyError('boom')")
    stub.metadata["tags"] = ["raises-exception"]
    nb.cells = [p, stub, nbformat.v4.new_code_cell("print('reached the end')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, bad)
    with pytest.raises(RuntimeError, match=r"01_bad.ipynb failed in cell \d+ \(KeyError: 'boom'\)"):
        runner.run_series("quick", runs_dir=tmp_path / "runs", notebooks=[bad], progress=False)
    stub.source = "raise NotImplementedError('exercise')"
    nbformat.write(nb, bad)
    runner.run_series("quick", runs_dir=tmp_path / "runs", notebooks=[bad], progress=False)
    ran = tmp_path / "runs" / "quick" / "01_bad.ipynb"
    assert nbformat.read(ran, as_version=4).cells[-1].outputs[0]["text"] == "reached the end\n"
    assert runner.untagged_errors(ran) == []
    del stub.metadata["tags"]
    nbformat.write(nb, bad)
    with pytest.raises(RuntimeError, match=r"failed in cell \d+ \(NotImplementedError: exercise\)"):
        runner.run_series("quick", runs_dir=tmp_path / "runs", notebooks=[bad], progress=False)


@pytest.mark.slow
def test_a_cell_without_reply_is_run_once_more_then_reported(tmp_path, capsys):
    """The guard against a lost kernel reply: a cell that outlives the timeout once is retried."""
    mark = tmp_path / "slow-once"
    slow = tmp_path / "01_slow.ipynb"
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("\n".join(f"{name} = None" for name in runner.PARAMETERS))
    p.metadata["tags"] = ["parameters"]
    sleeper = ("import pathlib, time\nmark = pathlib.Path({!r})\n{}time.sleep(60)")
    once = "if not mark.exists():\n    mark.touch()\n    "
    nb.cells = [p, nbformat.v4.new_code_cell(sleeper.format(str(mark), once))]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, slow)
    runner.run_series("quick", runs_dir=tmp_path / "runs", notebooks=[slow], cell_timeout=5)
    assert "01_slow.ipynb: a cell gave no reply within 5 s" in capsys.readouterr().out and mark.exists()
    nb.cells[1] = nbformat.v4.new_code_cell(sleeper.format(str(mark), ""))  # always too slow
    nbformat.write(nb, slow)
    with pytest.raises(RuntimeError, match=r"01_slow.ipynb: a cell gave no reply within 5 s, twice, without training"):
        runner.run_series("quick", runs_dir=tmp_path / "runs", notebooks=[slow], cell_timeout=5, progress=False)


# ----------------------------------------------------------------------------- slow: end to end
@pytest.fixture(scope="module")
def tiny_series(tmp_path_factory):
    root = tmp_path_factory.mktemp("series")
    report = runner.run_series("quick", TINY, runs_dir=root / "runs", data_dir=root / "data", progress=False,
                               cell_timeout=600)
    from kdfair_utils.results import load_results

    return root, report, load_results(report.parent)


@pytest.mark.slow
def test_every_notebook_ran_without_errors(tiny_series):
    root, report, results = tiny_series
    assert sorted(results.by_notebook) == [p.stem for p in NOTEBOOKS]
    assert report.parent.name.startswith("quick+")  # overrides: a run folder of its own
    for path in NOTEBOOKS:
        nb = nbformat.read(report.parent / path.name, as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        assert any(c.metadata.get("tags") == ["injected-parameters"] for c in nb.cells)


@pytest.mark.slow
def test_recorded_values(tiny_series):
    root, report, r = tiny_series
    (data,) = r.by_notebook["01_setup_and_data"]
    assert isinstance(data, DatasetSummary) and data.n_train + data.n_test == 1000
    assert set(data.base_rate_dpd) == {"color", "texture"} and 0 <= data.base_rate_dpd["color"] < 100

    acc = r.metric("accuracy")
    assert [p.population for p in acc.populations] == [Population.teacher(), Population.nds(), Population.ds(1),
                                                       Population.ds(2), Population.ds(4), Population.ds(20)]
    assert acc.of(Population.teacher()).stats().n == 2 and acc.of(Population.nds()).seeds == (0, 1, 2)

    main, hard = r.class_bias(experiment="main"), r.class_bias(experiment="class_bias")
    assert isinstance(hard, ClassBiasSummary) and hard.n_classes == 100 and main.n_classes == 10
    assert [x.temperature for x in main.by_temperature] == [1.0, 2.0, 4.0, 20.0]  # every T of the main grid
    assert [x.temperature for x in hard.by_temperature] == [2.0, 4.0, 8.0]
    assert all(x.sc.bh <= x.sc.raw <= x.sc.tested <= 100 for x in hard.by_temperature)
    assert 0 < hard.chance.p_value_raw <= 1 and hard.chance.n_splits == 20

    for attr in ("color", "texture"):
        for metric in ("dpd", "eod"):
            s = r.metric(metric, attr)
            assert isinstance(s, MetricSummary) and len(s.populations) == 6
            assert all(0 <= v <= 100 for p in s.populations for v in p.values)
        assert r.metric("lipschitz", attr).of(Population.ds(20)).stats().n == 3

        excess = r.metric("eod_excess", attr)  # the zero-disparity reference is recorded beside the raw value
        raw, ref = r.metric("eod", attr), r.metric("eod_ref", attr)
        for pop in (Population.nds(), Population.ds(2)):
            np.testing.assert_allclose(excess.of(pop).values, np.subtract(raw.of(pop).values, ref.of(pop).values),
                                       rtol=0, atol=1e-9)
    assert r.class_accuracies(experiment="main").of(Population.nds()).seeds == (0, 1, 2)
    assert len(r.class_accuracies(experiment="class_bias").class_names) == 100

    verdicts = r.verdicts()
    assert len(verdicts) >= 12 and all(isinstance(v, ClaimVerdict) for v in verdicts)
    assert all(v.held in ("holds", "not significant", "opposite", "n/a") for v in verdicts)
    text = report.read_text()
    assert text.index("## Paper vs kdfair") < text.index("## Figures") and "verdicts recorded by 06_explore" in text
    pngs = {p.name for p in (report.parent / "figures").glob("*.png")}
    assert {"01_gallery_shape_by_color.png", "03_counts_vs_T_100_classes.png", "04_fairness_vs_T.png",
            "04_fairness_vs_accuracy.png"} <= pngs
    run = json.loads((report.parent / "run.json").read_text())
    assert run["overrides"] == TINY and run["models"] == 17 + 14 and run["trained"] == 31


CHECK_CALL = re.compile(r"checks\.(check_\w+)\(\s*(?:\"(\w+)\")?")


def _check_lines(nb) -> list[tuple[list[str], list[str]]]:
    """For every code cell that calls a self-check: the names it checks and the lines it printed
    that start with a pass or fail mark."""
    out = []
    for cell in nb.cells:
        names = [named or name for name, named in CHECK_CALL.findall(cell.source)] if cell.cell_type == "code" else []
        if names:
            text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            out.append((names, [line for line in text.splitlines() if line[:1] in (checks.PASSED, checks.FAILED)]))
    return out


@pytest.mark.slow
def test_every_self_check_of_the_instructor_notebooks_passes(tiny_series):
    """The solutions in notebooks/ pass their self-checks and their comparisons with the library."""
    _, report, _ = tiny_series
    used = set()
    for path in NOTEBOOKS:
        for names, lines in _check_lines(nbformat.read(report.parent / path.name, as_version=4)):
            assert [line.split(":")[0] for line in lines] == [f"{checks.PASSED} {n}" for n in names], (path.name, lines)
            used.update(names)
    assert set(checks.CHECKS) <= used  # every function check is used by an exercise


@pytest.mark.slow
def test_student_notebooks_run_to_the_end_with_their_stubs(tiny_series):
    """course/: every student notebook executes through papermill with its stubs: no cell raises,
    and every self-check says the exercise is not implemented yet."""
    root, _, _ = tiny_series
    students = sorted(course.student_dir().glob("[0-9][0-9]_*.ipynb"))
    overrides = {**TINY, "analysis.inference_seed": 1}  # the same models, a run folder of its own
    report = runner.run_series("quick", overrides, runs_dir=root / "runs", data_dir=root / "data", notebooks=students,
                               progress=False, cell_timeout=600)
    assert json.loads((report.parent / "run.json").read_text())["trained"] == 0
    calls = 0
    for path in students:
        nb = nbformat.read(report.parent / path.name, as_version=4)
        assert not [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"], path.name
        for names, lines in _check_lines(nb):
            calls += len(names)
            assert [line.split(":")[0] for line in lines] == [f"{checks.FAILED} {n}" for n in names], (path.name, lines)
            assert all("not implemented yet" in line for line in lines), lines
        assert any("record(s) written" in o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    stubs = sum(c.source.count(course.CODE_STUB[1]) for path in students
                for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert calls == stubs >= len(students)  # one self-check per code exercise, each reporting its stub


@pytest.mark.slow
def test_one_notebook_alone_with_the_papermill_cli(tiny_series, tmp_path):
    """A notebook run by itself, as a user would, reusing the cached grid (nothing retrains)."""
    root, report, _ = tiny_series
    models_before = sorted((root / "runs" / "models").iterdir())
    args = [sys.executable, "-m", "papermill", str(NOTEBOOKS[4]), str(tmp_path / "out.ipynb"),
            "--execution-timeout", "600",
            "--cwd", str(NOTEBOOKS[4].parent), "-k", "python3", "-y", "OVERRIDES: " + json.dumps(TINY)]
    env = {**os.environ, "KDFAIR_RUNS": str(root / "runs"), "KDFAIR_DATA": str(root / "data")}
    subprocess.run(args, check=True, capture_output=True, env=env)
    assert sorted((root / "runs" / "models").iterdir()) == models_before
    recorded = json.loads((report.parent / "results" / "05_individual_fairness.json").read_text())
    assert {r["metric"] for r in recorded["records"]} == {"lipschitz", "flip_rate"}


@pytest.mark.slow
@pytest.mark.parametrize("parameter,message", [
    (["-p", "DEVICE", "bogus"], "DEVICE 'bogus' is not a device"),
    (["-y", "OVERRIDES: {seeds: [0.5]}"], r"seeds\[0\] must be an integer, got 0.5"),
    (["-p", "PROFILE", "huge"], "profile must be one of quick, classroom, paper, .*; got 'huge'"),
    (["-y", "OVERRIDES: {analysis.neighbour_pairs: -1}"], "analysis.neighbour_pairs must be >= 0"),
])
def test_a_bad_notebook_parameter_fails_in_the_first_cell_and_writes_nothing(parameter, message, tmp_path):
    """Notebook 01 run alone with the papermill CLI: its setup cell names the bad parameter."""
    runs, data = tmp_path / "runs", tmp_path / "data"
    args = [sys.executable, "-m", "papermill", str(NOTEBOOKS[0]), str(tmp_path / "out.ipynb"),
            "--execution-timeout", "600",
            "--cwd", str(NOTEBOOKS[0].parent), "-k", "python3", *parameter]
    env = {**os.environ, "KDFAIR_RUNS": str(runs), "KDFAIR_DATA": str(data)}
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and re.search(message, proc.stderr), proc.stderr[-2000:]
    assert not runs.exists() and not data.exists()


@pytest.mark.slow
def test_kdfair_run_quick_end_to_end(tmp_path):
    """The main job, as `make reproduce` runs it (the whole quick profile, a few minutes)."""
    import time

    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "kdfair_utils.cli", "run", "--profile", "quick",
                           "--cell-timeout", "2400",
                           "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True, cwd=tmp_path)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "runs" / "quick"
    report = (out / "report.md").read_text()
    claims = json.loads((out / "claims.json").read_text())
    assert len(claims) >= 12 and all(c["kdfair"] != "n/a" for c in claims[:2])
    from kdfair_utils.results import load_results

    assert load_results(out).metric("accuracy").of(Population.teacher()).stats().mean > 90  # a trained teacher
    # the progress line counted the real cache, from 0 up to the whole grid
    counts = [int(m) for m in re.findall(r"models (\d+)/\d+ cached", proc.stdout)]
    total = json.loads((out / "run.json").read_text())["models"]
    assert counts and counts[0] == 0 and counts[-1] == total and counts == sorted(counts)
    print(f"kdfair run --profile quick: {elapsed:.0f} s\n{report[:3000]}")
