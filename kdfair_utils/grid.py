"""The experiment grid: a teacher population, an NDS population and a DS population per T.

Every model is cached on its own under ``<runs_dir>/models/<role>-<key>/``, where ``key`` hashes
everything that determines it (data config, architecture, recipe, seed; for a DS also its
teacher's key, T, α and the T² flag). So a grid that is called again loads; an interrupted grid
resumes; widening the temperature list trains only the new students; deleting one model's
folder retrains only that model. Files are written atomically and ``meta.json`` last, so a
folder without it is incomplete and is retrained. The device is not part of the key.

Teacher pairing (the paper does not say): with ``"same_seed"`` the i-th student seed (its
position in ``seeds``) distils from ``teacher_seeds[i mod len(teacher_seeds)]`` — so with seeds
0..4 and teachers 0..4, seed k distils from teacher k; ``"first"`` uses the first teacher for
every DS. :func:`paired_teacher` is the one place this rule lives.

The named experiments of each profile (the main grid, the 100-class class-bias grid) are in
:mod:`kdfair_utils.experiments`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .cache import atomic_write, config_key, load_json, load_npz, save_json, save_npz
from .class_bias import per_class_accuracy
from .datasets import DATASETS, TRIFEATURE_LABELS, Dataset, dataset_config, load_dataset
from .distill import KDLoss, check_kd_args
from .models import check_image_size, check_model_name
from .paths import default_runs_dir
from .results import Population
from .train import TrainConfig

PAIRINGS = ("same_seed", "first")


@dataclass(frozen=True)
class GridConfig:
    """Everything that defines a grid (one experiment). :mod:`kdfair_utils.experiments` names
    the grids of each profile; :meth:`replace` takes the dotted override vocabulary."""

    dataset: str = "trifeature"
    label: str = "shape"
    data_options: dict[str, Any] = field(default_factory=lambda: {"image_size": 32, "per_combination": 5,
                                                                  "test_fraction": 0.4})
    teacher: str = "resnet20"
    student: str = "lenet5"
    teacher_train: TrainConfig = TrainConfig(epochs=10, lr=0.05)
    student_train: TrainConfig = TrainConfig(epochs=30, lr=0.01, warmup_epochs=2, grad_clip=20.0)
    teacher_seeds: tuple[int, ...] = (0, 1)
    seeds: tuple[int, ...] = (0, 1, 2)
    temperatures: tuple[float, ...] = (1, 2, 4, 6, 8, 10, 20, 40)
    alpha: float = 0.8
    t2_scaling: bool = True
    teacher_pairing: str = "same_seed"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field before anything is trained or written."""
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; known: {', '.join(DATASETS)}")
        if self.dataset == "trifeature" and self.label not in TRIFEATURE_LABELS:
            raise ValueError(f"unknown label {self.label!r} for trifeature; known: {', '.join(TRIFEATURE_LABELS)}")
        check_model_name(self.teacher)
        check_model_name(self.student)
        size = int(self.data_options.get("image_size", 32))
        check_image_size(self.teacher, size)
        check_image_size(self.student, size)
        self.teacher_train.validate()
        self.student_train.validate()
        for name in ("teacher_seeds", "seeds", "temperatures"):
            if len(getattr(self, name)) == 0:
                raise ValueError(f"{name} must not be empty")
        for name in ("teacher_seeds", "seeds"):
            values = getattr(self, name)
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise ValueError(f"{name} must be integers, got {values}")
        for name in ("teacher_seeds", "seeds", "temperatures"):
            values = getattr(self, name)
            if len({float(v) for v in values}) != len(values):
                raise ValueError(f"{name} has duplicates: {values}")
        for t in self.temperatures:
            check_kd_args(t, self.alpha)
        check_kd_args(1.0, self.alpha)
        if self.teacher_pairing not in PAIRINGS:
            raise ValueError(f"unknown teacher_pairing {self.teacher_pairing!r}; known: {', '.join(PAIRINGS)}")

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
            if sub and head in ("teacher_train", "student_train"):
                recipe = direct.get(head, getattr(self, head))
                if sub not in recipe.__dataclass_fields__:
                    raise ValueError(f"unknown {head} field {sub!r}; known: {', '.join(recipe.__dataclass_fields__)}")
                direct[head] = dataclasses.replace(recipe, **{sub: value})
            elif sub and head == "data_options":
                direct[head] = {**direct.get(head, self.data_options), sub: value}
            elif sub:
                raise ValueError(f"grid field {head!r} has no sub-fields")
            else:
                if head in ("teacher_seeds", "seeds", "temperatures"):
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


def model_specs(cfg: GridConfig, data_config: dict[str, Any] | None = None) -> list[ModelSpec]:
    """Teachers first (DS need them), then NDS, then DS by temperature and seed.

    ``data_config`` defaults to :func:`~kdfair_utils.datasets.dataset_config` of the grid's data.
    """
    data_config = data_config if data_config is not None else dataset_config(cfg.dataset, cfg.label, **cfg.data_options)
    teachers = [ModelSpec("teacher", cfg.teacher, seed, None,
                          config_key({"role": "teacher", "arch": cfg.teacher, "data": data_config,
                                      "train": cfg.teacher_train.to_dict(), "seed": seed}))
                for seed in cfg.teacher_seeds]
    specs = list(teachers)
    for seed in cfg.seeds:
        key = config_key({"role": "nds", "arch": cfg.student, "data": data_config,
                          "train": cfg.student_train.to_dict(), "seed": seed})
        specs.append(ModelSpec("nds", cfg.student, seed, None, key))
    for t in cfg.temperatures:
        for i, seed in enumerate(cfg.seeds):
            teacher = teachers[paired_teacher(cfg, i)]
            key = config_key({"role": "ds", "arch": cfg.student, "data": data_config,
                              "train": cfg.student_train.to_dict(), "seed": seed, "teacher": teacher.key,
                              "T": float(t), "alpha": float(cfg.alpha), "t2": cfg.t2_scaling})
            specs.append(ModelSpec("ds", cfg.student, seed, float(t), key, teacher.key, teacher.seed))
    return specs


# ----------------------------------------------------------------------------- results
@dataclass
class GridResult:
    """Cached logits of every model of a grid; populations are selected by :class:`Population`.

    ``trained`` and ``loaded`` say which models this call trained and which it found cached.
    """

    config: GridConfig
    dataset: Dataset
    specs: list[ModelSpec]
    runs_dir: Path
    meta: dict[str, dict[str, Any]]
    trained: list[ModelSpec] = field(default_factory=list)
    loaded: list[ModelSpec] = field(default_factory=list)
    _logits: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    _tables: dict[Any, Any] = field(default_factory=dict, repr=False)

    def _model_logits(self, spec: ModelSpec) -> dict[str, np.ndarray]:
        """All eval splits' logits of one model, read from disk once."""
        if spec.key not in self._logits:
            self._logits[spec.key] = load_npz(self.runs_dir / "models" / spec.dirname / "logits.npz")
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
              output_distance: str = "tv", input_distance: str = "l2"):
        """Every model as one tidy row (pandas): ``key, role, arch, T, seed, teacher_seed, split``
        and its metrics on ``split``:

        * ``accuracy`` (%);
        * per protected attribute a in ``attributes``: ``dpd_<a>``, ``eod_<a>`` (%, the paper's
          Algorithm 1: one-vs-rest per class, macro-averaged; fairlearn's between-groups, worst case);
        * per twin attribute a in ``twin_attributes``: ``lipschitz_<a>`` (mean D/d over each test
          image and its counterfactual twin with a changed) and ``flip_rate_<a>`` (%).

        ``T``, ``teacher_seed`` are NaN where they do not apply. Computed once per argument set.
        """
        import pandas as pd

        from .group_fairness import multiclass_fairness
        from .individual_fairness import flip_rate, lipschitz_ratio, softmax
        from .results import metric_column

        key = (split, tuple(attributes), tuple(twin_attributes), output_distance, input_distance)
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
        x = evaluated.images / 255.0
        # the twins in [0, 1], scaled once rather than once per population
        x_twins = {a: data.eval_splits()[name].images / 255.0 for a, name in twin_splits.items()}
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
                for metric in ("dpd", "eod"):
                    cols[metric_column(metric, a)] = 100 * np.atleast_1d(multiclass_fairness(
                        y, preds, sensitive_features=groups, metric=metric, n_classes=data.num_classes))
            if twin_attributes:
                probs = softmax(logits)
            for a, name in twin_splits.items():
                twin_logits = self.logits(pop, name)
                cols[metric_column("lipschitz", a)] = np.atleast_1d(lipschitz_ratio(
                    probs, softmax(twin_logits), x, x_twins[a], output=output_distance, input=input_distance))
                cols[metric_column("flip_rate", a)] = 100 * np.atleast_1d(flip_rate(preds, twin_logits.argmax(-1)))
            blocks.append(pd.DataFrame(cols))
        table = pd.concat(blocks, ignore_index=True)
        table.attrs = {"task": self.config.label, "split": split,
                       "definitions": {"accuracy": "top-1 accuracy (%)",
                                       "dpd": "Algorithm 1 (one-vs-rest per class, macro average) of fairlearn's "
                                              "demographic parity difference, between groups (%)",
                                       "eod": "Algorithm 1 of fairlearn's equalized odds difference, between groups, "
                                              "worst case (%)",
                                       "lipschitz": f"mean D/d over counterfactual twins; D = {output_distance} on "
                                                    f"softmax outputs, d = {input_distance} on pixels in [0, 1]",
                                       "flip_rate": "share of counterfactual twins whose predicted class changes (%)"}}
        self._tables[key] = table
        return table


def _train_one(spec: ModelSpec, cfg: GridConfig, data: Dataset, folder: Path, device: str, progress: bool,
               teacher_folder: Path | None) -> dict[str, Any]:
    import torch

    from .models import build_model
    from .train import predict_logits, seed_everything, train_model, with_normalization

    size = data.image_shape[1]
    seed_everything(spec.seed)  # the initial weights depend on the seed alone, not on what ran before
    net = build_model(spec.arch, data.num_classes, in_channels=data.image_shape[0], image_size=size)
    model = with_normalization(net, data.train.images)
    recipe = cfg.teacher_train if spec.role == "teacher" else cfg.student_train
    kwargs: dict[str, Any] = {}
    if spec.role == "ds":
        assert teacher_folder is not None and spec.temperature is not None
        kwargs["kd"] = KDLoss(spec.temperature, cfg.alpha, cfg.t2_scaling)
        if recipe.augment == "none":
            kwargs["teacher_logits"] = load_npz(teacher_folder / "train_logits.npz")["train"]
        else:
            teacher = with_normalization(build_model(cfg.teacher, data.num_classes, in_channels=data.image_shape[0],
                                                     image_size=size), data.train.images)
            teacher.load_state_dict(torch.load(teacher_folder / "model.pt", map_location="cpu", weights_only=True))
            kwargs["teacher"] = teacher
    start = time.perf_counter()
    history = train_model(model, data.train.images, data.train.labels, recipe, seed=spec.seed, device=device,
                          progress=progress, desc=spec.name, **kwargs)
    seconds = time.perf_counter() - start
    logits = {name: predict_logits(model, split.images, device=device) for name, split in data.eval_splits().items()}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(folder / "model.pt", lambda tmp: torch.save(state, tmp))
    if spec.role == "teacher":
        save_npz(folder / "train_logits.npz", train=predict_logits(model, data.train.images, device=device))
    save_npz(folder / "logits.npz", **logits)
    class_acc, overall = per_class_accuracy(data.test.labels, logits["test"].argmax(1)[None], data.num_classes)
    meta = {"spec": dataclasses.asdict(spec), "train_seconds": seconds, "loss": history["loss"],
            "test_accuracy": float(overall[0]), "test_class_accuracy": class_acc[0].tolist(),
            "device": str(device), "recipe": recipe.to_dict()}
    save_json(folder / "meta.json", meta)
    return meta


def run_grid(cfg: GridConfig, *, runs_dir: str | Path | None = None, data_dir: str | Path | None = None,
             device: str = "auto", progress: bool = True) -> GridResult:
    """Train (or load) every model of the grid; returns a :class:`GridResult`.

    Only models whose folder lacks ``meta.json`` are trained; ``result.trained`` and
    ``result.loaded`` list which, and with ``progress`` a line says so (``grid shape: 49 models
    — loaded 45 from runs/models, trained 4``). Validation happens first, so a bad config raises
    ``ValueError`` before anything is trained or written.
    """
    from tqdm.auto import tqdm

    cfg.validate()
    runs = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    data = load_dataset(cfg.dataset, cfg.label, data_dir=data_dir, **cfg.data_options)
    specs = model_specs(cfg, data.config)
    folders = {s.key: runs / "models" / s.dirname for s in specs}
    todo = [s for s in specs if not (folders[s.key] / "meta.json").exists()]
    loaded = [s for s in specs if s not in todo]
    if todo:
        from .train import resolve_device

        device = str(resolve_device(device))
    meta: dict[str, dict[str, Any]] = {}
    bar = tqdm(todo, desc=f"grid {cfg.label}: loaded {len(loaded)}, training {len(todo)}",
               disable=not progress or not todo)
    for spec in bar:
        bar.set_postfix_str(spec.name)
        meta[spec.key] = _train_one(spec, cfg, data, folders[spec.key], device, progress,
                                    folders.get(spec.teacher_key) if spec.teacher_key else None)
    bar.close()
    for spec in loaded:
        meta[spec.key] = load_json(folders[spec.key] / "meta.json")
    if progress:
        print(f"grid {cfg.label}: {len(specs)} models — loaded {len(loaded)} from {runs / 'models'}, "
              f"trained {len(todo)}")
    result = GridResult(cfg, data, specs, runs, meta, trained=todo, loaded=loaded)
    grid_key = config_key({"grid": cfg.to_dict(), "data": data.config})
    summary_path = runs / "grids" / f"{cfg.label}-{grid_key}.json"
    if todo or not summary_path.exists():
        save_json(summary_path, {"config": cfg.to_dict(), "data": data.config,
                                 "models": [dataclasses.asdict(s) for s in specs]})
    return result
