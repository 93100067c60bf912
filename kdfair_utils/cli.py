"""Command line: ``kdfair grid`` trains/loads one experiment's grid and prints its accuracies;
``kdfair run`` executes the notebook series and writes the report; ``kdfair readme`` puts a
run's claims table into the README; ``kdfair course build`` writes the student notebooks
(``course/``) from the instructor ones (``notebooks/``) and ``kdfair course check`` fails when
they are out of date.

Both ``grid`` and ``run`` take ``--set FIELD=VALUE`` in the dotted vocabulary of
:mod:`kdfair_utils.experiments` (the notebooks' ``OVERRIDES`` parameter takes the same names).
``--seeds``, ``--temperatures``, ``--label``, ``--teacher`` and ``--student`` are short for
``--set <experiment>.seeds=...`` (and so on) for ``grid``, which builds one experiment, and for
``--set seeds=...`` (every experiment) for ``run``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .experiments import EXPERIMENTS, PROFILES, get_profile
from .grid import POPULATION_SIZE
from .scaleout import DEFAULT_TIMEOUT_MIN
from .train import resolve_precision

SHORTCUTS = ("label", "teacher", "student", "seeds", "temperatures")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        return [_parse_value(part) for part in text.split(",") if part]
    return text


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["student_train.epochs=5", "seeds=0,1,2"]`` → ``{"student_train.epochs": 5, "seeds": [0, 1, 2]}``.

    Values are JSON where they parse as JSON (numbers, lists, ``null``, ``true``), comma lists
    otherwise, else strings. A name given twice is an error.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        if key in out:
            raise ValueError(f"{key!r} is given twice")
        out[key] = _parse_value(value)
    return out


def _overrides(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    overrides = parse_overrides(args.set or [])
    for name in SHORTCUTS:
        value = getattr(args, name, None)
        if value is not None:
            key = prefix + name
            clashes = {key, name} if prefix else {name, *(f"{e}.{name}" for e in EXPERIMENTS)}
            for given in sorted(clashes):  # `--seeds` with `--set seeds=` or `--set main.seeds=`: one would be lost
                if given in overrides:
                    raise ValueError(f"{given!r} is given twice (--{name} and --set {given}=...)")
            overrides[key] = value
    return overrides


def cmd_grid(args: argparse.Namespace) -> int:
    from .scaleout import run_grid_workers
    from .results import summarize

    profile = get_profile(args.profile, _overrides(args, prefix=f"{args.experiment}."))
    cfg = profile.experiment(args.experiment)
    given = (("slurm_partition", args.slurm_partition), ("slurm_gpus_per_task", args.slurm_gpus_per_task),
             ("timeout_min", args.slurm_time), ("cpus_per_task", args.slurm_cpus_per_task),
             ("mem_gb", args.slurm_mem_gb))
    slurm = {name: value for name, value in given if value is not None}
    if slurm and args.executor != "submitit":
        raise ValueError("--slurm-* options need --executor submitit")
    if args.workers != 1 and args.executor != "submitit":
        raise ValueError(f"--workers {args.workers} needs --executor submitit")
    if args.slurm_time is not None and args.slurm_time < 1:
        raise ValueError(f"--slurm-time must be at least 1 minute, got {args.slurm_time}")
    result = run_grid_workers(cfg, workers=args.workers, executor=args.executor, cluster=args.cluster, slurm=slurm,
                              runs_dir=args.runs_dir, data_dir=args.data_dir, device=args.device,
                              precision=args.precision, engine=args.engine, population_size=args.population_size,
                              progress=not args.quiet, download=args.download)
    precision = (resolve_precision(args.precision, args.device) if args.executor == "local"
                 else f"{args.precision} (resolved by each worker)")
    print(f"profile {args.profile}, experiment {args.experiment}: {cfg.dataset}/{cfg.label}, {cfg.teacher} -> "
          f"{cfg.student}, {len(result.specs)} models (loaded {len(result.loaded)}, trained {len(result.trained)}; "
          f"engine {args.engine}, precision {precision})")
    table = summarize(result.table(), "accuracy").frame()
    print(table.drop(columns=["role"]).to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="–"))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_series

    report = run_series(args.profile, _overrides(args), runs_dir=args.runs_dir, data_dir=args.data_dir,
                        device=args.device, progress=not args.quiet, cell_timeout=args.cell_timeout)
    print(f"report: {report}")
    return 0


def cmd_course(args: argparse.Namespace) -> int:
    from .course import default_lessons

    lessons = default_lessons()
    if args.action == "check":
        stale = lessons.stale()
        if stale:
            print(f"out of date in {lessons.target}: {', '.join(stale)} (run `kdfair course build`)")
            return 1
        print(f"{len(lessons.notebooks())} student notebooks in {lessons.target} are up to date")
        return 0
    written = lessons.build(force=args.force)
    print(f"wrote {len(written)} of {len(lessons.notebooks())} student notebooks into {lessons.target}"
          + (": " + ", ".join(p.name for p in written) if written else " (all were up to date)"))
    return 0


def cmd_readme(args: argparse.Namespace) -> int:
    from .paths import checkout_dir, default_runs_dir
    from .report import update_readme

    run = args.run if args.run is not None else default_runs_dir() / "quick"
    readme = args.readme if args.readme is not None else (checkout_dir() or Path(".")) / "README.md"
    print(f"updated {update_readme(readme, run)} from {run}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``kdfair: error: ...``), like every other error of the CLI."""

    def error(self, message: str) -> None:  # type: ignore[override]
        where = "" if self.prog == "kdfair" else f"{self.prog.split()[-1]}: "
        self.exit(2, f"kdfair: error: {where}{message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kdfair", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--profile", default="quick", choices=sorted(PROFILES))
        p.add_argument("--runs-dir", default=None,  # a str: Path("") would silently become "."
                       help="cache of trained models and run folders (default $KDFAIR_RUNS or <checkout>/runs)")
        p.add_argument("--data-dir", default=None, help="datasets (default $KDFAIR_DATA or <checkout>/data)")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                       help="a dotted field, e.g. student_train.epochs=5, class_bias.teacher_train.epochs=20, "
                            "analysis.significance=0.01 (see kdfair_utils.experiments)")
        short = "short for --set <experiment>.{0}=... on grid, --set {0}=... on run"
        p.add_argument("--label", help=short.format("label") + " (e.g. shape, shape_color)")
        p.add_argument("--teacher", help=short.format("teacher"))
        p.add_argument("--student", help=short.format("student"))
        p.add_argument("--seeds", type=int, nargs="+", help=short.format("seeds"))
        p.add_argument("--temperatures", type=float, nargs="+", help=short.format("temperatures"))

    g = sub.add_parser("grid", help="train (or load) one experiment's grid and print accuracies")
    common(g)
    g.add_argument("--experiment", default="main", choices=EXPERIMENTS,
                   help="which grid of the profile: main (notebooks 02-06) or class_bias (notebook 03's 100 classes)")
    g.add_argument("--download", action="store_true",
                   help="fetch a missing data set where a public source exists (CIFAR, SVHN, CelebA; needs internet)")
    g.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 autocast on CUDA and on CPUs with native bf16, else fp32 (part of the cache key; "
                        "the notebooks use auto)")
    g.add_argument("--engine", default="population", choices=("population", "single"),
                   help="population: students (and teachers) of a chunk train together, packed; single: one at a time")
    g.add_argument("--population-size", type=int, default=None, metavar="N",
                   help=f"most models packed into one training chunk (default {POPULATION_SIZE['cpu']} on a CPU, "
                        f"{POPULATION_SIZE['cuda']} on a GPU; bounded by memory)")
    g.add_argument("--executor", default="local", choices=("local", "submitit"),
                   help="local: this process; submitit: --workers array tasks (SLURM, or local processes)")
    g.add_argument("--workers", type=int, default=1, help="tasks sharing the cache (submitit; default 1)")
    g.add_argument("--cluster", default="auto", choices=("auto", "slurm", "local", "debug"),
                   help="submitit cluster: auto = SLURM where sbatch exists, else local processes; debug = the "
                        "workers one after another in this process (default auto)")
    g.add_argument("--slurm-partition", default=None, help="SLURM partition (default: the cluster's)")
    g.add_argument("--slurm-gpus-per-task", type=int, default=None, help="GPUs of each SLURM task")
    g.add_argument("--slurm-time", type=int, default=None, metavar="MINUTES",
                   help=f"time limit of each task (default {DEFAULT_TIMEOUT_MIN})")
    g.add_argument("--slurm-cpus-per-task", type=int, default=None, help="CPU cores of each task")
    g.add_argument("--slurm-mem-gb", type=float, default=None, help="memory of each task, GB")
    g.set_defaults(func=cmd_grid)

    r = sub.add_parser("run", help="execute the notebook series and write the report into <runs>/<profile> "
                                   "(<runs>/<profile>+<hash> when --set changes the profile)")
    common(r)
    r.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS",
                   help="bound the wait for any one notebook cell; a notebook that times out is run once more "
                        "(guards against a rare lost kernel reply; choose it well above the slowest cell)")
    r.set_defaults(func=cmd_run)

    m = sub.add_parser("readme", help="put a run's claims table into the README (between its claims markers)")
    m.add_argument("run", type=Path, nargs="?", default=None,
                   help="the run folder (default <runs>/quick: $KDFAIR_RUNS or <checkout>/runs)")
    m.add_argument("--readme", type=Path, default=None, help="default: the checkout's README.md")
    m.set_defaults(func=cmd_readme)

    c = sub.add_parser("course", help="student notebooks: build course/ from notebooks/, or check it is up to date")
    c.add_argument("action", choices=("build", "check"),
                   help="build: write the student notebooks that changed (solutions replaced by stubs); check: exit "
                        "1, naming them, when a student notebook is missing or out of date")
    c.add_argument("--force", action="store_true",
                   help="build: overwrite student notebooks that hold outputs (someone worked in them)")
    c.set_defaults(func=cmd_course)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:  # a bad argument: named, one line, before anything was written
        parser.exit(2, f"kdfair: error: {_one_line(exc)}\n")
    except (OSError, RuntimeError) as exc:  # a file, permission or notebook failure: one line too
        parser.exit(1, f"kdfair: error: {type(exc).__name__}: {_one_line(exc)}\n")
    return 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
