"""Profiles: every experiment the notebook series runs, named, with one override vocabulary.

A :class:`Profile` holds two grids and the analysis settings:

* ``main`` — teacher, NDS and DS on Trifeature *shape* (10 classes); notebooks 02, 04, 05, 06
  and the 10-class part of 03 use it;
* ``class_bias`` — the same architectures on the 100-class *shape × colour* label, with its own
  teacher recipe and the paper's class-bias window of temperatures (T = 2..10); notebook 03;
* ``analysis`` — significance level, class-accuracy normalisation, permutation-null size,
  protected attributes and the distances of the individual-fairness ratio.

**Overrides** are dotted field names, the same for ``kdfair grid --set``, ``kdfair run --set``
and the notebooks' ``OVERRIDES`` parameter (papermill ``-y "OVERRIDES: {...}"``):

* ``main.<field>`` or ``class_bias.<field>`` changes one grid (``class_bias.teacher_train.epochs``);
* a bare grid field changes every grid (``seeds``, ``student_train.epochs``,
  ``data_options.image_size``); bare ``temperatures`` are kept, per grid, where they lie in its
  window (the class-bias grid: the paper's T = 2..10); an experiment-prefixed value wins over a
  bare one; ``dataset``, ``label`` and ``teacher_train.*`` differ per experiment by design and
  are refused bare;
* ``analysis.<field>`` changes an analysis setting (``analysis.significance``).

Unknown names are refused with the list of known ones, before anything runs.

Choices the paper leaves open (its Appendix C was not retrievable) are ours, measured on
Trifeature shape with the quick profile:

* teachers: SGD (Nesterov momentum 0.9, weight decay 5e-4 on weights), lr 0.05, cosine decay —
  the RepDistiller CIFAR recipe, shorter; the ResNet-20 teacher reaches ~100 % on shape;
* students (NDS and DS alike): lr 0.01 with 2 warm-up epochs, cosine decay and a gradient-norm
  cap of 20 (high-T distillation diverges without it), chosen so that the LeNet-5 NDS stays well
  below the teacher and distillation can help (NDS about 84 %, the paper's 90 %): with lr 0.05
  and more epochs both students reach ~98–99 % and distillation no longer helps;
* the 100-class teacher needs more optimisation steps than the 10-class one: twice the epochs,
  in batches of 64 (4× the steps);
* ``quick`` fits ``make reproduce`` in about 10 minutes on 2 CPU cores: 3,000 training and
  20,000 test images (200 per shape × colour cell, so per class of the 100-class label), 2
  teachers and 5 student seeds (252 seed relabellings: the permutation null can reach p ≈ 0.008;
  the 5 students share the 2 teachers, which the report's cluster bootstrap accounts for);
* ``classroom`` (course mode, ``course/``) is ``quick`` at T = 1, 2, 4, 10, 40 (class bias: 2, 4,
  10): 54 of quick's 79 models, the same cache entries, so ``make reproduce`` or ``make
  classroom`` prepares a class's models once; the longest training step, the two 100-class
  teachers packed together, takes 2 minutes on 2 CPU cores;
* ``paper`` has the paper's design — 5 teachers, 5 student seeds, T = 1..10 and 20, 30, 40 for
  fairness, T = 2..10 for class bias — at Trifeature scale, with longer schedules; it is for a GPU.

The paper's image experiments on real data (:data:`REAL_DATA_PROFILES`): ``cifar100`` (ResNet-56 → ResNet-20),
``tinyimagenet`` and ``imagenet`` (ResNet-50 → ResNet-18 at 64 px) — class bias over T = 2..10,
one grid serving both experiments — and ``celeba`` (ResNet-50 → ResNet-18, label *smiling*,
attributes *young* and *male*, T = 1..10, 20, 30, 40), which has no class-bias experiment
(``Profile.class_bias`` is None: a binary task). Their recipes are ours (see below). Without
counterfactual twins, individual fairness pairs ``analysis.neighbour_pairs`` test images with
their nearest neighbours.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .cache import config_key
from .grid import GridConfig
from .class_bias import NORMALIZATIONS
from .individual_fairness import INPUT_DISTANCES, NEIGHBOURS, OUTPUT_DISTANCES
from .paper import CLASS_BIAS_WINDOW
from .results import in_window
from .validation import SEED_RANGE, check_choice, check_int, check_significance
from .datasets import TWIN_ATTRIBUTES, dataset_attributes
from .distill import TEMPERATURE_RANGE
from .train import TrainConfig

EXPERIMENTS = ("main", "class_bias")
# Fields each experiment sets for itself: a bare override of these is refused.
PER_EXPERIMENT = ("dataset", "label", "teacher_train")
_ANALYSIS_TUPLES = ("attributes", "twin_attributes")


@dataclass(frozen=True)
class AnalysisConfig:
    """How the notebooks analyse the grids (nothing here changes a trained model)."""

    significance: float = 0.05                        # per-class Welch test level (the paper's, presumably)
    normalization: str = "ratio"                      # class accuracy / overall accuracy (the paper), or difference
    null_splits: int = 300                            # relabellings for the permutation null (all if fewer exist)
    attributes: tuple[str, ...] = ("color", "texture")       # protected attributes for DPD/EOD
    twin_attributes: tuple[str, ...] = ("color", "texture")  # counterfactual twins for the Lipschitz ratio
    output_distance: str = "tv"                       # D between probability vectors: tv, l1, l2
    input_distance: str = "l2"                        # d between images: l2 (RMS pixels) or cosine
    reference_draws: int = 200                        # shuffles of the zero-disparity reference of DPD/EOD
    permutations: int = 1000                          # within-seed orderings of the trend tests over T
    bootstrap_draws: int = 200                        # seed resamples behind each verdict's support
    inference_seed: int = 0                           # seeds the shuffles, orderings and resamples
    neighbour_pairs: int = 0                          # test images paired with their nearest neighbour (0: none)

    def validate(self) -> None:
        check_significance(self.significance, "analysis.significance")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"analysis.normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        check_int(self.null_splits, "analysis.null_splits", minimum=1)
        check_int(self.reference_draws, "analysis.reference_draws", minimum=2)
        check_int(self.permutations, "analysis.permutations", minimum=1)
        check_int(self.bootstrap_draws, "analysis.bootstrap_draws", minimum=1)
        check_int(self.inference_seed, "analysis.inference_seed", minimum=SEED_RANGE[0], maximum=SEED_RANGE[1])
        check_int(self.neighbour_pairs, "analysis.neighbour_pairs", minimum=0)
        if self.output_distance not in OUTPUT_DISTANCES:
            raise ValueError(f"analysis.output_distance must be one of {OUTPUT_DISTANCES}, "
                             f"got {self.output_distance!r}")
        if self.input_distance not in INPUT_DISTANCES:
            raise ValueError(f"analysis.input_distance must be one of {INPUT_DISTANCES}, got {self.input_distance!r}")
        for name in _ANALYSIS_TUPLES:
            values = getattr(self, name)
            if (not isinstance(values, tuple) or not all(isinstance(v, str) for v in values)
                    or len(set(values)) != len(values)):
                raise ValueError(f"analysis.{name} must be distinct attribute names (none: no group fairness, "
                                 f"resp. no counterfactual pairs), got {values!r}")

    @property
    def pair_kinds(self) -> tuple[str, ...]:
        """The pairs of the individual-fairness metrics: each twin attribute, and ``nn`` (nearest
        neighbours, :data:`~kdfair_utils.individual_fairness.NEIGHBOURS`) when ``neighbour_pairs`` > 0."""
        return self.twin_attributes + ((NEIGHBOURS,) if self.neighbour_pairs else ())

    def table_options(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`~kdfair_utils.grid.GridResult.table` these settings imply."""
        return {"attributes": self.attributes, "twin_attributes": self.twin_attributes,
                "output_distance": self.output_distance, "input_distance": self.input_distance,
                "reference_draws": self.reference_draws, "reference_seed": self.inference_seed,
                "neighbour_pairs": self.neighbour_pairs}


@dataclass(frozen=True)
class Profile:
    """Every experiment of the series, named; see the module docstring for the vocabulary."""

    name: str
    main: GridConfig
    class_bias: GridConfig | None  # None: the profile has no separate class-bias task (CelebA)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    @property
    def experiments(self) -> tuple[str, ...]:
        """The experiments this profile has, in :data:`EXPERIMENTS` order."""
        return tuple(name for name in EXPERIMENTS if getattr(self, name) is not None)

    def experiment(self, name: str) -> GridConfig:
        if name not in EXPERIMENTS:
            raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
        if getattr(self, name) is None:
            raise ValueError(f"profile {self.name!r} has no {name} experiment; it has: {', '.join(self.experiments)}")
        return getattr(self, name)

    def validate(self) -> None:
        for name in self.experiments:
            try:
                self.experiment(name).validate()
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        self.analysis.validate()
        for name in ("attributes", "twin_attributes"):
            for experiment in self.experiments:
                grid = self.experiment(experiment)
                known = (dataset_attributes(grid.dataset, grid.data_options) if name == "attributes"
                         else TWIN_ATTRIBUTES.get(grid.dataset, ()))
                unknown = [a for a in getattr(self.analysis, name) if a not in known]
                if unknown:
                    raise ValueError(f"analysis.{name}: {grid.dataset} has no {', '.join(map(repr, unknown))}; "
                                     f"it has: {', '.join(known) or 'none'}")
        if self.main.dataset == "trifeature":
            for name in _ANALYSIS_TUPLES:
                if "color" not in getattr(self.analysis, name):
                    raise ValueError(f"analysis.{name} must include 'color': the paper's Trifeature tables and "
                                     f"claims use it (got {getattr(self.analysis, name)})")

    def replace(self, overrides: dict[str, Any] | None = None) -> Profile:
        """A copy with dotted ``overrides`` applied; see the module docstring for the rules."""
        if not overrides:
            return self
        if not isinstance(overrides, dict) or not all(isinstance(k, str) and k for k in overrides):
            raise ValueError(f"overrides must map dotted field names to values, got {overrides!r}")
        grids: dict[str, dict[str, Any]] = {name: {} for name in EXPERIMENTS}
        analysis: dict[str, Any] = {}
        bare: dict[str, Any] = {}
        for key, value in overrides.items():
            head, _, rest = key.partition(".")
            if head == "analysis":
                if rest not in AnalysisConfig.__dataclass_fields__:
                    raise ValueError(f"unknown override {key!r}; analysis fields: "
                                     f"{', '.join('analysis.' + f for f in AnalysisConfig.__dataclass_fields__)}")
                analysis[rest] = tuple(value) if isinstance(value, (list, tuple)) else (
                    (value,) if rest in _ANALYSIS_TUPLES else value)
            elif head in EXPERIMENTS:
                self.experiment(head)  # refused for an experiment this profile does not have
                _check_grid_key(rest, key)
                grids[head][rest] = value
            else:
                _check_grid_key(key, key)
                if head in PER_EXPERIMENT:
                    raise ValueError(f"{key!r} differs per experiment: set "
                                     f"{' or '.join(f'{name}.{key}' for name in EXPERIMENTS)}")
                bare[key] = value
        for key, value in bare.items():  # an experiment-prefixed value wins over a bare one
            for name in self.experiments:
                if key not in grids[name]:
                    grids[name][key] = _within_window(name, value) if key == "temperatures" else value
        changed = {name: self.experiment(name).replace(**grids[name]) if name in self.experiments else None
                   for name in EXPERIMENTS}
        return dataclasses.replace(self, **changed, analysis=dataclasses.replace(self.analysis, **analysis))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def key(self) -> str:
        """Hash of the whole resolved profile: results of different profiles never mix."""
        return config_key(self.to_dict())

    @property
    def run_name(self) -> str:
        """The run folder's name: ``quick`` for the profile as defined, ``quick+<hash>`` when
        overrides change it (equivalent overrides give the same folder)."""
        default = PROFILES.get(self.name)
        return self.name if default is not None and default.key == self.key else f"{self.name}+{self.key[:8]}"


def _check_grid_key(key: str, shown: str) -> None:
    head, _, sub = key.partition(".")
    fields = GridConfig.__dataclass_fields__
    if head not in fields:
        raise ValueError(f"unknown override {shown!r}; known: {', '.join(known_overrides())}")
    if sub and head in ("teacher_train", "student_train") and sub not in TrainConfig.__dataclass_fields__:
        raise ValueError(f"unknown override {shown!r}; {head} fields: "
                         f"{', '.join(f'{head}.{f}' for f in TrainConfig.__dataclass_fields__)}")
    if sub and head not in ("teacher_train", "student_train", "data_options"):
        raise ValueError(f"unknown override {shown!r}: grid field {head!r} has no sub-fields")


def known_overrides() -> list[str]:
    """Every name the override vocabulary accepts (``data_options.*`` keys are dataset options)."""
    names: list[str] = []
    for f in GridConfig.__dataclass_fields__:
        if f in ("teacher_train", "student_train"):
            names += [f"{f}.{sub}" for sub in TrainConfig.__dataclass_fields__]
        elif f == "data_options":
            names.append("data_options.<option>")
        else:
            names.append(f)
    names += [f"<experiment>.<field> (experiments: {', '.join(EXPERIMENTS)})"]
    names += [f"analysis.{f}" for f in AnalysisConfig.__dataclass_fields__]
    return names


# Temperatures given to every grid at once are kept only where they lie in the grid's window.
WINDOWS: dict[str, tuple[float, float] | None] = {"main": None, "class_bias": CLASS_BIAS_WINDOW}


def _within_window(experiment: str, temperatures: Any) -> tuple:
    values = tuple(temperatures) if isinstance(temperatures, (list, tuple)) else (temperatures,)
    window = WINDOWS[experiment]
    kept = tuple(t for t in values if isinstance(t, bool) or not isinstance(t, (int, float))
                 or not TEMPERATURE_RANGE[0] <= t <= TEMPERATURE_RANGE[1] or in_window(float(t), window))
    if not kept:
        raise ValueError(f"none of the temperatures {list(values)} lies in the {experiment} window "
                         f"{window[0]:g}..{window[1]:g}; set {experiment}.temperatures as well (or set "
                         f"{', '.join(f'{n}.temperatures' for n in EXPERIMENTS if n != experiment)} instead)")
    return kept


def _class_bias_grid(main: GridConfig, teacher_train: TrainConfig) -> GridConfig:
    """The 100-class grid: ``main``'s students and seeds on shape × colour, its own teacher
    recipe, and ``main``'s temperatures that lie in the paper's class-bias window."""
    return main.replace(label="shape_color", teacher_train=teacher_train,
                        temperatures=_within_window("class_bias", main.temperatures))


_QUICK = GridConfig()
_QUICK_CLASS_TEACHER = TrainConfig(epochs=20, lr=0.05, batch_size=64)
# Course mode: the quick recipes, data and seeds at five temperatures (the class-bias grid keeps 2, 4 and 10),
# so every classroom model is one of quick's (the same cache keys: `make reproduce` prepares it too).
_CLASSROOM = dataclasses.replace(_QUICK, temperatures=(1, 2, 4, 10, 40))
_PAPER = GridConfig(
    data_options={"image_size": 32, "per_combination": 10, "test_fraction": 0.2},
    teacher_train=TrainConfig(epochs=30, lr=0.05),
    student_train=TrainConfig(epochs=60, lr=0.01, warmup_epochs=2, grad_clip=20.0),
    teacher_seeds=(0, 1, 2, 3, 4), seeds=(0, 1, 2, 3, 4),
    temperatures=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30, 40),
)
# The paper's image experiments on real data. The architectures, temperatures and seed counts are
# the paper's; the recipes are ours (its Appendix C was not retrievable): SGD with Nesterov
# momentum 0.9 and weight decay 5e-4, random flips and translations, the same recipe for teacher,
# NDS and DS, and the gradient-norm cap that high-T distillation needs. CIFAR-100 follows the
# RepDistiller recipe (240 epochs, lr 0.05, batch 64) with our step schedule (÷10 at 50 % and 75 %
# of training; RepDistiller decays at epochs 150, 180 and 210).
_T_CLASS_BIAS = (2, 3, 4, 5, 6, 7, 8, 9, 10)  # Table 1
_T_FAIRNESS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30, 40)  # Fig. 4-5, Table 2
_FIVE = (0, 1, 2, 3, 4)


def _real(dataset: str, teacher: str, student: str, recipe: TrainConfig, temperatures: tuple,
          **fields: Any) -> GridConfig:
    student_recipe = dataclasses.replace(recipe, grad_clip=20.0)
    return GridConfig(dataset=dataset, teacher=teacher, student=student, teacher_train=recipe,
                      student_train=student_recipe, teacher_seeds=_FIVE, seeds=_FIVE, temperatures=temperatures,
                      **fields)


_CIFAR100 = _real("cifar100", "resnet56", "resnet20",
                  TrainConfig(epochs=240, batch_size=64, lr=0.05, schedule="step", augment="flip_translate"),
                  _T_CLASS_BIAS, label="class", data_options={})
_TINY = _real("tinyimagenet", "resnet50", "resnet18",
              TrainConfig(epochs=90, batch_size=128, lr=0.1, schedule="step", augment="flip_translate"),
              _T_CLASS_BIAS, label="class", data_options={"image_size": 64})
_IMAGENET = _real("imagenet", "resnet50", "resnet18",
                  TrainConfig(epochs=40, batch_size=256, lr=0.1, schedule="cosine", warmup_epochs=2,
                              augment="flip_translate"),
                  _T_CLASS_BIAS, label="class", data_options={"image_size": 64})
_CELEBA = _real("celeba", "resnet50", "resnet18",
                TrainConfig(epochs=20, batch_size=128, lr=0.05, schedule="cosine", augment="flip_translate"),
                _T_FAIRNESS, label="smiling",
                data_options={"image_size": 64, "attributes": ("young", "male"), "undersample": True, "seed": 0})
# No counterfactual twins on real data: individual fairness pairs 1,000 seeded test images with
# their nearest neighbour in pixel space (the paper does not say which pairs it used).
_NO_TWINS = AnalysisConfig(attributes=(), twin_attributes=(), neighbour_pairs=1000)

# HateXplain (Fig. 5): BERT-Base -> DistilBERT, toxic vs non-toxic, gender and race. Our recipe is the
# usual BERT fine-tuning one (AdamW, lr 2e-5, 3 epochs, batch 32, warm-up then cosine decay,
# gradient norm capped at 1), the same for teacher, NDS and DS. hatexplain_tiny is the offline,
# CPU-sized version: small random BERT/DistilBERT and a WordPiece vocabulary built on the posts.
_BERT_RECIPE = TrainConfig(epochs=3, batch_size=32, optimizer="adamw", lr=2e-5, weight_decay=0.01,
                           warmup_epochs=0.3, grad_clip=1.0)
_HATEXPLAIN = GridConfig(dataset="hatexplain", label="toxic",
                         data_options={"tokenizer": "bert-base-uncased", "max_length": 128},
                         teacher="bert-base-uncased", student="distilbert-base-uncased", teacher_train=_BERT_RECIPE,
                         student_train=_BERT_RECIPE, teacher_seeds=_FIVE, seeds=_FIVE, temperatures=_T_FAIRNESS)
_TINY_RECIPE = TrainConfig(epochs=4, batch_size=64, optimizer="adamw", lr=1e-3, weight_decay=0.01,
                           warmup_epochs=0.25, grad_clip=5.0)
_HATEXPLAIN_TINY = GridConfig(dataset="hatexplain", label="toxic",
                              data_options={"tokenizer": "wordpiece", "vocab_size": 8000, "max_length": 64},
                              teacher="bert-tiny", student="distilbert-tiny", teacher_train=_TINY_RECIPE,
                              student_train=_TINY_RECIPE, teacher_seeds=(0, 1), seeds=(0, 1, 2),
                              temperatures=(1, 2, 4, 10, 20, 40))
_TEXT_ANALYSIS = AnalysisConfig(attributes=("gender", "race"), twin_attributes=())

PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", _QUICK, _class_bias_grid(_QUICK, _QUICK_CLASS_TEACHER)),
    "classroom": Profile("classroom", _CLASSROOM, _class_bias_grid(_CLASSROOM, _QUICK_CLASS_TEACHER)),
    "paper": Profile("paper", _PAPER, _class_bias_grid(_PAPER, TrainConfig(epochs=60, lr=0.05, batch_size=64)),
                     AnalysisConfig(null_splits=1000)),
    # class bias (Table 1): one grid serves both experiments (the same keys, trained once)
    "cifar100": Profile("cifar100", _CIFAR100, _CIFAR100, _NO_TWINS),
    "tinyimagenet": Profile("tinyimagenet", _TINY, _TINY, _NO_TWINS),
    "imagenet": Profile("imagenet", _IMAGENET, _IMAGENET, _NO_TWINS),
    # group fairness (Fig. 4-5, Table 2): a binary task, so no class-bias experiment
    "celeba": Profile("celeba", _CELEBA, None, dataclasses.replace(_NO_TWINS, attributes=("young", "male"))),
    # text (Fig. 5): a binary task with gender and race groups
    "hatexplain": Profile("hatexplain", _HATEXPLAIN, None, _TEXT_ANALYSIS),
    "hatexplain_tiny": Profile("hatexplain_tiny", _HATEXPLAIN_TINY, None, _TEXT_ANALYSIS),
}
# Profiles whose lessons load a complete set of models trained on another machine (other thread count, precision
# or engine) instead of retraining: course mode, where an instructor prepares the cache once (kdfair_utils.lesson).
PREPARED_CACHE_PROFILES = ("classroom",)
REAL_DATA_PROFILES = tuple(name for name, p in PROFILES.items() if p.main.dataset != "trifeature")


def get_profile(name: str, overrides: dict[str, Any] | None = None) -> Profile:
    """A named profile with dotted ``overrides`` applied and validated (``ValueError`` names the bad field)."""
    check_choice(name, "profile", tuple(PROFILES))
    profile = PROFILES[name].replace(overrides)
    profile.validate()
    return profile
