"""Course mode (fast): the student notebooks are generated from the instructor ones and up to date,
every lesson is framed, and the generator's rules hold on constructed notebooks."""

from __future__ import annotations

import re
import shutil

import nbformat
import pytest

from kdfair_utils import checks, course, runner
from kdfair_utils.cli import main as kdfair
from kdfair_utils.experiments import get_profile

LESSONS = course.default_lessons()
NAMES = [p.name for p in LESSONS.notebooks()]


def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def test_code_regions_become_indented_stubs_and_markdown_regions_answer_stubs():
    source = "def f(x):\n    \"\"\"doc\"\"\"\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n\n\nf(1)"
    out, n = course.strip_solutions(source, "code")
    assert n == 1
    stub = course.CODE_STUB[1]
    assert stub == 'raise NotImplementedError("exercise: replace this line with your code")'
    assert out == f"def f(x):\n    \"\"\"doc\"\"\"\n    # YOUR CODE HERE\n    {stub}\n\n\nf(1)"
    top, n = course.strip_solutions("a = 1\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION\n### BEGIN SOLUTION\nc\n### END SOLUTION",
                                    "code")
    assert n == 2 and top == f"a = 1\n# YOUR CODE HERE\n{stub}\n# YOUR CODE HERE\n{stub}"
    answer, n = course.strip_solutions("**Your answer.**\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION", "markdown")
    assert (answer, n) == ("**Your answer.**\n\n" + course.ANSWER_STUB, 1)
    assert course.strip_solutions("no regions", "code") == ("no regions", 0)


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx", "line 1: ### BEGIN SOLUTION is never closed"),
    ("x\n### END SOLUTION", "line 2: ### END SOLUTION without ### BEGIN SOLUTION"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "line 2: ### BEGIN SOLUTION inside another"),
    ("x = 1  ### BEGIN SOLUTION\n### END SOLUTION", "line 1: a solution marker must stand on a line of its own"),
])
def test_unbalanced_or_inline_markers_are_refused_naming_the_line(source, message):
    with pytest.raises(ValueError, match=re.escape(f"lesson.ipynb, cell 3, line {message.split('line ')[1]}")):
        course.strip_solutions(source, "code", "lesson.ipynb, cell 3")


def test_the_student_notebook_stubs_tags_and_points_to_the_classroom():
    params = nbformat.v4.new_code_cell('PROFILE = "quick"  # the profile\nOVERRIDES = {}\nDEVICE = "auto"')
    params.metadata["tags"] = ["parameters"]
    exercise = nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 42\n    ### END SOLUTION\n\n\nf()")
    exercise.outputs = [nbformat.v4.new_output("stream", text="42")]
    exercise.execution_count = 7
    plain = nbformat.v4.new_code_cell("g = 1")
    plain.metadata["tags"] = ["raises-exception"]  # a stale tag of the instructor's is not kept where nothing is stubbed
    intro = nbformat.v4.new_markdown_cell(f"# 01 · X\n\n{course.badges('notebooks/01_x.ipynb')}")
    nb = _nb(intro, params, exercise, plain)
    student = course.student_notebook(nb, "01_x.ipynb")
    assert student.cells[0].source == f"# 01 · X\n\n{course.badges('course/01_x.ipynb')}"
    assert student.cells[1].source.startswith('PROFILE = "classroom"  # the profile')
    assert student.cells[1].metadata["tags"] == ["parameters"]
    assert student.cells[2].source == f"def f():\n    # YOUR CODE HERE\n    {course.CODE_STUB[1]}\n\n\nf()"
    assert student.cells[2].metadata["tags"] == [course.RAISES]
    assert student.cells[2].outputs == [] and student.cells[2].execution_count is None
    assert "tags" not in student.cells[3].metadata
    assert nb.cells[2].source.count("return 42") == 1 and nb.cells[2].outputs  # the instructor's copy is untouched
    assert student.metadata["kdfair"]["generated_from"] == "notebooks/01_x.ipynb"


def test_the_committed_student_notebooks_are_up_to_date():
    assert LESSONS.stale() == [], "run `kdfair course build` (or `make course`) and commit course/"
    assert kdfair(["course", "check"]) == 0


def test_the_check_fails_when_an_instructor_notebook_changes_until_rebuilt(tmp_path, capsys):
    lessons = course.Lessons(tmp_path / "notebooks", tmp_path / "course")
    shutil.copytree(LESSONS.source, lessons.source, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(LESSONS.target, lessons.target)
    assert lessons.stale() == []
    path = lessons.source / NAMES[1]
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].source += "\n\nOne more sentence."
    nbformat.write(nb, path)
    assert lessons.stale() == [NAMES[1]]
    (lessons.target / "07_orphan.ipynb").write_text("{}")
    (lessons.target / NAMES[2]).unlink()
    assert lessons.stale() == sorted([NAMES[1], NAMES[2], "07_orphan.ipynb"])
    assert sorted(p.name for p in lessons.build()) == [NAMES[1], NAMES[2]]
    assert lessons.stale() == ["07_orphan.ipynb"]  # an orphan is reported, never deleted
    (lessons.target / "07_orphan.ipynb").unlink()
    assert lessons.stale() == [] and lessons.build() == []  # nothing changed: nothing written


def test_build_refuses_to_overwrite_a_student_notebook_someone_worked_in(tmp_path):
    lessons = course.Lessons(tmp_path / "notebooks", tmp_path / "course")
    shutil.copytree(LESSONS.source, lessons.source)
    shutil.copytree(LESSONS.target, lessons.target)
    worked = lessons.target / NAMES[3]
    nb = nbformat.read(worked, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs, code.execution_count = [nbformat.v4.new_output("stream", text="my work")], 3
    nbformat.write(nb, worked)
    before = worked.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match=f"{NAMES[3]} in .* hold outputs: someone worked in them"):
        lessons.build()
    assert worked.read_text(encoding="utf-8") == before
    assert [p.name for p in lessons.build(force=True)] == [NAMES[3]] and lessons.stale() == []


def test_a_bad_marker_writes_no_student_notebook(tmp_path):
    lessons = course.Lessons(tmp_path / "notebooks", tmp_path / "course")
    lessons.source.mkdir()
    for name, marker in (("01_a.ipynb", "### END SOLUTION"), ("02_b.ipynb", "### BEGIN SOLUTION")):
        nbformat.write(_nb(nbformat.v4.new_code_cell(f"x = 1\n{marker}")), lessons.source / name)
    with pytest.raises(ValueError, match="01_a.ipynb, cell 0, line 2"):
        lessons.build()
    assert not lessons.target.exists()


@pytest.mark.parametrize("folder", ["notebooks", "course"])
def test_every_lesson_is_framed(folder):
    lessons = LESSONS.notebooks() if folder == "notebooks" else sorted(LESSONS.target.glob("[0-9][0-9]_*.ipynb"))
    assert [p.name for p in lessons] == NAMES == [p.name for p in runner.series_notebooks()]
    for path in lessons:
        nb = nbformat.read(path, as_version=4)
        assert course.frame_problems(nb, path.name, NAMES, folder) == [], path.name


def test_frame_problems_names_what_is_missing():
    nb = nbformat.read(LESSONS.source / NAMES[2], as_version=4)
    assert course.frame_problems(nb, NAMES[2], NAMES) == []
    nb.cells[-1].source = nb.cells[-1].source.replace("## Summary", "## Recap").replace(f"]({NAMES[3]})", "]")
    nb.cells[0].source = nb.cells[0].source.replace("\n4. ", "\n").replace("\n3. ", "\n")
    nb.cells = [c for c in nb.cells if not re.match(r"### Exercise 3\.[23]", c.source)]
    assert course.frame_problems(nb, NAMES[2], NAMES) == [
        "no '## Summary' heading", "2 learning objectives (want 3-5)", f"no link to {NAMES[3]}",
        "1 exercises (want at least 2)"]
    nb.cells[0].source = nb.cells[0].source.replace("mybinder.org", "example.org")
    assert course.frame_problems(nb, NAMES[2], NAMES)[-1] == "no launch badges in the first cell"


def test_student_notebooks_hold_no_solution_and_exercises_keep_their_checks():
    for name in NAMES:
        teacher = nbformat.read(LESSONS.source / name, as_version=4)
        student = nbformat.read(LESSONS.target / name, as_version=4)
        assert len(teacher.cells) == len(student.cells)
        assert course.exercises(teacher) == course.exercises(student) and len(course.exercises(teacher)) >= 2
        for t, s in zip(teacher.cells, student.cells):
            assert course.BEGIN not in s.source and course.END not in s.source
            _, n = course.strip_solutions(t.source, t.cell_type)
            if n and t.cell_type == "code":
                solution = t.source.split(course.BEGIN)[1].split(course.END)[0].strip().splitlines()
                assert not any(line.strip() in s.source for line in solution if len(line.strip()) > 12), name
                assert s.metadata["tags"] == [course.RAISES]
                assert "checks.check_" in t.source, name  # every code exercise ends in a self-check
            for call in re.findall(r"checks\.(check_\w+)\(", t.source):
                assert hasattr(checks, call) and call in s.source  # the self-check stays for the student


def test_the_classroom_profile_is_a_subset_of_quick():
    classroom, quick = get_profile("classroom"), get_profile("quick")
    assert set(runner.expected_models(classroom)) < set(runner.expected_models(quick))
    assert len(runner.expected_models(classroom)) == 54
    assert classroom.main.temperatures == (1, 2, 4, 10, 40) and classroom.class_bias.temperatures == (2, 4, 10)
    assert course.STUDENT_PROFILE == "classroom"


def test_a_cache_prepared_under_other_numerics_is_loaded_not_retrained(tiny_lesson, tmp_path, capsys, monkeypatch):
    """An instructor's runs/ copied to a laptop with another thread count: the keys hold the numerics, so the
    laptop's own keys miss every model; a classroom lesson finds the prepared ones and trains nothing."""
    import numpy as np
    import torch

    from conftest import TINY_OVERRIDES
    from kdfair_utils import experiments, lesson as lesson_module
    from kdfair_utils.grid import find_prepared
    from kdfair_utils.lesson import setup
    from kdfair_utils.results import Population
    from kdfair_utils.train import numerics

    cfg, runs, data = tiny_lesson.config("main"), tiny_lesson.runs_dir, tiny_lesson.data("main")
    assert find_prepared(cfg, runs, data=data, device="cpu") == (None, None)  # this machine's own keys find them
    here = numerics("cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        assert find_prepared(cfg, runs, data=data, device="cpu") == (
            {"numerics_as": here, "engine": "population"}, None)
        lesson = setup("99_tiny", "quick", TINY_OVERRIDES, device="cpu", data_dir=tiny_lesson.data_dir, runs_dir=runs,
                       out_dir=tmp_path / "out")
        monkeypatch.setattr(lesson_module, "PREPARED_CACHE_PROFILES", ("quick",))  # as the classroom profile
        capsys.readouterr()
        result = lesson.grid("main")
        out = capsys.readouterr().out
        assert f"loading the main grid prepared elsewhere ({{'numerics_as': {here}" in out
        assert not result.trained and len(result.loaded) == len(result.specs)
        np.testing.assert_array_equal(result.logits(Population.ds(2)), tiny_lesson.grid("main").logits(Population.ds(2)))
        assert experiments.PREPARED_CACHE_PROFILES == ("classroom",)  # other profiles never load foreign models
        specs = result.specs
        evals = result.eval_dir
        record = evals / f"{specs[0].dirname}.json"
        record.rename(record.with_suffix(".away"))  # weights without their evaluation: not offered, and said why
        try:
            options, note = find_prepared(cfg, runs, data=data, device="cpu")
            assert options is None and "lacks their evaluation logits on this data" in note
        finally:
            record.with_suffix(".away").rename(record)
        folder = runs / "models" / specs[0].dirname  # a prepared set with a model missing is not offered
        folder.rename(folder.with_name(folder.name + ".away"))
        try:
            assert find_prepared(cfg, runs, data=data, device="cpu") == (None, None)
        finally:
            folder.with_name(folder.name + ".away").rename(folder)
    finally:
        torch.set_num_threads(threads)


def test_the_lesson_names_the_command_that_prepares_missing_models(tiny_lesson, tmp_path, capsys, monkeypatch):
    from conftest import TINY_OVERRIDES
    from kdfair_utils import lesson as lesson_module
    from kdfair_utils.lesson import setup

    monkeypatch.setattr(lesson_module, "run_grid", lambda cfg, **options: ("trained", options))  # no training here

    lesson = setup("99_tiny", "quick", {**TINY_OVERRIDES, "analysis.significance": 0.01}, device="cpu",
                   data_dir=tiny_lesson.data_dir, runs_dir=tmp_path / "empty", out_dir=tmp_path / "out")
    capsys.readouterr()
    assert lesson.grid("main")[0] == "trained"
    out = capsys.readouterr().out
    cfg = lesson.config("main")
    n = len(cfg.teacher_seeds) + len(cfg.seeds) * (1 + len(cfg.temperatures))  # teachers, NDS, DS
    assert f"{n} of {n} models of the main grid are not cached in {tmp_path / 'empty'}: training them now" in out
    assert "kdfair grid --profile quick --experiment main --set 'seeds=[0,1,2]'" in out
    assert "--set analysis.significance=0.01" in out
