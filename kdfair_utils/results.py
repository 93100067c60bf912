"""The results layer: populations of models, and the typed records notebooks write and the
report reads.

* :class:`Population` names a set of models by fields — ``role`` (``teacher``, ``nds``, ``ds``)
  and, for distilled students, ``temperature``. Its display name (``"DS@T=4"``) is for people;
  code selects by fields and never parses names.
* :class:`PopulationValues` is one metric over one population's models, in seed order;
  :func:`~kdfair_utils.stats.population_stats` summarises it (mean, std with ddof=1, n, t interval).
* Records (the declared schema, version :data:`SCHEMA`): :class:`MetricSummary` (one per-model
  metric — accuracy, DPD, EOD, Lipschitz ratio, flip rate — over every population),
  :class:`ClassBiasSummary` (#SC/#TC per T and the chance level), :class:`DatasetSummary` and
  :class:`ClaimVerdict`. :func:`record` writes a notebook's records to
  ``<out>/results/<notebook>.json``; :func:`load_results` reads them back into the same types,
  refusing unknown kinds, missing or unknown fields, another schema version, and files written
  under different profiles.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Union

import numpy as np

from .cache import load_json, save_json
from .stats import PopulationStats, population_stats

SCHEMA = 3
ROLES = ("teacher", "nds", "ds")

# Per-model metrics: name → unit. Fairness metrics are per protected attribute.
METRICS: dict[str, str] = {"accuracy": "%", "dpd": "%", "eod": "%", "lipschitz": "", "flip_rate": "%"}
# The zero-disparity reference of DPD/EOD (group_fairness.zero_disparity_reference): its mean,
# interval and the excess of the observed value over the mean.
REFERENCE_PARTS = ("ref", "ref_low", "ref_high", "excess")
METRICS.update({f"{m}_{part}": "%" for m in ("dpd", "eod") for part in REFERENCE_PARTS})
ATTRIBUTE_METRICS = tuple(m for m in METRICS if m != "accuracy")


def metric_column(metric: str, attribute: str | None = None) -> str:
    """The column of a per-model table (:meth:`~kdfair_utils.grid.GridResult.table`) holding
    ``metric`` (for ``attribute``): ``accuracy``, ``eod_color``, ``lipschitz_texture``, ..."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if (attribute is None) == (metric in ATTRIBUTE_METRICS):
        raise ValueError(f"metric {metric!r} {'needs' if attribute is None else 'takes no'} attribute")
    return metric if attribute is None else f"{metric}_{attribute}"


# ----------------------------------------------------------------------------- populations
@dataclass(frozen=True)
class Population:
    """A kind of model: the teachers, the non-distilled students, or the students distilled at T."""

    role: str
    temperature: float | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; known: {', '.join(ROLES)}")
        if self.role == "ds":
            t = self.temperature
            if t is None or isinstance(t, bool) or not math.isfinite(float(t)) or float(t) <= 0:
                raise ValueError(f"a distilled population needs a finite temperature > 0, got {t!r}")
            object.__setattr__(self, "temperature", float(t))
        elif self.temperature is not None:
            raise ValueError(f"role {self.role!r} has no temperature, got {self.temperature!r}")

    @classmethod
    def teacher(cls) -> Population:
        return cls("teacher")

    @classmethod
    def nds(cls) -> Population:
        return cls("nds")

    @classmethod
    def ds(cls, temperature: float) -> Population:
        return cls("ds", temperature)

    @property
    def name(self) -> str:
        """Display name: ``teacher``, ``NDS``, ``DS@T=4``."""
        return {"teacher": "teacher", "nds": "NDS"}.get(self.role) or f"DS@T={self.temperature:g}"

    @property
    def sort_key(self) -> tuple[int, float]:
        """Teacher, NDS, then DS by temperature."""
        return ROLES.index(self.role), self.temperature or 0.0

    def __str__(self) -> str:
        return self.name


def in_window(temperature: float | None, window: tuple[float, float] | None) -> bool:
    """``lo ≤ T ≤ hi`` (both ends included); any T when ``window`` is None."""
    if window is None:
        return True
    return temperature is not None and window[0] <= temperature <= window[1]


@dataclass(frozen=True)
class PopulationValues:
    """One metric's value for each model of a population, in seed order; for distilled students
    also the seed of each model's teacher (students of one teacher are not independent)."""

    population: Population
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    teacher_seeds: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.seeds) != len(self.values) or not self.values:
            raise ValueError(f"{self.population}: {len(self.seeds)} seeds for {len(self.values)} values")
        if self.teacher_seeds is not None and len(self.teacher_seeds) != len(self.seeds):
            raise ValueError(f"{self.population}: {len(self.teacher_seeds)} teacher seeds for {len(self.seeds)} models")

    def stats(self, confidence: float = 0.95) -> PopulationStats:
        """:func:`~kdfair_utils.stats.population_stats` of the values (``ValueError`` if one is
        not finite: an undefined metric is never averaged away)."""
        return population_stats(self.values, confidence=confidence)

    def stats_or_nan(self) -> PopulationStats:
        """For display: the stats, or NaN everywhere if a value is undefined."""
        if all(math.isfinite(v) for v in self.values):
            return self.stats()
        return PopulationStats(math.nan, math.nan, len(self.values), math.nan, math.nan)


# ----------------------------------------------------------------------------- records
@dataclass(frozen=True)
class MetricSummary:
    """One per-model metric over every population of an experiment's grid.

    ``metric`` is a key of :data:`METRICS` (its unit there); ``attribute`` is the protected
    attribute for fairness metrics (None for accuracy); ``definition`` states how it was
    computed (e.g. the distances of the Lipschitz ratio).
    """

    experiment: str
    task: str
    split: str
    metric: str
    attribute: str | None
    definition: str
    populations: tuple[PopulationValues, ...]

    def __post_init__(self) -> None:
        metric_column(self.metric, self.attribute)  # validates the pair
        pops = [p.population for p in self.populations]
        if len(set(pops)) != len(pops):
            raise ValueError(f"duplicate populations in {self.metric} summary: {[str(p) for p in pops]}")

    @property
    def unit(self) -> str:
        return METRICS[self.metric]

    def of(self, population: Population) -> PopulationValues:
        for p in self.populations:
            if p.population == population:
                return p
        raise KeyError(f"no {population} in the {self.metric} summary; have: "
                       f"{', '.join(str(p.population) for p in self.populations)}")

    def ds(self, window: tuple[float, float] | None = None) -> list[PopulationValues]:
        """Distilled populations with T in ``window`` (all if None), by increasing T."""
        chosen = [p for p in self.populations
                  if p.population.role == "ds" and in_window(p.population.temperature, window)]
        return sorted(chosen, key=lambda p: p.population.sort_key)

    def frame(self):
        """A display table: population, role, T, mean, std, n, CI (pandas)."""
        import pandas as pd

        rows = []
        for p in sorted(self.populations, key=lambda p: p.population.sort_key):
            s = p.stats_or_nan()
            rows.append({"population": p.population.name, "role": p.population.role,
                         "T": np.nan if p.population.temperature is None else p.population.temperature,
                         "mean": s.mean, "std": s.std, "n": s.n, "ci_low": s.ci_low, "ci_high": s.ci_high})
        return pd.DataFrame(rows)


def summarize(table: Any, metric: str, attribute: str | None = None, *, experiment: str = "main") -> MetricSummary:
    """The :class:`MetricSummary` of one column of a per-model table
    (:meth:`~kdfair_utils.grid.GridResult.table`): its values grouped into populations by the
    ``role`` and ``T`` fields, in the table's (seed) order."""
    column = metric_column(metric, attribute)
    if column not in table:
        raise ValueError(f"the table has no {column!r} column (computed columns: "
                         f"{', '.join(c for c in table.columns if c not in _ID_COLUMNS)})")
    pops: list[PopulationValues] = []
    for (role, t), rows in table.groupby(["role", "T"], dropna=False, sort=False):
        pop = Population(role, None if math.isnan(t) else float(t))
        teachers = (tuple(int(s) for s in rows["teacher_seed"])
                    if role == "ds" and "teacher_seed" in rows and rows["teacher_seed"].notna().all() else None)
        pops.append(PopulationValues(pop, tuple(int(s) for s in rows["seed"]), tuple(float(v) for v in rows[column]),
                                     teachers))
    pops.sort(key=lambda p: p.population.sort_key)
    attrs = getattr(table, "attrs", {}) or {}
    return MetricSummary(experiment=experiment, task=str(attrs.get("task", "")), split=str(attrs.get("split", "")),
                         metric=metric, attribute=attribute,
                         definition=str(attrs.get("definitions", {}).get(metric, "")), populations=tuple(pops))


_ID_COLUMNS = ("key", "role", "arch", "T", "seed", "teacher_seed", "split")


def summary_table(summaries: dict[str, MetricSummary], digits: int = 2):
    """A display table (pandas): one row per population, one ``mean ± std`` column per summary
    (keyed by its column title), and the number of models."""
    import pandas as pd

    pops = sorted({p.population for s in summaries.values() for p in s.populations}, key=lambda p: p.sort_key)
    rows = []
    for pop in pops:
        row: dict[str, Any] = {"population": pop.name, "T": pop.temperature}
        for title, s in summaries.items():
            st = s.of(pop).stats_or_nan()
            row[title] = f"{st.mean:.{digits}f} ± {st.std:.{digits}f}"
            row["n"] = st.n
        rows.append(row)
    return pd.DataFrame(rows).set_index("population")


@dataclass(frozen=True)
class SignificantCounts:
    """Classes with p < significance: raw (the paper's #SC/#TC), after BH and after Holm, out of
    ``tested`` (classes whose test is defined)."""

    raw: int
    bh: int
    holm: int
    tested: int


@dataclass(frozen=True)
class ClassBiasAtT:
    """#SC (NDS vs DS@T) and #TC (teacher vs DS@T), and the DS mean accuracy (%)."""

    temperature: float
    sc: SignificantCounts
    tc: SignificantCounts
    ds_accuracy: float


@dataclass(frozen=True)
class ChanceLevel:
    """Seed-permutation null of the #SC count for NDS vs DS@``temperature``."""

    temperature: float
    observed: SignificantCounts
    expected_raw: float
    expected_bh: float
    p_value_raw: float
    min_p_value: float
    n_splits: int
    exhaustive: bool
    split_half_expected_raw: float | None


@dataclass(frozen=True)
class ClassBiasSummary:
    """The per-class Welch counts of an experiment's grid, per temperature."""

    experiment: str
    task: str
    n_classes: int
    significance: float
    normalization: str
    by_temperature: tuple[ClassBiasAtT, ...]
    chance: ChanceLevel | None

    def within(self, window: tuple[float, float] | None) -> list[ClassBiasAtT]:
        return sorted((r for r in self.by_temperature if in_window(r.temperature, window)), key=lambda r: r.temperature)

    def frame(self):
        import pandas as pd

        return pd.DataFrame([{"T": r.temperature, "SC_raw": r.sc.raw, "SC_bh": r.sc.bh, "SC_holm": r.sc.holm,
                              "TC_raw": r.tc.raw, "TC_bh": r.tc.bh, "TC_holm": r.tc.holm,
                              "DS accuracy": r.ds_accuracy} for r in self.by_temperature])


@dataclass(frozen=True)
class PopulationClassAccuracy:
    """Each model's overall and per-class accuracy (fractions, seed order) in one population."""

    population: Population
    seeds: tuple[int, ...]
    overall: tuple[float, ...]
    per_class: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        if not (len(self.seeds) == len(self.overall) == len(self.per_class)) or not self.seeds:
            raise ValueError(f"{self.population}: {len(self.seeds)} seeds, {len(self.overall)} accuracies and "
                             f"{len(self.per_class)} per-class rows")

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(per-class accuracy ``[models, classes]``, overall accuracy ``[models]``)."""
        return np.asarray(self.per_class, dtype=float), np.asarray(self.overall, dtype=float)


@dataclass(frozen=True)
class ClassAccuracies:
    """Per-class accuracies of every model of an experiment's grid on its test split: what the
    report's class-bias inference (:mod:`kdfair_utils.class_bias_controls`) is computed from."""

    experiment: str
    task: str
    class_names: tuple[str, ...]
    test_per_class: tuple[int, ...]
    populations: tuple[PopulationClassAccuracy, ...]

    def of(self, population: Population) -> PopulationClassAccuracy:
        for p in self.populations:
            if p.population == population:
                return p
        raise KeyError(f"no {population} in the class accuracies of {self.experiment!r}")

    def temperatures(self, window: tuple[float, float] | None = None) -> list[float]:
        return sorted(p.population.temperature for p in self.populations  # type: ignore[misc]
                      if p.population.role == "ds" and in_window(p.population.temperature, window))


@dataclass(frozen=True)
class DatasetSummary:
    """What the series ran on; ``base_rate_dpd`` is the DPD (%) of a perfect classifier."""

    name: str
    task: str
    n_train: int
    n_test: int
    n_classes: int
    base_rate_dpd: dict[str, float]


@dataclass(frozen=True)
class ClaimVerdict:
    """One of the paper's claims beside what this run measured: the estimate (``kdfair``), the
    test (``evidence``: p-value or interval), the verdict (``held``) under ``rule`` and its
    bootstrap ``support`` over seeds (share of resamples with the same verdict)."""

    claim: str
    statement: str
    paper: str
    kdfair: str
    evidence: str
    held: str
    support: float | None
    rule: str
    estimate: float | None
    p_value: float | None


Record = Union[MetricSummary, ClassBiasSummary, ClassAccuracies, DatasetSummary, ClaimVerdict]
RECORD_KINDS: dict[str, type] = {"metric": MetricSummary, "class_bias": ClassBiasSummary,
                                 "class_accuracies": ClassAccuracies, "dataset": DatasetSummary,
                                 "claim": ClaimVerdict}
_KIND_OF = {cls: kind for kind, cls in RECORD_KINDS.items()}


# ----------------------------------------------------------------------------- (de)serialisation
def to_plain(obj: Any) -> Any:
    """JSON-ready copy of records: dataclasses to dicts, NaN/inf to None, numpy to Python."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_plain(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def from_plain(tp: Any, data: Any, where: str = "record") -> Any:
    """Rebuild a value of type ``tp`` from :func:`to_plain` output, strictly: a missing or
    unknown field, or a value of the wrong type, raises ``ValueError`` naming its place."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if data is None:
            return None
        return from_plain(options[0], data, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object for {tp.__name__}, got {type(data).__name__}")
        hints = typing.get_type_hints(tp)
        names = [f.name for f in dataclasses.fields(tp)]
        missing, unknown = set(names) - set(data), set(data) - set(names)
        if missing or unknown:
            raise ValueError(f"{where}: {tp.__name__} fields differ from the schema: missing {sorted(missing)}, "
                             f"unknown {sorted(unknown)}")
        return tp(**{n: from_plain(hints[n], data[n], f"{where}.{n}") for n in names})
    if origin is tuple:
        if not isinstance(data, list):
            raise ValueError(f"{where}: expected a list, got {type(data).__name__}")
        return tuple(from_plain(typing.get_args(tp)[0], v, f"{where}[{i}]") for i, v in enumerate(data))
    if origin is dict:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
        value_type = typing.get_args(tp)[1]
        return {k: from_plain(value_type, v, f"{where}.{k}") for k, v in data.items()}
    if tp is float:
        if data is None:
            return math.nan
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise ValueError(f"{where}: expected a number, got {data!r}")
        return float(data)
    if tp in (int, str, bool):
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise ValueError(f"{where}: expected {tp.__name__}, got {data!r}")
        return data
    raise TypeError(f"{where}: no rule to read type {tp!r}")


def record_to_plain(rec: Record) -> dict[str, Any]:
    kind = _KIND_OF.get(type(rec))
    if kind is None:
        kinds = ", ".join(c.__name__ for c in RECORD_KINDS.values())
        raise TypeError(f"not a record: {type(rec).__name__}; records are {kinds}")
    return {"kind": kind, **to_plain(rec)}


def record_from_plain(data: dict[str, Any], where: str = "record") -> Record:
    kind = data.get("kind")
    if kind not in RECORD_KINDS:
        raise ValueError(f"{where}: unknown record kind {kind!r}; known: {', '.join(RECORD_KINDS)}")
    return from_plain(RECORD_KINDS[kind], {k: v for k, v in data.items() if k != "kind"}, f"{where}<{kind}>")


# ----------------------------------------------------------------------------- files
def record(out_dir: str | Path, notebook: str, records: Iterable[Record], *, profile: str, config_key: str) -> Path:
    """Write a notebook's records to ``<out_dir>/results/<notebook>.json`` (atomically).

    ``profile`` and ``config_key`` (the hash of the resolved profile) let :func:`load_results`
    refuse to mix results of different configurations in one report.
    """
    body = {"schema": SCHEMA, "notebook": notebook, "profile": profile, "config_key": config_key,
            "records": [record_to_plain(r) for r in records]}
    return save_json(Path(out_dir) / "results" / f"{notebook}.json", body)


@dataclass
class Results:
    """Every notebook's records of one run, by notebook, with typed look-ups."""

    by_notebook: dict[str, list[Record]]
    profile: str
    config_key: str
    mtimes: dict[str, float]

    def all(self, kind: type) -> list[Any]:
        return [r for recs in self.by_notebook.values() for r in recs if isinstance(r, kind)]

    def _one(self, kind: type, **fields: Any) -> Any:
        hits = [r for r in self.all(kind) if all(getattr(r, k) == v for k, v in fields.items())]
        if len(hits) > 1:
            raise ValueError(f"{len(hits)} {kind.__name__} records match {fields}")
        return hits[0] if hits else None

    def metric(self, metric: str, attribute: str | None = None, *, experiment: str = "main") -> MetricSummary | None:
        """The summary of ``metric`` (and ``attribute``) for ``experiment``; None if not recorded."""
        return self._one(MetricSummary, metric=metric, attribute=attribute, experiment=experiment)

    def class_bias(self, *, experiment: str) -> ClassBiasSummary | None:
        return self._one(ClassBiasSummary, experiment=experiment)

    def class_accuracies(self, *, experiment: str) -> ClassAccuracies | None:
        return self._one(ClassAccuracies, experiment=experiment)

    def verdicts(self) -> list[ClaimVerdict]:
        return self.all(ClaimVerdict)


def load_results(out_dir: str | Path) -> Results:
    """Read every ``<out_dir>/results/*.json`` back into records (see the module docstring)."""
    folder = Path(out_dir) / "results"
    by_notebook: dict[str, list[Record]] = {}
    keys: dict[str, tuple[str, str]] = {}
    mtimes: dict[str, float] = {}
    for path in sorted(folder.glob("*.json")):
        body = load_json(path)
        if not isinstance(body, dict) or body.get("schema") != SCHEMA:
            raise ValueError(f"{path}: not a kdfair results file of schema {SCHEMA} (re-run its notebook)")
        by_notebook[path.stem] = [record_from_plain(r, f"{path.name}[{i}]") for i, r in enumerate(body["records"])]
        keys[path.stem] = (body["profile"], body["config_key"])
        mtimes[path.stem] = path.stat().st_mtime
    if len(set(keys.values())) > 1:
        listing = "; ".join(f"{nb}: profile {p!r}, config {k}" for nb, (p, k) in keys.items())
        raise ValueError(f"results in {folder} come from different configurations ({listing}); "
                         "re-run the series into one folder")
    profile, key = next(iter(keys.values()), ("", ""))
    return Results(by_notebook, profile, key, mtimes)
