"""What every notebook of the series does before and after its lesson, in one call each.

``lesson = setup("03_class_bias", PROFILE, OVERRIDES, device=DEVICE)``
resolves the profile (with the dotted overrides of :mod:`kdfair_utils.experiments`) and the
folders (:mod:`kdfair_utils.paths`), and says where everything lives. ``lesson.grid()`` trains
or loads an experiment's models (saying which), ``lesson.table()`` gives the per-model results
table, ``lesson.save_figure(fig, name)`` stores a figure, and ``lesson.record(*records)`` writes
the lesson's typed records for the report.

Every lesson runs on every profile except where its subject does not exist
(:func:`not_applicable`, the one place for those rules): class bias needs a multiclass
experiment (not CelebA's binary *smiling*), group fairness needs protected attributes (CIFAR-100,
Tiny ImageNet and ImageNet carry none), individual fairness needs pairs (Trifeature's twins, or
``analysis.neighbour_pairs`` nearest neighbours). ``kdfair run`` writes such a notebook as one
cell that says why and records nothing; :func:`setup` refuses it with the same reason.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .datasets import Dataset, load_dataset
from .experiments import PREPARED_CACHE_PROFILES, Profile, get_profile
from .grid import GridConfig, GridResult, find_prepared, model_specs, run_grid, uncached
from .validation import check_device, check_dir_path, check_writable_dir
from .paths import default_data_dir, default_runs_dir
from .results import Record, record


class NotApplicable(ValueError):
    """A lesson of the series does not apply to the profile (its message says why)."""


def not_applicable(notebook: str, profile: Profile) -> str | None:
    """Why lesson ``notebook`` (``03_class_bias`` or its number ``03``) has nothing to teach on
    ``profile``, or None when it applies."""
    number = notebook[:2]
    data = profile.main.dataset
    if number == "03" and profile.class_bias is None:
        return (f"profile {profile.name!r} has no class-bias experiment: its label ({profile.main.label}) is "
                "binary, and the paper counts affected classes on multiclass tasks (CIFAR-100, Tiny ImageNet, "
                "ImageNet, Trifeature)")
    if number == "04" and not profile.analysis.attributes:
        return (f"profile {profile.name!r} names no protected attributes (analysis.attributes is empty; {data} "
                "carries none unless it is CelebA or Trifeature); the paper measures group fairness on CelebA, "
                "Trifeature and HateXplain")
    if number == "05" and not profile.analysis.pair_kinds:
        return (f"profile {profile.name!r} has no pairs for individual fairness: set analysis.twin_attributes "
                "(Trifeature) or analysis.neighbour_pairs")
    return None


@dataclass
class Lesson:
    """The resolved settings of one notebook run, and its cached grids."""

    notebook: str
    profile: Profile
    overrides: dict[str, Any]
    device: str
    data_dir: Path
    runs_dir: Path
    out_dir: Path
    _grids: dict[str, GridResult] = field(default_factory=dict, repr=False)

    @property
    def analysis(self):
        return self.profile.analysis

    @property
    def figures_dir(self) -> Path:
        return self.out_dir / "figures"

    def config(self, experiment: str = "main") -> GridConfig:
        return self.profile.experiment(experiment)

    def data(self, experiment: str = "main") -> Dataset:
        """The experiment's dataset (generated or read once, then cached in ``data_dir``)."""
        if experiment in self._grids:
            return self._grids[experiment].dataset
        cfg = self.config(experiment)
        return load_dataset(cfg.dataset, cfg.label, data_dir=self.data_dir, **cfg.data_options)

    def grid(self, experiment: str = "main") -> GridResult:
        """Train the experiment's models that are not cached yet, load the rest (says which)."""
        if experiment not in self._grids:
            cfg = self.config(experiment)
            same = next((g for name, g in self._grids.items() if self.config(name) == cfg), None)  # real data: one grid
            self._grids[experiment] = same or self._load_or_train(experiment, cfg)
        return self._grids[experiment]

    def _load_or_train(self, experiment: str, cfg: GridConfig) -> GridResult:
        """The grid from this machine's cache; on a profile of :data:`PREPARED_CACHE_PROFILES`
        (course mode) else from a complete set prepared on another machine (an instructor's
        ``runs/``: :func:`~kdfair_utils.grid.find_prepared`); else trained here, after saying how
        many models are missing and the command that prepares them ahead."""
        specs = model_specs(cfg, device=self.device)
        missing = len(uncached(specs, self.runs_dir))
        if missing and self.profile.name in PREPARED_CACHE_PROFILES:
            options, note = find_prepared(cfg, self.runs_dir, data=self.data(experiment), device=self.device)
            if options is not None:
                print(f"loading the {experiment} grid prepared elsewhere ({options}): this machine's own thread "
                      "count, precision or engine would give its models other keys, and train them again")
                try:
                    return run_grid(cfg, runs_dir=self.runs_dir, data_dir=self.data_dir, device=self.device,
                                    **options)
                except RuntimeError as exc:  # a prepared model or evaluation is damaged: train here
                    print(f"the prepared models cannot serve this grid ({exc}); training it here instead")
            elif note:
                print(note)
        if missing:
            sets = "".join(" --set " + shlex.quote(f"{k}={_compact_json(v)}") for k, v in self.overrides.items())
            print(f"{missing} of {len(specs)} models of the {experiment} grid are not cached in {self.runs_dir}: "
                  f"training them now. To prepare them ahead (e.g. before a class): kdfair grid --profile "
                  f"{self.profile.name} --experiment {experiment}{sets}")
        return run_grid(cfg, runs_dir=self.runs_dir, data_dir=self.data_dir, device=self.device)

    def table(self, experiment: str = "main"):
        """Every model of the experiment as one row, with the metrics the analysis settings ask for."""
        return self.grid(experiment).table(**self.analysis.table_options())

    def save_figure(self, fig: Any, name: str) -> Path:
        """``<out>/figures/<name>.png`` and ``.svg``; returns the PNG's path."""
        from .plots import save_figure

        stem = self.figures_dir / name
        save_figure(fig, stem)
        return stem.with_suffix(".png")

    def record(self, *records: Record) -> None:
        """Write this lesson's records to ``<out>/results/<notebook>.json`` and say where."""
        path = record(self.out_dir, self.notebook, records, profile=self.profile.name, config_key=self.profile.key)
        print(f"{len(records)} record(s) written to {path}")


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def setup(notebook: str, profile: str = "quick", overrides: dict[str, Any] | None = None, *, device: str = "auto",
          data_dir: str | Path | None = None, runs_dir: str | Path | None = None,
          out_dir: str | Path | None = None) -> Lesson:
    """Resolve a notebook's parameters (``ValueError`` names a bad one) and print where things are."""
    if not isinstance(notebook, str) or not notebook:
        raise ValueError(f"notebook must be the notebook's name, got {notebook!r}")
    if not isinstance(profile, str):
        raise ValueError(f"PROFILE must be a profile name such as 'quick', got {profile!r}")
    if overrides is not None and not isinstance(overrides, dict):
        raise ValueError(f"OVERRIDES must be a dict of dotted field names, got {overrides!r}")
    resolved = get_profile(profile, overrides)
    reason = not_applicable(notebook, resolved)
    if reason:
        raise NotApplicable(f"{notebook} does not apply: {reason} (`kdfair run` records nothing for it)")
    dev = check_device(device, "DEVICE")
    runs = check_dir_path(runs_dir if runs_dir is not None else default_runs_dir(), "runs_dir ($KDFAIR_RUNS)")
    data = check_dir_path(data_dir if data_dir is not None else default_data_dir(), "data_dir ($KDFAIR_DATA)")
    out = check_writable_dir(out_dir if out_dir is not None else runs / resolved.run_name, "out_dir")
    lesson = Lesson(notebook, resolved, dict(overrides or {}), str(dev), data, runs, out)
    print(f"{notebook}: profile {profile!r}" + (f" with overrides {lesson.overrides}" if lesson.overrides else "")
          + f", device {lesson.device}\n  data in {lesson.data_dir.resolve()}\n  models cached in "
          f"{(runs / 'models').resolve()}\n  results and figures in {lesson.out_dir.resolve()}")
    return lesson
