"""Course mode: student versions of the lessons, generated from the instructor notebooks.

The notebooks in ``notebooks/`` are the **instructor** versions: they run end to end (``make
reproduce`` executes them) with every exercise solved. ``kdfair course build`` writes the
**student** versions into ``course/``; ``kdfair course check`` (run by the tests) fails when one
of them is missing or out of date. Conventions, nbgrader's where it has one:

* A **solution region** is the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` (both
  on lines of their own, not nested). In a code cell the student version replaces them with
  ``# YOUR CODE HERE`` and ``raise NotImplementedError(...)`` at the region's indentation; in a
  markdown cell with :data:`ANSWER_STUB`.
* Exercises call the student's function only through a self-check of :mod:`kdfair_utils.checks`,
  which catches the stub's ``NotImplementedError`` and prints a hint, so a student notebook runs
  to the end. Cells that hold a stub are tagged ``raises-exception`` all the same: should a
  student's own code raise there, JupyterLab's "Run All" and papermill (nbclient) go on.
* The parameters cell's default profile becomes :data:`STUDENT_PROFILE` (``classroom``: the
  models an instructor prepares once with ``kdfair grid --profile classroom``).
* Launch badges and links that point into ``notebooks/`` point into ``course/``.
* Every lesson is framed by the headings in :data:`FRAME_HEADINGS` (objectives, what it assumes,
  time and compute, summary, questions, links), carries Binder and Colab badges (:func:`badges`)
  and installs the package where it is missing (:data:`INSTALL`, for Colab);
  :func:`frame_problems` lists what is missing.

A student notebook is a pure function of its instructor notebook, so "out of date" is decided by
content: the file on disk must equal what :func:`student_notebook` makes now.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .cache import atomic_write
from .runner import notebooks_dir, series_notebooks

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CODE_STUB = ("# YOUR CODE HERE", 'raise NotImplementedError("exercise: replace this line with your code")')
ANSWER_STUB = "_YOUR ANSWER HERE_"
RAISES = "raises-exception"
STUDENT_PROFILE = "classroom"
REPOSITORY = "kdfair/kdfair"  # owner/name on GitHub, for the Binder and Colab badges and Colab's install line
INSTALL = f'%pip install -q "kdfair @ git+https://github.com/{REPOSITORY}"'
FRAME_HEADINGS = ("Learning objectives", "Before you start", "Time and compute", "Summary",
                  "Check your understanding", "Where next")
EXERCISE = re.compile(r"^### Exercise (\d+)\.(\d+)\b", re.M)
_PROFILE_LINE = re.compile(r'^PROFILE = "[a-z0-9_]+"', re.M)


def student_dir() -> Path:
    """``course/`` beside the checkout's ``notebooks/``."""
    return notebooks_dir().parent / "course"


def badges(path: str) -> str:
    """Markdown for the Binder and Colab launch badges of a notebook at ``path`` in the repository
    (e.g. ``course/02_knowledge_distillation.ipynb``)."""
    binder = f"https://mybinder.org/v2/gh/{REPOSITORY}/HEAD?labpath={path}"
    colab = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/{path}"
    return (f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder}) "
            f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})")


def _regions(lines: list[str], where: str) -> list[tuple[int, int]]:
    """(begin, end) line indices of each solution region; ``ValueError`` naming ``where`` when
    the markers are unbalanced, nested or share a line with code."""
    out, start = [], None
    for i, line in enumerate(lines):
        text = line.strip()
        if BEGIN in line and text != BEGIN or END in line and text != END:
            raise ValueError(f"{where}, line {i + 1}: a solution marker must stand on a line of its own")
        if text == BEGIN:
            if start is not None:
                raise ValueError(f"{where}, line {i + 1}: {BEGIN} inside another solution region")
            start = i
        elif text == END:
            if start is None:
                raise ValueError(f"{where}, line {i + 1}: {END} without {BEGIN}")
            out.append((start, i))
            start = None
    if start is not None:
        raise ValueError(f"{where}, line {start + 1}: {BEGIN} is never closed")
    return out


def strip_solutions(source: str, cell_type: str, where: str = "cell") -> tuple[str, int]:
    """``source`` with every solution region replaced by its stub, and the number of regions."""
    lines = source.split("\n")
    regions = _regions(lines, where)
    for begin, end in reversed(regions):
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        stub = [indent + s for s in CODE_STUB] if cell_type == "code" else [ANSWER_STUB]
        lines[begin:end + 1] = stub
    return "\n".join(lines), len(regions)


def student_notebook(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The student version of instructor notebook ``nb`` (file name ``name``): solutions
    replaced by stubs, stub cells tagged, outputs cleared, the classroom profile, links into
    ``course/``."""
    out = copy.deepcopy(nb)
    for i, cell in enumerate(out.cells):
        source, n = strip_solutions(cell.source, cell.cell_type, f"{name}, cell {i}")
        source = source.replace(f"notebooks/{name}", f"course/{name}")
        tags = [t for t in cell.metadata.get("tags", []) if t != RAISES]
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if n:
                tags.append(RAISES)
            if "parameters" in tags:
                source, found = _PROFILE_LINE.subn(f'PROFILE = "{STUDENT_PROFILE}"', source, count=1)
                if not found:
                    raise ValueError(f'{name}, cell {i}: the parameters cell has no line `PROFILE = "<name>"` '
                                     f"to set to {STUDENT_PROFILE!r}")
        cell.source = source
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
    out.metadata["kdfair"] = {"generated_from": f"notebooks/{name}",
                              "by": "kdfair course build (do not edit: edit the instructor notebook)"}
    return out


def _render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb, version=4) + "\n"


@dataclass(frozen=True)
class Lessons:
    """The instructor notebooks of a folder and where their student versions go."""

    source: Path
    target: Path

    def notebooks(self) -> list[Path]:
        return series_notebooks(self.source)

    def expected(self) -> dict[Path, str]:
        """Student path → the text it must hold."""
        out = {}
        for path in self.notebooks():
            nb = nbformat.read(path, as_version=4)
            out[self.target / path.name] = _render(student_notebook(nb, path.name))
        return out

    def stale(self) -> list[str]:
        """Names of student notebooks that are missing, differ from a fresh build, or have no
        instructor notebook any more."""
        expected = self.expected()
        problems = [p.name for p, text in expected.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
        extra = [p.name for p in series_notebooks(self.target) if p not in expected]
        return sorted(problems + extra)

    def build(self, *, force: bool = False) -> list[Path]:
        """Write every student notebook that changed (atomically) and return the paths written.
        A student notebook that holds outputs (someone worked in it) is not overwritten unless
        ``force``: ``ValueError`` names it first, and nothing is written. Orphans (no instructor
        notebook) are left for :meth:`stale` to report."""
        expected = self.expected()  # parse everything first: a bad marker writes nothing
        changed = {p: text for p, text in expected.items() if not p.exists() or p.read_text(encoding="utf-8") != text}
        worked_in = [p.name for p in changed if p.exists() and _has_outputs(p)]
        if worked_in and not force:
            raise ValueError(f"{', '.join(worked_in)} in {self.target} hold outputs: someone worked in them. Work on a "
                             "copy of course/ (e.g. cp -r course my-course); rebuild with --force to overwrite them")
        self.target.mkdir(parents=True, exist_ok=True)
        for path, text in changed.items():
            atomic_write(path, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
        return list(changed)


def _has_outputs(path: Path) -> bool:
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - unreadable: not a generated notebook either
        return True
    return any(c.get("outputs") or c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def default_lessons() -> Lessons:
    return Lessons(notebooks_dir(), student_dir())


def exercises(nb: nbformat.NotebookNode) -> list[str]:
    """The exercise numbers (``"2.1"``) of a notebook, from its ``### Exercise N.M`` headings."""
    return [f"{a}.{b}" for cell in nb.cells if cell.cell_type == "markdown"
            for a, b in EXERCISE.findall(cell.source)]


def frame_problems(nb: nbformat.NotebookNode, name: str, names: list[str], folder: str = "notebooks") -> list[str]:
    """What a lesson lacks of its frame: a heading of :data:`FRAME_HEADINGS`, 3–5 objectives,
    links to the previous and next lesson of ``names`` (the series, in order), two exercises,
    a solution region (or its stub, in a student notebook) for each exercise, launch badges for
    its path in ``folder`` and the install line."""
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    problems = [f"no '## {h}' heading" for h in FRAME_HEADINGS if not re.search(rf"^## {h}\b", markdown, re.M)]
    objectives = re.search(r"^## Learning objectives\n(.*?)(?=^#|\Z)", markdown, re.M | re.S)
    count = len(re.findall(r"^\d+\. |^- ", objectives.group(1), re.M)) if objectives else 0
    if not 3 <= count <= 5:
        problems.append(f"{count} learning objectives (want 3-5)")
    i = names.index(name)
    for neighbour in names[max(i - 1, 0):i] + names[i + 1:i + 2]:
        if f"]({neighbour})" not in markdown:
            problems.append(f"no link to {neighbour}")
    found = exercises(nb)
    if len(found) < 2:
        problems.append(f"{len(found)} exercises (want at least 2)")
    n_regions = sum(len(_regions(c.source.split("\n"), name)) + c.source.count(ANSWER_STUB)
                    + c.source.count(CODE_STUB[1]) for c in nb.cells)
    if n_regions < len(found):
        problems.append(f"{len(found)} exercises but {n_regions} solution regions")
    if badges(f"{folder}/{name}") not in nb.cells[0].source:
        problems.append("no launch badges in the first cell")
    if not any(INSTALL in c.source for c in nb.cells if c.cell_type == "code"):
        problems.append(f"no code cell installs the package where it is missing ({INSTALL})")
    return problems
