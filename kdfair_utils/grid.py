"""The experiment grid: a teacher population, an NDS population and a DS population per T.

Every model is cached on its own under ``<runs_dir>/models/<role>-<key>/``, where ``key`` hashes
everything that determines it (the training data's config,
:func:`~kdfair_utils.datasets.training_config`; architecture, recipe, seed; for a DS also its
teacher's key, T, α and the T² flag) and the numerics that change its floats on one machine
(:func:`~kdfair_utils.train.numerics`: device type, precision, CPU thread count; and the
training engine, :data:`ENGINES`). So a grid that is
called again loads; an interrupted grid resumes; widening the temperature list trains only the
new students; deleting one model's folder retrains only that model. The evaluation data are not
in the key: each model's logits on the evaluation splits are cached apart
(:mod:`kdfair_utils.evaluations`), so a larger evaluation set re-evaluates and retrains nothing.

The cache checks itself. ``meta.json`` is written last and sealed with a checksum; it records
the sha256 and size of every file of the folder and the sha256 of the training data
(:func:`~kdfair_utils.datasets.train_sha256`). :func:`run_grid` verifies every folder before using it, and retrains
(saying which and why) a folder whose files are missing, truncated, altered, swapped with
another model's, or trained on other data; where the runs folder is read-only it stops with an
error naming the file instead. Any number of runners may share one cache: each model is
claimed with a lock (released by the OS if its holder dies) and re-verified just before
training, so it is trained once. Weights are read with ``weights_only=True``.

Engines: ``"population"`` (default) trains the models of one role that a runner claims together,
packed into one network (:mod:`kdfair_utils.population`) in chunks of at most
``population_size`` (default :data:`POPULATION_SIZE`); ``"single"`` trains one model at a time with
:func:`~kdfair_utils.train.train_model`. Architectures that cannot be packed always train
singly (and are keyed so). The chunks are fixed by the grid (balanced slices of its teachers,
and of its students in spec order), so two runs of one grid pack the same models together;
a model repaired alone is trained in a smaller chunk and may differ from the original in its
last digits (a grouped convolution sums in another order than a plain one).

Teacher pairing (the paper does not say): with ``"same_seed"`` the i-th student seed (its
position in ``seeds``) distils from ``teacher_seeds[i mod len(teacher_seeds)]`` — so with seeds
0..4 and teachers 0..4, seed k distils from teacher k; ``"first"`` uses the first teacher for
every DS. :func:`paired_teacher` is the one place this rule lives.

The named experiments of each profile (the main grid, the 100-class class-bias grid) are in
:mod:`kdfair_utils.experiments`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .cache import (atomic_write, check_file, config_key, file_lock, file_record, load_json, load_npz,
                    remove_stale_tmp, save_json, save_npz, seal, sha256_bytes, unseal)
from .validation import (check_bool, check_choice, check_device, check_dir_path, check_distinct, check_int,
                     check_mapping, check_number, check_seeds, check_sequence, is_writable_dir)
from .datasets import TEXT_DATASETS, Dataset, dataset_config, eval_sha256, load_dataset, train_sha256, training_config
from .evaluations import ensure_evaluated, eval_folder, evaluate_and_save, load_net
from .distill import KDLoss, check_temperature
from .models import MODELS, check_image_size
from .paths import default_runs_dir
from .results import Population
from .train import TrainConfig, numerics, resolve_precision

PAIRINGS = ("same_seed", "first")
ENGINES = ("population", "single")
# Models per packed chunk when population_size is None. On 2 CPU cores chunks of 6-8 LeNet-5
# trained fastest (about 29k model-images/s, against 25-30k with 15: cache locality); a GPU wants
# wide chunks, bounded by memory.
POPULATION_SIZE = {"cpu": 8, "cuda": 64}


def default_population_size(device: str) -> int:
    """:data:`POPULATION_SIZE` for ``device``'s type (the CUDA value for any accelerator)."""
    return POPULATION_SIZE["cpu"] if str(device).split(":")[0] == "cpu" else POPULATION_SIZE["cuda"]


@dataclass(frozen=True)
class GridConfig:
    """Everything that defines a grid (one experiment). :mod:`kdfair_utils.experiments` names
    the grids of each profile; :meth:`replace` takes the dotted override vocabulary."""

    dataset: str = "trifeature"
    label: str = "shape"
    data_options: dict[str, Any] = field(default_factory=lambda: {"image_size": 32, "per_combination": 3,
                                                                  "test_per_combination": 20,
                                                                  "twins_per_combination": 2})
    teacher: str = "resnet20"
    student: str = "lenet5"
    teacher_train: TrainConfig = TrainConfig(epochs=10, lr=0.05)
    student_train: TrainConfig = TrainConfig(epochs=30, lr=0.01, warmup_epochs=2, grad_clip=20.0)
    teacher_seeds: tuple[int, ...] = (0, 1)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    temperatures: tuple[float, ...] = (1, 2, 4, 6, 8, 10, 20, 40)
    alpha: float = 0.8
    t2_scaling: bool = True
    teacher_pairing: str = "same_seed"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field before anything is trained or written:
        types and values of every field, recipe and data option; integer, distinct seeds; finite,
        positive temperatures that stay distinct when printed (``T=2`` and ``T=2.0000001`` would
        share a population label)."""
        if not isinstance(self.label, str):
            raise ValueError(f"label must be a label name such as 'shape', got {self.label!r}")
        data = dataset_config(self.dataset, self.label, **check_mapping(self.data_options, "data_options"))
        if self.dataset in TEXT_DATASETS:
            from .text_models import PRETRAINED, TEXT_ARCHS

            for name in ("teacher", "student"):
                check_choice(getattr(self, name), name, TEXT_ARCHS)
                if getattr(self, name) in PRETRAINED and data["tokenizer"] != "bert-base-uncased":
                    raise ValueError(f"{name} {getattr(self, name)!r} reads bert-base-uncased token ids: set "
                                     "data_options.tokenizer='bert-base-uncased'")
            for name in ("teacher_train", "student_train"):
                if getattr(self, name).augment != "none":
                    raise ValueError(f"{name}.augment must be 'none': text has no augmentation")
        else:
            check_choice(self.teacher, "teacher", MODELS)
            check_choice(self.student, "student", MODELS)
            size = data.get("image_size", 32)
            check_image_size(self.teacher, size)
            check_image_size(self.student, size)
        for name in ("teacher_train", "student_train"):
            recipe = getattr(self, name)
            if not isinstance(recipe, TrainConfig):
                raise ValueError(f"{name} must be a TrainConfig (or a dict of its fields), got {recipe!r}")
            recipe.validate(prefix=f"{name}.")
        check_seeds(self.teacher_seeds, "teacher_seeds")
        check_seeds(self.seeds, "seeds")
        temperatures = check_sequence(self.temperatures, "temperatures")
        for i, t in enumerate(temperatures):
            check_temperature(t, f"temperatures[{i}]")
        check_distinct([float(t) for t in temperatures], "temperatures")
        check_distinct(temperatures, "temperatures", label=lambda t: Population.ds(float(t)).name)
        check_number(self.alpha, "alpha", minimum=0, maximum=1)
        check_bool(self.t2_scaling, "t2_scaling")
        check_choice(self.teacher_pairing, "teacher_pairing", PAIRINGS)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> GridConfig:
        """A copy with fields replaced; ``"student_train.epochs"``-style keys reach into recipes,
        ``"data_options.image_size"``-style keys into the data options."""
        direct: dict[str, Any] = {}
        for key, value in changes.items():
            head, _, sub = key.partition(".")
            if head not in self.__dataclass_fields__:
                raise ValueError(f"unknown grid field {head!r}; known: {', '.join(self.__dataclass_fields__)}")
            if head in ("teacher_train", "student_train") and (sub or isinstance(value, dict)):
                recipe = direct.get(head, getattr(self, head))
                direct[head] = recipe.replace({sub: value} if sub else value, prefix=f"{head}.")
            elif sub and head == "data_options":
                direct[head] = {**check_mapping(direct.get(head, self.data_options), "data_options"), sub: value}
            elif sub:
                raise ValueError(f"grid field {head!r} has no sub-fields")
            else:
                if head in ("teacher_seeds", "seeds", "temperatures"):  # one value: a one-element list
                    value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
                direct[head] = value
        return dataclasses.replace(self, **direct)


# ----------------------------------------------------------------------------- model specs
def paired_teacher(cfg: GridConfig, index: int) -> int:
    """Index into ``cfg.teacher_seeds`` of the teacher that student number ``index`` (its position
    in ``cfg.seeds``) is paired with: ``index mod #teachers`` (``same_seed``) or 0 (``first``)."""
    return index % len(cfg.teacher_seeds) if cfg.teacher_pairing == "same_seed" else 0


@dataclass(frozen=True)
class ModelSpec:
    """One model of a grid: what it is (role, architecture, seed, T) and its cache key."""

    role: str
    arch: str
    seed: int
    temperature: float | None
    key: str
    teacher_key: str | None = None
    teacher_seed: int | None = None

    @property
    def dirname(self) -> str:
        return f"{self.role}-{self.key}"

    @property
    def population(self) -> Population:
        return Population(self.role, self.temperature)

    @property
    def name(self) -> str:
        """Display name, e.g. ``DS@T=4 seed 2``."""
        return f"{self.population.name} seed {self.seed}"


def engine_for(arch: str, engine: str) -> str:
    """The engine that actually trains ``arch``: ``"single"`` for architectures that cannot be packed."""
    from .population import PACKABLE

    check_choice(engine, "engine", ENGINES)
    return engine if arch in PACKABLE else "single"


def model_specs(cfg: GridConfig, data_config: dict[str, Any] | None = None, *, device: str = "auto",
                precision: str = "auto", engine: str = "population",
                numerics_as: dict[str, Any] | None = None) -> list[ModelSpec]:
    """Teachers first (DS need them), then NDS, then DS by temperature and seed.

    ``data_config`` defaults to :func:`~kdfair_utils.datasets.training_config` of the grid's data;
    ``device``, ``precision`` and ``engine`` decide the numerics part of the keys
    (``numerics_as``: another machine's :func:`~kdfair_utils.train.numerics`, instead of this one's).
    """
    data_config = (data_config if data_config is not None
                   else training_config(cfg.dataset, cfg.label, **cfg.data_options))
    found = dict(numerics_as) if numerics_as is not None else numerics(device, precision)

    def common(arch: str) -> dict[str, Any]:
        return {"data": data_config, "numerics": {**found, "engine": engine_for(arch, engine)}}

    teachers = [ModelSpec("teacher", cfg.teacher, seed, None,
                          config_key({"role": "teacher", "arch": cfg.teacher, **common(cfg.teacher),
                                      "train": cfg.teacher_train.to_dict(), "seed": seed}))
                for seed in cfg.teacher_seeds]
    specs = list(teachers)
    for seed in cfg.seeds:
        key = config_key({"role": "nds", "arch": cfg.student, **common(cfg.student),
                          "train": cfg.student_train.to_dict(), "seed": seed})
        specs.append(ModelSpec("nds", cfg.student, seed, None, key))
    for t in cfg.temperatures:
        for i, seed in enumerate(cfg.seeds):
            teacher = teachers[paired_teacher(cfg, i)]
            key = config_key({"role": "ds", "arch": cfg.student, **common(cfg.student),
                              "train": cfg.student_train.to_dict(), "seed": seed, "teacher": teacher.key,
                              "T": float(t), "alpha": float(cfg.alpha), "t2": cfg.t2_scaling})
            specs.append(ModelSpec("ds", cfg.student, seed, float(t), key, teacher.key, teacher.seed))
    return specs


# ----------------------------------------------------------------------------- results
@dataclass
class GridResult:
    """Cached logits of every model of a grid; populations are selected by :class:`Population`.

    ``trained`` and ``loaded`` say which models this call trained and which it found cached;
    ``repaired`` maps the key of each model retrained because its cached folder failed
    verification to the reason. ``evals`` holds each model's verified evaluation record
    (:mod:`kdfair_utils.evaluations`: test accuracy, the logits file's sha256), by key;
    ``evaluated`` maps the key of each cached model this call evaluated (its evaluation logits
    were missing, damaged or of another evaluation set) to why (None: never evaluated on it).
    """

    config: GridConfig
    dataset: Dataset
    specs: list[ModelSpec]
    runs_dir: Path
    meta: dict[str, dict[str, Any]]
    trained: list[ModelSpec] = field(default_factory=list)
    loaded: list[ModelSpec] = field(default_factory=list)
    repaired: dict[str, str] = field(default_factory=dict)
    evaluated: dict[str, str | None] = field(default_factory=dict)
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_dir: Path | None = None  # where the evaluation logits live
    _logits: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    _tables: dict[Any, Any] = field(default_factory=dict, repr=False)

    def _model_logits(self, spec: ModelSpec) -> dict[str, np.ndarray]:
        """All eval splits' logits of one model, read from disk once and checked against the
        sha256 its evaluation record holds (``ValueError`` naming the file if it changed since)."""
        if spec.key not in self._logits:
            assert self.eval_dir is not None, "a GridResult comes from run_grid"
            path = self.eval_dir / f"{spec.dirname}.npz"
            try:
                blob = check_file(path, self.evals[spec.key]["file"])
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}; run the grid again to re-evaluate it") from None
            self._logits[spec.key] = load_npz(blob)
        return self._logits[spec.key]

    def populations(self) -> list[Population]:
        """Teacher, NDS, then DS by increasing T."""
        return sorted({s.population for s in self.specs}, key=lambda p: p.sort_key)

    def models(self, population: Population) -> list[ModelSpec]:
        """The models of one population, in seed order."""
        if not isinstance(population, Population):
            raise TypeError(f"select models with a Population, e.g. Population.ds(4), got {population!r}")
        chosen = [s for s in self.specs if s.population == population]
        if not chosen:
            raise ValueError(f"no {population} models in this grid; populations: "
                             f"{', '.join(str(p) for p in self.populations())}")
        return chosen

    def _check_split(self, split: str) -> None:
        splits = self.dataset.eval_splits()
        if split not in splits:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(splits)}")

    def logits(self, population: Population, split: str = "test") -> np.ndarray:
        """Stacked logits ``[models, examples, classes]`` of one population (seed order)."""
        self._check_split(split)
        return np.stack([self._model_logits(s)[split] for s in self.models(population)])

    def predictions(self, population: Population, split: str = "test") -> np.ndarray:
        """Predicted classes ``[models, examples]``."""
        return self.logits(population, split).argmax(-1)

    def paired_teacher_predictions(self, population: Population, split: str = "test") -> np.ndarray:
        """For each student of ``population``, the predictions of the teacher it is paired with
        (:func:`paired_teacher`; for a DS, the teacher it distilled from), ``[models, examples]``."""
        students = self.models(population)
        if population.role == "teacher":
            raise ValueError("teachers have no paired teacher")
        teachers = self.models(Population.teacher())
        by_seed = {t.seed: t for t in teachers}
        chosen = []
        for i, s in enumerate(students):
            seed = s.teacher_seed
            if seed is None:  # an NDS: the teacher its seed would distil from
                seed = self.config.teacher_seeds[paired_teacher(self.config, i)]
            chosen.append(by_seed[seed])
        self._check_split(split)
        return np.stack([self._model_logits(t)[split] for t in chosen]).argmax(-1)

    def table(self, *, split: str = "test", attributes: Sequence[str] = (), twin_attributes: Sequence[str] = (),
              output_distance: str = "tv", input_distance: str = "l2", reference_draws: int = 0,
              reference_seed: int = 0, neighbour_pairs: int = 0):
        """Every model as one tidy row (pandas): ``key, role, arch, T, seed, teacher_seed, split``
        and its metrics on ``split``:

        * ``accuracy`` (%);
        * per protected attribute a in ``attributes``: ``dpd_<a>``, ``eod_<a>`` (%, the paper's
          Algorithm 1: one-vs-rest per class, macro-averaged; fairlearn's between-groups, worst case);
          with ``reference_draws`` > 0 also their zero-disparity reference
          (:func:`~kdfair_utils.group_fairness.zero_disparity_reference`, the same seeded shuffles
          for every model): ``<m>_ref_<a>`` (mean), ``<m>_ref_low_<a>``, ``<m>_ref_high_<a>`` (95 %
          of the draws) and ``<m>_excess_<a>`` (observed − reference mean);
        * per twin attribute a in ``twin_attributes``: ``lipschitz_<a>`` (mean D/d over each test
          image and its counterfactual twin with a changed) and ``flip_rate_<a>`` (%);
        * with ``neighbour_pairs`` > 0: ``lipschitz_nn`` and ``flip_rate_nn``, the same over that
          many test images (seeded by ``reference_seed``) each paired with its nearest other test
          image under ``input_distance`` (:func:`~kdfair_utils.individual_fairness.knn_pairs`), for
          data sets without twins.

        ``T``, ``teacher_seed`` are NaN where they do not apply. Computed once per argument set.
        """
        import pandas as pd

        from .group_fairness import multiclass_fairness, zero_disparity_reference
        from .individual_fairness import NEIGHBOURS, flip_rate, knn_pairs, lipschitz_ratio, neighbour_queries, softmax
        from .results import metric_column

        key = (split, tuple(attributes), tuple(twin_attributes), output_distance, input_distance, reference_draws,
               reference_seed, neighbour_pairs)
        if key in self._tables:
            return self._tables[key]
        self._check_split(split)
        data = self.dataset
        evaluated = data.eval_splits()[split]
        for a in attributes:
            if a not in evaluated.attributes:
                raise ValueError(f"unknown attribute {a!r}; the {split} split has: {', '.join(evaluated.attributes)}")
        twin_splits = {a: f"{split}_cf_{a}" for a in twin_attributes}
        for a, name in twin_splits.items():
            if name not in data.eval_splits():
                raise ValueError(f"no counterfactual twins for {a!r} on {split!r} (needs split {name!r}); "
                                 f"splits: {', '.join(data.eval_splits())}")
        y = evaluated.labels
        x = evaluated.images  # uint8 (perhaps memory-mapped): only the paired rows are scaled to [0, 1]
        # the twins in [0, 1], scaled once rather than once per population
        x_twins = {a: data.eval_splits()[name].images / 255.0 for a, name in twin_splits.items()}
        # row i of a twin split is the twin of image source[i] (all images in order by default)
        sources = {a: _twin_source(data.eval_splits()[name], len(y)) for a, name in twin_splits.items()}
        x_sources = {a: x[src] / 255.0 for a, src in sources.items()}  # each twin's original, scaled once
        if neighbour_pairs:
            pairs = knn_pairs(evaluated.images, metric=input_distance,
                              queries=neighbour_queries(len(y), neighbour_pairs, reference_seed))
            x_pairs = (x[pairs[:, 0]] / 255.0, x[pairs[:, 1]] / 255.0)
        blocks = []
        for pop in self.populations():
            specs = self.models(pop)
            logits = self.logits(pop, split)
            preds = logits.argmax(-1)
            cols: dict[str, Any] = {
                "key": [s.key for s in specs], "role": pop.role, "arch": [s.arch for s in specs],
                "T": np.nan if pop.temperature is None else pop.temperature, "seed": [s.seed for s in specs],
                "teacher_seed": [np.nan if s.teacher_seed is None else s.teacher_seed for s in specs],
                "split": split, metric_column("accuracy"): 100 * (preds == y[None]).mean(1),
            }
            for a in attributes:
                groups = evaluated.attributes[a]
                if reference_draws:
                    refs = zero_disparity_reference(y, preds, sensitive_features=groups, draws=reference_draws,
                                                    seed=reference_seed, n_classes=data.num_classes)
                for metric in ("dpd", "eod"):
                    if reference_draws:
                        ref = refs[metric]
                        parts = {"": ref.observed, "_ref": ref.mean, "_ref_low": ref.low, "_ref_high": ref.high,
                                 "_excess": ref.excess}
                        for part, values in parts.items():
                            cols[metric_column(metric + part, a)] = 100 * values
                    else:
                        cols[metric_column(metric, a)] = 100 * np.atleast_1d(multiclass_fairness(
                            y, preds, sensitive_features=groups, metric=metric, n_classes=data.num_classes))
            if twin_attributes:
                probs = softmax(logits)
            for a, name in twin_splits.items():
                twin_logits = self.logits(pop, name)
                src = sources[a]
                cols[metric_column("lipschitz", a)] = np.atleast_1d(lipschitz_ratio(
                    probs[:, src], softmax(twin_logits), x_sources[a], x_twins[a], output=output_distance,
                    input=input_distance))
                cols[metric_column("flip_rate", a)] = 100 * np.atleast_1d(flip_rate(preds[:, src],
                                                                                    twin_logits.argmax(-1)))
            if neighbour_pairs:
                first, second = pairs[:, 0], pairs[:, 1]
                cols[metric_column("lipschitz", NEIGHBOURS)] = np.atleast_1d(lipschitz_ratio(  # only the paired rows
                    softmax(logits[:, first]), softmax(logits[:, second]), *x_pairs, output=output_distance,
                    input=input_distance))
                cols[metric_column("flip_rate", NEIGHBOURS)] = 100 * np.atleast_1d(flip_rate(preds[:, first],
                                                                                            preds[:, second]))
            blocks.append(pd.DataFrame(cols))
        table = pd.concat(blocks, ignore_index=True)
        table.attrs = {"task": self.config.label, "split": split,
                       "definitions": {"accuracy": "top-1 accuracy (%)",
                                       "dpd": "Algorithm 1 (one-vs-rest per class, macro average) of fairlearn's "
                                              "demographic parity difference, between groups (%)",
                                       "eod": "Algorithm 1 of fairlearn's equalized odds difference, between groups, "
                                              "worst case (%)",
                                       **{f"{m}_{part}": f"{m.upper()} {what} (%): predictions shuffled within "
                                          f"each true class across groups, {reference_draws} draws"
                                          for m in ("dpd", "eod") for part, what in (
                                              ("ref", "zero-disparity reference, mean"),
                                              ("ref_low", "zero-disparity reference, 2.5th percentile"),
                                              ("ref_high", "zero-disparity reference, 97.5th percentile"),
                                              ("excess", "minus its zero-disparity reference"))},
                                       "lipschitz": f"mean D/d over counterfactual twins (<a>) or nearest-neighbour "
                                                    f"pairs (nn); D = {output_distance} on softmax outputs, "
                                                    f"d = {input_distance} on pixels in [0, 1]",
                                       "flip_rate": "share of pairs whose predicted class changes (%)"}}
        self._tables[key] = table
        return table


def _twin_source(twins, n: int) -> np.ndarray:
    """Which original each row of a twin split is the twin of (``Split.source``, else row i of i)."""
    return np.arange(n) if twins.source is None else twins.source


META_FORMAT = 3  # meta.json with file records, the training data's sha256 and a checksum


def verify_model(folder: Path, spec: ModelSpec, data_sha256: str,
                 teacher_meta: dict | None = None) -> tuple[dict | None, str | None]:
    """``(meta, None)`` for a complete, intact model folder; ``(None, reason)`` otherwise
    (``reason`` is None when the folder was simply never finished). A DS is checked against its
    teacher's verified ``teacher_meta`` too (``(None, None)`` while that is not known yet): a DS
    distilled from a teacher whose training-set logits have since changed (a repaired teacher
    that came out different, as on a GPU) is stale."""
    path = folder / "meta.json"
    if not path.exists():  # never finished: say so when files show it was started (or meta.json deleted)
        started = folder.is_dir() and any(folder.glob("[!.]*"))
        return None, "meta.json is missing (training was interrupted, or the file was deleted)" if started else None
    if spec.role == "ds" and teacher_meta is None:
        return None, None
    try:
        record = load_json(path)
    except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None, f"meta.json is unreadable ({exc})"
    try:
        meta = unseal(record)
    except ValueError as exc:
        return None, f"meta.json {exc}"
    if meta.get("format") != META_FORMAT:
        return None, "meta.json has an old format"
    if meta.get("spec") != dataclasses.asdict(spec):
        return None, "meta.json describes another model"
    if meta.get("train_sha256") != data_sha256:
        return None, "it was trained on other data (the data cache changed)"
    files = meta.get("files")
    required = {"model.pt"} | ({"train_logits.npz"} if spec.role == "teacher" else set())
    if not isinstance(files, dict) or set(files) != required:
        return None, "meta.json lists other files than a model has"
    for name, record in files.items():
        try:
            check_file(folder / name, record)
        except (ValueError, OSError) as exc:
            return None, str(exc)
    if spec.role == "ds" and meta.get("teacher_content_sha256") != teacher_meta.get("content_sha256"):
        return None, "its teacher changed since it was distilled from it"
    return meta, None


def _teacher_source(spec: ModelSpec, cfg: GridConfig, data: Dataset, teacher_folder: Path,
                    teacher_meta: dict, cache: dict[str, Any]) -> dict[str, Any]:
    """What a DS distils from: its teacher's training-set logits (without augmentation) or its
    teacher model, read once per teacher into ``cache`` (the verified bytes are the bytes used)."""
    augmented = cfg.student_train.augment != "none"
    if spec.teacher_key not in cache:
        if augmented:
            cache[spec.teacher_key] = load_net(cfg.teacher, teacher_folder, teacher_meta, data)
        else:
            path = teacher_folder / "train_logits.npz"
            try:
                blob = check_file(path, teacher_meta["files"]["train_logits.npz"])
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}; run the grid again to retrain it") from None
            cache[spec.teacher_key] = load_npz(blob)["train"]
    return {"teacher" if augmented else "teacher_logits": cache[spec.teacher_key]}


def _initial_model(spec: ModelSpec, data: Dataset, stats: tuple[np.ndarray, np.ndarray] | None = None):
    """The model ``spec`` starts from: initial weights from its seed alone (not from what ran
    before); image models normalise inputs by the training set's channel ``stats``."""
    from .evaluations import new_model
    from .train import seed_everything

    seed_everything(spec.seed)
    return new_model(spec.arch, data, stats)


def _train_chunk(specs: list[ModelSpec], cfg: GridConfig, data: Dataset, shas: tuple[str, str],
                 folders: dict[str, Path], runs: Path, device: str, precision: str, engine: str, progress: bool,
                 meta: dict[str, dict], evals: dict[str, dict]) -> list[dict]:
    """Train ``specs`` (one role, one architecture), write each model's folder and evaluate it
    (into ``evals``); returns their metas. ``shas``: the training and evaluation data's sha256.
    With the population engine (and a packable architecture) they train as one packed network."""
    from .population import Member, train_population
    from .train import train_model

    for spec in specs:
        (folders[spec.key] / "meta.json").unlink(missing_ok=True)  # incomplete until the new one is written
    recipe = cfg.teacher_train if specs[0].role == "teacher" else cfg.student_train
    from .train import channel_stats

    stats = channel_stats(data.train.images) if data.kind == "image" else None  # once per chunk, not per model
    models = [_initial_model(spec, data, stats) for spec in specs]
    teacher_cache: dict[str, Any] = {}
    sources, kds = [], []
    for spec in specs:
        if spec.role == "ds":
            assert spec.temperature is not None and spec.teacher_key is not None
            sources.append(_teacher_source(spec, cfg, data, folders[spec.teacher_key], meta[spec.teacher_key],
                                           teacher_cache))
            kds.append(KDLoss(spec.temperature, cfg.alpha, cfg.t2_scaling))
        else:
            sources.append({})
            kds.append(None)
    start = time.perf_counter()
    if engine_for(specs[0].arch, engine) == "population":
        members = [Member(spec.seed, kd, name=spec.name, **source) for spec, kd, source in zip(specs, kds, sources)]
        histories = train_population(models, members, data.train.images, data.train.labels, recipe, device=device,
                                     progress=progress, precision=precision,
                                     desc=f"{len(specs)} × {specs[0].arch} "
                                          f"({'teachers' if specs[0].role == 'teacher' else 'students'})")
    elif data.kind == "text":
        from .text_models import train_text_model

        histories = [train_text_model(model, data.train.tokens, data.train.mask, data.train.labels, recipe,
                                      seed=spec.seed, device=device, progress=progress, desc=spec.name, kd=kd,
                                      precision=precision, **source)
                     for spec, model, kd, source in zip(specs, models, kds, sources)]
    else:
        histories = [train_model(model, data.train.images, data.train.labels, recipe, seed=spec.seed, device=device,
                                 progress=progress, desc=spec.name, kd=kd, precision=precision, **source)
                     for spec, model, kd, source in zip(specs, models, kds, sources)]
    seconds = (time.perf_counter() - start) / len(specs)
    metas = []
    for spec, model, history in zip(specs, models, histories):
        found = _save_model(spec, model, history, seconds, len(specs), recipe, data, shas[0], folders[spec.key],
                            device, precision, meta.get(spec.teacher_key or ""))
        evals[spec.key], _ = evaluate_and_save(spec, model, found, data, shas[1], runs, device=device,
                                               precision=precision)
        metas.append(found)
    return metas


def _save_model(spec: ModelSpec, model, history: dict, seconds: float, chunk: int, recipe: TrainConfig,
                data: Dataset, data_sha256: str, folder: Path, device: str, precision: str,
                teacher_meta: dict | None) -> dict[str, Any]:
    import torch

    from .evaluations import predict_split

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "model.pt", lambda tmp: torch.save(state, tmp))
    identity: dict[str, str] = {}
    if spec.role == "teacher":
        train_logits = predict_split(model, data.train, device=device, precision=precision)
        save_npz(folder / "train_logits.npz", train=train_logits)
        identity["content_sha256"] = sha256_bytes(np.ascontiguousarray(train_logits).tobytes())
    elif spec.role == "ds":
        assert teacher_meta is not None
        identity["teacher_content_sha256"] = teacher_meta["content_sha256"]
    files = {f.name: file_record(f) for f in sorted(folder.iterdir()) if f.name in ("model.pt", "train_logits.npz")}
    meta = {"format": META_FORMAT, "spec": dataclasses.asdict(spec), "train_sha256": data_sha256, "files": files,
            **identity, "environment": environment(device), "population": chunk,
            "train_seconds": seconds, "loss": history["loss"], "device": str(device), "recipe": recipe.to_dict()}
    save_json(folder / "meta.json", seal(meta))
    return meta


def chunks(specs: list[ModelSpec], size: int, engine: str = "population") -> list[list[ModelSpec]]:
    """The grid's fixed training chunks: teachers, then students, each cut into balanced
    consecutive slices of at most ``size`` models (45 students, size 16 → 15 + 15 + 15; size 8 →
    8 + 7 + 8 + 7 + 8 + 7). Architectures the ``engine`` trains one at a time (not packable, e.g.
    ResNet-50 or DistilBERT) come in chunks of one, so only one such model is in memory at once."""
    out: list[list[ModelSpec]] = []
    for group in ([s for s in specs if s.role == "teacher"], [s for s in specs if s.role != "teacher"]):
        if group:
            n = -(-len(group) // (size if engine_for(group[0].arch, engine) == "population" else 1))
            bounds = [round(i * len(group) / n) for i in range(n + 1)]
            out += [group[bounds[i]:bounds[i + 1]] for i in range(n)]
    return out


def environment(device: str) -> dict[str, Any]:
    """What a cached model records about where it was trained (beyond its keyed numerics)."""
    import platform

    import torch

    env = {"torch": torch.__version__, "machine": platform.machine()}
    if str(device).startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def run_grid(cfg: GridConfig, *, runs_dir: str | Path | None = None, data_dir: str | Path | None = None,
             device: str = "auto", progress: bool = True, precision: str = "auto", engine: str = "population",
             population_size: int | None = None, numerics_as: dict[str, Any] | None = None,
             download: bool = False) -> GridResult:
    """Train (or load) every model of the grid; returns a :class:`GridResult`.

    Every argument is checked first (``ValueError`` naming it, before anything is generated,
    trained or written). Cached folders are verified (see the module docstring); only models
    without an intact folder are trained, each by exactly one of any number of concurrent
    runners. ``result.trained`` and ``result.loaded`` list which, and with ``progress`` a line
    says so (``grid shape: 49 models — loaded 45 from runs/models, trained 4``). ``engine``,
    ``population_size`` and ``precision``: see the module docstring and
    :func:`~kdfair_utils.train.resolve_precision`. ``numerics_as`` reads a cache that was trained
    elsewhere (e.g. by GPU workers, :mod:`kdfair_utils.scaleout`): models keyed by those numerics,
    trained (and evaluated) nowhere here; a missing one is a ``RuntimeError``. ``download``: fetch a
    missing data set where a public source exists (:func:`~kdfair_utils.datasets.load_dataset`).
    """
    from tqdm.auto import tqdm

    if not isinstance(cfg, GridConfig):
        raise ValueError(f"cfg must be a GridConfig, got {type(cfg).__name__}")
    cfg.validate()
    dev = str(check_device(device))
    check_choice(engine, "engine", ENGINES)
    if population_size is None:
        population_size = default_population_size(dev)
    check_int(population_size, "population_size", minimum=1)
    precision = resolve_precision(precision, dev)
    runs = check_dir_path(runs_dir if runs_dir is not None else default_runs_dir(), "runs_dir")
    models_dir = runs / "models"
    specs = model_specs(cfg, device=dev, precision=precision, engine=engine, numerics_as=numerics_as)
    writable = is_writable_dir(models_dir)  # a read-only cache can still be read, if it is complete
    missing = uncached(specs, runs)
    if missing and not writable:
        raise ValueError(f"runs_dir {str(runs)!r} is not writable and {len(missing)} model(s) are not cached "
                         f"there (e.g. {missing[0].dirname})")
    data = load_dataset(cfg.dataset, cfg.label, data_dir=data_dir, download=check_bool(download, "download"),
                        **cfg.data_options)
    data_sha, eval_sha = train_sha256(data), eval_sha256(data)
    folders = {s.key: models_dir / s.dirname for s in specs}
    meta: dict[str, dict[str, Any]] = {}
    loaded: list[ModelSpec] = []
    pending: list[ModelSpec] = []
    for spec in specs:  # verify every cached folder first (no lock needed to read); teachers come first
        found, reason = verify_model(folders[spec.key], spec, data_sha, meta.get(spec.teacher_key or ""))
        if found is not None:
            meta[spec.key] = found
            loaded.append(spec)
        else:
            pending.append(spec)
            if reason is not None and not writable:
                raise ValueError(f"{folders[spec.key]}: {reason}, and runs_dir {str(runs)!r} is not writable to "
                                 "retrain it")
    if pending and not writable:
        raise ValueError(f"runs_dir {str(runs)!r} is not writable and {len(pending)} model(s) need training")
    if pending and numerics_as is not None:
        raise RuntimeError(f"{len(pending)} model(s) keyed by {numerics_as} are missing or damaged in {models_dir} "
                           f"(e.g. {pending[0].dirname}); run the workers again")
    trained: list[ModelSpec] = []
    repaired: dict[str, str] = {}
    evals: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=len(pending), desc=f"grid {cfg.label}: loaded {len(loaded)}, training {len(pending)}",
               disable=not progress or not pending)

    def claim(chunk: list[ModelSpec], blocking: bool) -> bool:
        """Under the locks of every model of the chunk: re-verify each (another runner may have
        finished it), then train the rest together. ``False`` if another runner holds any lock."""
        with contextlib.ExitStack() as stack:
            for spec in chunk:
                if not stack.enter_context(file_lock(runs / ".locks" / f"{spec.dirname}.lock", blocking=blocking)):
                    return False
            todo = []
            for spec in chunk:
                folder = folders[spec.key]
                found, reason = verify_model(folder, spec, data_sha, meta.get(spec.teacher_key or ""))
                if found is not None:
                    loaded.append(spec)
                    meta[spec.key] = found
                    bar.update(1)
                    continue
                if reason is not None:
                    repaired[spec.key] = reason
                    tqdm.write(f"retraining {spec.name} ({folder.name}): {reason}", file=sys.stderr)
                remove_stale_tmp(folder)
                todo.append(spec)
            if todo:
                bar.set_postfix_str(f"{todo[0].name}" + (f" + {len(todo) - 1} more" if len(todo) > 1 else ""))
                metas = _train_chunk(todo, cfg, data, (data_sha, eval_sha), folders, runs, dev, precision, engine,
                                     progress, meta, evals)
                for spec, found in zip(todo, metas):
                    meta[spec.key] = found
                    trained.append(spec)
                bar.update(len(todo))
            return True

    waiting = [[s for s in chunk if s in pending] for chunk in chunks(specs, population_size, engine)]
    waiting = [chunk for chunk in waiting if chunk]
    while waiting:
        ready = [c for c in waiting if all(s.teacher_key is None or s.teacher_key in meta for s in c)]
        done = [c for c in ready if claim(c, blocking=False)]
        if not done:  # every ready chunk is being trained by another runner: wait for the first
            tqdm.write(f"waiting for another runner to finish {ready[0][0].name} ({ready[0][0].dirname})",
                       file=sys.stderr)
            claim(ready[0], blocking=True)
            done = [ready[0]]
        waiting = [c for c in waiting if c not in done]
    bar.close()
    order = {s.key: i for i, s in enumerate(specs)}
    trained.sort(key=lambda s: order[s.key])
    loaded.sort(key=lambda s: order[s.key])
    if progress:
        print(f"grid {cfg.label}: {len(specs)} models — loaded {len(loaded)} from {models_dir}, "
              f"trained {len(trained)}")
        _note_environments(meta, dev)
    keyed = dict(numerics_as) if numerics_as is not None else numerics(dev, precision)
    found_evals, evaluated = ensure_evaluated([s for s in specs if s.key not in evals], meta, data, eval_sha, runs,
                                              device=dev, precision=precision, expected_numerics=keyed,
                                              progress=progress)
    evals.update(found_evals)
    if progress and evaluated:
        print(f"grid {cfg.label}: evaluated {len(evaluated)} cached model(s) on this evaluation set")
    result = GridResult(cfg, data, specs, runs, meta, trained=trained, loaded=loaded, repaired=repaired,
                        evaluated=evaluated, evals=evals, eval_dir=eval_folder(runs, eval_sha))
    grid_key = config_key({"grid": cfg.to_dict(), "data": dataset_config(cfg.dataset, cfg.label, **cfg.data_options)})
    summary_path = runs / "grids" / f"{cfg.label}-{grid_key}.json"
    summary = {"config": cfg.to_dict(), "data": data.config, "numerics": keyed,
               "models": [dataclasses.asdict(s) for s in specs]}
    try:
        recorded = load_json(summary_path).get("numerics") if summary_path.exists() else None
    except (OSError, ValueError, AttributeError):  # a damaged summary is rewritten
        recorded = None
    if writable and (trained or recorded != keyed):
        save_json(summary_path, summary)
    return result


def uncached(specs: Sequence[ModelSpec], runs_dir: str | Path) -> list[ModelSpec]:
    """The models of ``specs`` with no ``meta.json`` in ``<runs>/models`` (present is not yet
    verified: :func:`run_grid` checks every file before it loads a model)."""
    models = Path(runs_dir) / "models"
    return [s for s in specs if not (models / s.dirname / "meta.json").exists()]


def _recorded_numerics(runs: Path) -> list[dict[str, Any]]:
    """Every numerics dict recorded in a cache: in the grid summaries (``<runs>/grids``) and in
    the evaluation records (``<runs>/evals/*/``), distinct, in a fixed order."""
    found: dict[str, dict[str, Any]] = {}
    for path in [*(runs / "grids").glob("*.json"), *(runs / "evals").glob("*/*.json")]:
        try:
            record = load_json(path)
        except (OSError, ValueError):
            continue
        numerics_ = record.get("numerics") if isinstance(record, dict) else None
        if isinstance(numerics_, dict):
            found.setdefault(json.dumps(numerics_, sort_keys=True), numerics_)
    return [found[k] for k in sorted(found)]


def find_prepared(cfg: GridConfig, runs_dir: str | Path, *, data: Dataset | None = None, device: str = "auto",
                  precision: str = "auto") -> tuple[dict[str, Any] | None, str | None]:
    """Where this machine's own keys miss some of ``cfg``'s models, a complete set trained
    elsewhere in ``runs_dir``: e.g. an instructor's cache copied to a laptop with another thread
    count or without bf16 (:func:`~kdfair_utils.train.numerics` is part of every key), or one
    trained with the other engine. Returns ``(options, note)``: ``options`` are the
    :func:`run_grid` keywords that load it (``numerics_as`` and/or ``engine``), or None when this
    machine's keys find every model or no complete set exists; ``note`` says why a set that
    has every model's weights cannot serve (its evaluation logits on ``data`` are missing), else
    None. A set trained under other numerics must have its evaluation records for ``data`` (they
    are never recomputed here); candidates are the numerics recorded in the cache, in a fixed
    order, each with either engine."""
    runs = Path(runs_dir)

    def weights(options: dict[str, Any]) -> list[ModelSpec] | None:
        specs = model_specs(cfg, device=device, precision=precision, **options)
        return None if uncached(specs, runs) else specs

    if weights({}) is not None:
        return None, None
    eval_dir = eval_folder(runs, eval_sha256(data)) if data is not None else None
    here = numerics(device, precision)
    note = None
    for found in [here, *(n for n in _recorded_numerics(runs) if n != here)]:
        for engine in ENGINES:
            options = {"engine": engine} if found == here else {"numerics_as": found, "engine": engine}
            if options == {"engine": "population"}:
                continue  # this machine's own keys: checked above
            specs = weights(options)
            if specs is None:
                continue
            if found == here or eval_dir is None or all((eval_dir / f"{s.dirname}.json").exists() for s in specs):
                return options, None
            note = note or (f"{runs / 'models'} holds every model of this grid, trained under {found}, but "
                            f"{eval_dir} lacks their evaluation logits on this data (they are computed where the "
                            "models were trained): copy runs/evals from that machine too")
    return None, note


def _note_environments(meta: dict[str, dict[str, Any]], device: str) -> None:
    """Say so when cached models were trained under another torch version or GPU: their keys
    match (same config and numerics), but their last digits may not."""
    here = environment(device)
    others = ({json.dumps(m.get("environment"), sort_keys=True) for m in meta.values()}
              - {json.dumps(here, sort_keys=True)})
    if others:
        print(f"note: some cached models were trained under {', '.join(sorted(others))}; this is {here}")
