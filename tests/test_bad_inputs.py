"""Every bad input is a ValueError (or a one-line CLI error) naming the argument, raised before
anything is generated, trained or written.

Each case runs with its runs and data folders inside ``tmp_path``; afterwards ``tmp_path``
must hold exactly what it held before (nothing created, nothing changed).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from kdfair_utils import cli
from kdfair_utils.class_bias import null_calibration
from kdfair_utils.class_bias_controls import accuracy_matched, chance_test
from kdfair_utils.distill import KDLoss, distillation_term, kd_loss, soft_targets
from kdfair_utils.experiments import get_profile
from kdfair_utils.grid import run_grid
from kdfair_utils.group_fairness import demographic_parity_difference, multiclass_fairness, zero_disparity_reference
from kdfair_utils.individual_fairness import knn_pairs, lipschitz_ratio, softmax
from kdfair_utils.inference import blocked_slope, paired_comparison
from kdfair_utils.lesson import setup
from kdfair_utils.models import build_model
from kdfair_utils.runner import run_series
from kdfair_utils.validation import check_significance
from kdfair_utils.train import TrainConfig, train_model

# a valid tiny profile every override case starts from
BASE = {"seeds": [0], "teacher_seeds": [0], "main.temperatures": [2], "class_bias.temperatures": [2],
        "teacher": "resnet8", "main.teacher_train.epochs": 1, "class_bias.teacher_train.epochs": 1,
        "student_train.epochs": 1, "data_options.image_size": 16, "data_options.per_combination": 1,
        "data_options.test_per_combination": 0, "data_options.twins_per_combination": 0}

# (overrides on top of BASE, what the message must say)
OVERRIDES = [
    ({"seeds": [0.5]}, r"seeds\[0\] must be an integer, got 0.5"),
    ({"seeds": ""}, r"seeds\[0\] must be an integer, got ''"),
    ({"seeds": [-1]}, r"seeds\[0\] must be >= 0"),
    ({"seeds": [2**40]}, r"seeds\[0\] must be <= 2147483647"),
    ({"seeds": [True]}, r"seeds\[0\] must be an integer, got True"),
    ({"seeds": [1, 1]}, "seeds has duplicates: 1 and 1"),
    ({"teacher_seeds": []}, "teacher_seeds must be a non-empty list"),
    ({"teacher_seeds": ["0"]}, r"teacher_seeds\[0\] must be an integer"),
    ({"main.temperatures": [2, 2]}, "temperatures has duplicates"),
    ({"main.temperatures": [2, 2.0000001]}, r"temperatures has duplicates: 2 and 2.0000001 \(both shown as DS@T=2\)"),
    ({"main.temperatures": ["abc"]}, r"temperatures\[0\] must be a number, got 'abc'"),
    ({"main.temperatures": [float("inf")]}, r"temperatures\[0\] must be finite"),
    ({"main.temperatures": [float("nan")]}, r"temperatures\[0\] must be finite"),
    ({"main.temperatures": [0]}, r"temperatures\[0\] must be >= 0.01"),
    ({"main.temperatures": [-1]}, r"temperatures\[0\] must be >= 0.01"),
    ({"main.temperatures": [1e200]}, r"temperatures\[0\] must be <= 1000"),
    ({"main.temperatures": [1e-320]}, r"temperatures\[0\] must be >= 0.01"),
    ({"alpha": 1.5}, "alpha must be <= 1"),
    ({"alpha": "0.5"}, "alpha must be a number, got '0.5'"),
    ({"alpha": True}, "alpha must be a number, got True"),
    ({"t2_scaling": "no"}, "t2_scaling must be True or False, got 'no'"),
    ({"student_train.lr": "abc"}, "student_train.lr must be a number, got 'abc'"),
    ({"student_train.lr": 0}, "student_train.lr must be > 0"),
    ({"student_train.lr": float("nan")}, "student_train.lr must be finite"),
    ({"student_train.epochs": 0}, "student_train.epochs must be >= 1"),
    ({"student_train.epochs": 2.5}, "student_train.epochs must be an integer"),
    ({"student_train.batch_size": 0}, "student_train.batch_size must be >= 1"),
    ({"student_train.momentum": 1.0}, "student_train.momentum must be < 1"),
    ({"student_train.weight_decay": -1}, "student_train.weight_decay must be >= 0"),
    ({"student_train.nesterov": "yes"}, "student_train.nesterov must be True or False"),
    ({"student_train.schedule": "linear"}, "student_train.schedule must be one of cosine, step, constant"),
    ({"student_train.optimizer": "adam"}, "student_train.optimizer must be one of sgd, adamw"),
    ({"student_train.augment": "mixup"}, "student_train.augment must be one of"),
    ({"student_train.grad_clip": 0}, "student_train.grad_clip must be > 0"),
    ({"student_train.warmup_epochs": -1}, "student_train.warmup_epochs must be >= 0"),
    ({"student_train.momentum": 0}, "student_train.nesterov needs student_train.momentum > 0"),
    ({"main.teacher_train.epochs": "10"}, "main: teacher_train.epochs must be an integer, got '10'"),
    ({"student_train": {"epochs": 0}}, "student_train.epochs must be >= 1"),
    ({"student_train": {"epoch": 3}}, "unknown field student_train.epoch"),
    ({"student_train": 5}, "student_train must be a TrainConfig"),
    ({"data_options": 5}, "data_options must be a dict"),
    ({"data_options.image_size": "abc"}, "data_options.image_size must be an integer, got 'abc'"),
    ({"data_options.image_size": 12}, "image_size 12 is too small for lenet5"),
    ({"data_options.test_fraction": 1e-6}, "data_options.test_fraction 1e-06 of 1000 images leaves 0 test"),
    ({"data_options.test_fraction": 0.9999}, "data_options.test_fraction 0.9999 of 1000 images leaves 1000 test "
                                             "and 0 training"),
    ({"data_options.test_fraction": "0.2"}, "data_options.test_fraction must be a number"),
    ({"data_options.per_combination": 0}, "data_options.per_combination must be >= 1"),
    ({"data_options.colour": 1}, "unknown option data_options.colour"),
    ({"main.dataset": "mnist"}, "dataset must be one of .* got 'mnist'"),
    ({"main.label": "size"}, "label must be one of .* got 'size'"),
    ({"main.label": None}, "label must be a label name such as 'shape', got None"),
    ({"teacher": "vgg"}, "teacher must be one of .* got 'vgg'"),
    ({"student": 5}, "student must be one of .* got 5"),
    ({"teacher_pairing": "random"}, "teacher_pairing must be one of same_seed, first"),
    ({"label": "shape"}, "'label' differs per experiment: set main.label or class_bias.label"),
    ({"epochs": 3}, "unknown override 'epochs'"),
    ({"main.seed": [1]}, "unknown override 'main.seed'"),
    ({"analysis.significance": 0}, "analysis.significance must be > 0, got 0"),
    ({"analysis.null_splits": 0}, "analysis.null_splits must be >= 1, got 0"),
    ({"analysis.null_splits": True}, "analysis.null_splits must be an integer, got True"),
    ({"analysis.attributes": ["size"]}, "analysis.attributes: trifeature has no 'size'"),
    ({"analysis.twin_attributes": ["shape"]}, "analysis.twin_attributes: trifeature has no 'shape'"),
    ({"analysis.normalization": "z"}, "analysis.normalization must be one of"),
    ({"analysis.output_distance": "kl"}, "analysis.output_distance must be one of"),
    ({"analysis.reference_draws": 1}, "analysis.reference_draws must be >= 2"),
    ({"analysis.permutations": 0}, "analysis.permutations must be >= 1"),
    ({"analysis.bootstrap_draws": 1.5}, "analysis.bootstrap_draws must be an integer"),
    ({"analysis.inference_seed": -1}, "analysis.inference_seed must be >= 0"),
]


def grid_with(overrides: dict[str, Any]) -> Callable[[Path, Path], Any]:
    return lambda runs, data: run_grid(get_profile("quick", {**BASE, **overrides}).main, runs_dir=runs, data_dir=data,
                                       device="cpu", progress=False)


def grid_args(**kwargs: Any) -> Callable[[Path, Path], Any]:
    def call(runs: Path, data: Path) -> Any:
        args = {"runs_dir": runs, "data_dir": data, "device": "cpu", "progress": False, **kwargs}
        args = {k: (v(runs, data) if callable(v) else v) for k, v in args.items()}
        return run_grid(args.pop("cfg", get_profile("quick", BASE).main), **args)
    return call


def a_file(runs: Path, data: Path) -> Path:
    """A file where a folder belongs (made before the snapshot; see :func:`check_nothing_written`)."""
    return runs.parent / "a-file"


LOGITS = torch.randn(4, 10)
TARGETS = torch.tensor([0, 1, 2, 3])
NAN = LOGITS.clone().index_put_((torch.tensor([0]), torch.tensor([0])), torch.tensor(float("nan")))
INF = LOGITS.clone().index_put_((torch.tensor([1]), torch.tensor([2])), torch.tensor(float("inf")))
IMAGES = np.zeros((4, 3, 16, 16), dtype=np.uint8)
Y3 = np.array([0, 1, 2, 0, 1, 2])
GROUPS = np.array([0, 0, 0, 1, 1, 1])
PROBS = np.full((6, 3), 1 / 3)
X = np.random.default_rng(0).random((6, 8))


def setup_with(profile: Any = "quick", overrides: Any = None, device: Any = "cpu", **kwargs: Any):
    def call(runs: Path, data: Path) -> Any:
        folders = {"runs_dir": runs, "data_dir": data, "out_dir": runs / "out", **kwargs}
        folders = {k: (v(runs, data) if callable(v) else v) for k, v in folders.items()}
        return setup("01_setup_and_data", profile, BASE if overrides is None else overrides, device=device, **folders)
    return call


def series_with(profile: Any = "quick", overrides: Any = None, device: Any = "cpu", **kwargs: Any):
    def call(runs: Path, data: Path) -> Any:
        folders = {"runs_dir": runs, "data_dir": data, **kwargs}
        folders = {k: (v(runs, data) if callable(v) else v) for k, v in folders.items()}
        return run_series(profile, BASE if overrides is None else overrides, device=device, progress=False, **folders)
    return call


# (id, call(runs, data), what the message must say)
API = [
    *[(f"override {next(iter(o))}={o[next(iter(o))]!r}", grid_with(o), m) for o, m in OVERRIDES],
    ("bare temperatures=[2000]", lambda r, d: get_profile("quick", {"temperatures": [2000]}),
     r"main: temperatures\[0\] must be <= 1000"),  # the range, not "outside the class-bias window"
    ("run_grid device='bogus'", grid_args(device="bogus"), "device 'bogus' is not a device"),
    ("run_grid device='cuda:7'", grid_args(device="cuda:7"), "device 'cuda:7'"),
    ("run_grid device=3", grid_args(device=3), "device must be a string"),
    ("run_grid device='meta'", grid_args(device="meta"), "device 'meta': kdfair trains on cpu, cuda or mps"),
    ("run_grid runs_dir=<file>", grid_args(runs_dir=a_file), "runs_dir .*a-file.* is not a folder"),
    ("run_grid data_dir=<file>", grid_args(data_dir=a_file), "data_dir .*a-file.* is not a folder"),
    ("run_grid runs_dir=123", grid_args(runs_dir=123), "runs_dir must be a folder path, got 123"),
    ("run_grid cfg='quick'", grid_args(cfg="quick"), "cfg must be a GridConfig, got str"),
    ("kd_loss NaN student", lambda r, d: kd_loss(NAN, LOGITS, TARGETS, 4.0, 0.8), "student_logits contain NaN or inf"),
    ("kd_loss inf teacher", lambda r, d: kd_loss(LOGITS, INF, TARGETS, 4.0, 0.8), "teacher_logits contain NaN or inf"),
    ("kd_loss target -100", lambda r, d: kd_loss(LOGITS, LOGITS, torch.tensor([0, 1, 2, -100]), 4.0, 0.8),
     r"targets must lie in \[0, 10\), got values in \[-100, 2\]"),
    ("kd_loss target = classes", lambda r, d: kd_loss(LOGITS, LOGITS, torch.tensor([0, 1, 2, 10]), 4.0, 0.8),
     r"targets must lie in \[0, 10\)"),
    ("kd_loss float targets", lambda r, d: kd_loss(LOGITS, LOGITS, TARGETS.float(), 4.0, 0.8),
     "targets must be an integer tensor"),
    ("kd_loss unbatched logits", lambda r, d: kd_loss(LOGITS[0], LOGITS[0], TARGETS[:1], 4.0, 0.8),
     r"student_logits must be a floating tensor \[batch, classes\], got \(10,\)"),
    ("kd_loss shapes differ", lambda r, d: kd_loss(LOGITS, LOGITS[:, :5], TARGETS, 4.0, 0.8), "differ in shape"),
    ("kd_loss t2_scaling='no'", lambda r, d: kd_loss(LOGITS, LOGITS, TARGETS, 4.0, 0.8, t2_scaling="no"),
     "t2_scaling must be True or False"),
    ("kd_loss T=inf", lambda r, d: kd_loss(LOGITS, LOGITS, TARGETS, float("inf"), 0.8), "temperature must be finite"),
    ("kd_loss T=0", lambda r, d: kd_loss(LOGITS, LOGITS, TARGETS, 0, 0.8), "temperature must be >= 0.01"),
    ("kd_loss T=1e-40", lambda r, d: kd_loss(LOGITS, LOGITS, TARGETS, 1e-40, 0.8), "temperature must be >= 0.01"),
    ("kd_loss logits too large for T", lambda r, d: kd_loss(LOGITS * 1e37, LOGITS, TARGETS, 0.01, 0.8),
     "kd_loss is nan: logits too large for temperature 0.01"),
    ("kd_loss alpha=True", lambda r, d: kd_loss(LOGITS, LOGITS, TARGETS, 4.0, True), "alpha must be a number"),
    ("distillation_term NaN", lambda r, d: distillation_term(LOGITS, NAN, 4.0), "teacher_logits contain NaN"),
    ("KDLoss t2_scaling=1", lambda r, d: KDLoss(4.0, 0.8, 1), "t2_scaling must be True or False, got 1"),
    ("soft_targets T=-1", lambda r, d: soft_targets(LOGITS, -1), "temperature must be >= 0.01"),
    ("train_model seed=0.5", lambda r, d: train_model(build_model("lenet5", 10, image_size=16), IMAGES, TARGETS.numpy(),
                                                      TrainConfig(epochs=1), seed=0.5, device="cpu", progress=False),
     "seed must be an integer"),
    ("train_model float images", lambda r, d: train_model(build_model("lenet5", 10, image_size=16), IMAGES / 255,
                                                          TARGETS.numpy(), TrainConfig(epochs=1), seed=0, device="cpu",
                                                          progress=False), "images must be non-empty uint8"),
    ("train_model negative labels", lambda r, d: train_model(build_model("lenet5", 10, image_size=16), IMAGES,
                                                             -TARGETS.numpy(), TrainConfig(epochs=1), seed=0,
                                                             device="cpu", progress=False),
     "labels must be non-negative integers"),
    ("train_model device='bogus'", lambda r, d: train_model(build_model("lenet5", 10, image_size=16), IMAGES,
                                                            TARGETS.numpy(), TrainConfig(epochs=1), seed=0,
                                                            device="bogus", progress=False),
     "device 'bogus' is not a device"),
    ("build_model in_channels=0", lambda r, d: build_model("resnet8", 10, in_channels=0), "in_channels must be >= 1"),
    ("build_model num_classes=1", lambda r, d: build_model("resnet8", 1), "num_classes must be >= 2"),
    ("build_model num_classes=True", lambda r, d: build_model("resnet8", True), "num_classes must be an integer"),
    ("build_model 'vgg'", lambda r, d: build_model("vgg", 10), "model must be one of .* got 'vgg'"),
    ("DPD all-zero weights", lambda r, d: demographic_parity_difference(
        np.array([0, 1, 0, 1]), np.array([0, 1, 1, 1]), sensitive_features=np.array([0, 0, 1, 1]),
        sample_weight=np.zeros(4)), "sample_weight sums to 0"),
    ("multiclass label >= n_classes", lambda r, d: multiclass_fairness(Y3, Y3, sensitive_features=GROUPS, n_classes=2),
     r"labels must lie in \[0, n_classes=2\)"),
    ("lipschitz on logits", lambda r, d: lipschitz_ratio(PROBS * 9 - 2, PROBS, X, X[::-1]),
     "probs must be probabilities"),
    ("softmax T=0", lambda r, d: softmax(PROBS, 0), "temperature must be >= 0.01"),
    ("softmax T=1e-308", lambda r, d: softmax(PROBS, 1e-308), "temperature must be >= 0.01"),
    ("softmax NaN", lambda r, d: softmax(np.full((2, 3), np.nan)), "logits must be finite"),
    ("knn identical vectors", lambda r, d: knn_pairs(np.ones((5, 3)), k=1), "no pair of distinct examples"),
    ("knn k=0", lambda r, d: knn_pairs(X, k=0), "k must be >= 1"),
    ("null_calibration max_splits=0", lambda r, d: null_calibration(Y3, np.tile(Y3, (4, 1)), max_splits=0),
     "max_splits must be >= 1"),
    ("significance=1.5", lambda r, d: check_significance(1.5), "significance must be < 1, got 1.5"),
    ("reference draws=1", lambda r, d: zero_disparity_reference(Y3, Y3, sensitive_features=GROUPS, draws=1),
     "draws must be >= 2"),
    ("reference metric 'tpr'", lambda r, d: zero_disparity_reference(Y3, Y3, sensitive_features=GROUPS,
                                                                     metrics=("tpr",)), "metrics must be one of"),
    ("accuracy_matched lengths", lambda r, d: accuracy_matched(np.ones((2, 3)), np.ones(2), np.ones(3)),
     "2 models of class accuracies, 2 accuracies, 3 targets"),
    ("chance_test count='x'", lambda r, d: chance_test(None, 2.0, "x"), "count must be 'sc' or 'beyond_accuracy'"),
    ("paired_comparison lengths", lambda r, d: paired_comparison([1.0, 2.0], [1.0]), "differ in length"),
    ("blocked_slope shape", lambda r, d: blocked_slope(np.ones((2, 3)), [1.0, 2.0]), "values must be"),
    ("setup PROFILE='huge'", setup_with(profile="huge"),
     "profile must be one of quick, classroom, paper, cifar100, .*; got 'huge'"),
    ("setup PROFILE=5", setup_with(profile=5), "PROFILE must be a profile name"),
    ("setup OVERRIDES=[1]", setup_with(overrides=[1]), "OVERRIDES must be a dict"),
    ("setup OVERRIDES seeds=[0.5]", setup_with(overrides={"seeds": [0.5]}), r"seeds\[0\] must be an integer"),
    ("setup DEVICE='bogus'", setup_with(device="bogus"), "DEVICE 'bogus' is not a device"),
    ("setup runs_dir=<file>", setup_with(runs_dir=a_file), r"runs_dir \(\$KDFAIR_RUNS\) .* is not a folder"),
    ("run_series profile='huge'", series_with(profile="huge"), "profile must be one of quick, classroom, paper"),
    ("run_series overrides", series_with(overrides={"student_train.lr": -1}), "student_train.lr must be > 0"),
    ("run_series device='bogus'", series_with(device="bogus"), "device 'bogus' is not a device"),
    ("run_series runs_dir=<file>", series_with(runs_dir=a_file), "runs_dir .* is not a folder"),
]

# (id, argv after `kdfair`, what the one-line message must say); --runs-dir/--data-dir are added
CLI = [
    ("--set temperatures=abc", ["grid", "--set", "temperatures=abc"], r"temperatures\[0\] must be a number, got 'abc'"),
    ("--set student_train.lr=abc", ["grid", "--set", "student_train.lr=abc"], "student_train.lr must be a number"),
    ("--set lr=abc", ["grid", "--set", "lr=abc"], "unknown override 'lr'"),
    ("--set student_train={...}", ["grid", "--set", 'student_train={"epochs": 0}'],
     "student_train.epochs must be >= 1"),
    ("--set data_options=5", ["grid", "--set", "data_options=5"], "data_options must be a dict"),
    ("--set data_options.image_size=abc", ["grid", "--set", "data_options.image_size=abc"],
     "data_options.image_size must be an integer"),
    ("--set seeds=[0.5]", ["grid", "--set", "seeds=[0.5]"], r"seeds\[0\] must be an integer"),
    ("--set seeds=", ["grid", "--set", "seeds="], r"seeds\[0\] must be an integer, got ''"),
    ("--set t2_scaling=no", ["grid", "--set", "t2_scaling=no"], "t2_scaling must be True or False"),
    ("--seeds with --set seeds", ["grid", "--seeds", "1", "--set", "seeds=2"], "'seeds' is given twice"),
    ("--seeds with --set main.seeds", ["grid", "--seeds", "1", "--set", "main.seeds=2"], "'main.seeds' is given twice"),
    ("--temperatures 2 2", ["grid", "--temperatures", "2", "2"], "temperatures has duplicates"),
    ("--temperatures inf", ["grid", "--temperatures", "inf"], r"temperatures\[0\] must be finite"),
    ("--set FIELD without =", ["grid", "--set", "seeds"], "--set expects FIELD=VALUE"),
    ("--seeds 0.5", ["grid", "--seeds", "0.5"], r"grid: argument --seeds: invalid int value: '0.5' \(see kdfair grid"),
    ("unknown command", ["gird"], "argument command: invalid choice: 'gird'"),
    ("--runs-dir ''", ["grid", "--runs-dir", ""], "runs_dir must be a folder path, got ''"),
    ("--data-dir ''", ["grid", "--data-dir", ""], "data_dir must be a folder path, got ''"),
    ("grid --device bogus", ["grid", "--device", "bogus"], "device 'bogus' is not a device"),
    ("grid --runs-dir <file>", ["grid", "--runs-dir", "{file}"], "runs_dir .* is not a folder"),
    ("grid --data-dir <file>", ["grid", "--data-dir", "{file}"], "data_dir .* is not a folder"),
    ("run --set analysis.significance=2", ["run", "--set", "analysis.significance=2"], "analysis.significance"),
    ("run --device bogus", ["run", "--device", "bogus"], "device 'bogus' is not a device"),
    ("run --seeds with --set main.seeds", ["run", "--seeds", "1", "--set", "main.seeds=2"],
     "'main.seeds' is given twice"),
    ("run --runs-dir <file>", ["run", "--runs-dir", "{file}"], "runs_dir .* is not a folder"),
]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture
def folders(tmp_path):
    """Runs and data folders that do not exist yet, and a file where a folder might be named."""
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path / "runs", tmp_path / "data", snapshot(tmp_path)


def test_the_tables_are_large_enough():
    assert len(API) + len(CLI) >= 60


@pytest.mark.parametrize("call,match", [pytest.param(c, m, id=i) for i, c, m in API])
def test_bad_api_input_names_the_argument_and_writes_nothing(call, match, folders, tmp_path):
    runs, data, before = folders
    with pytest.raises(ValueError, match=match):
        call(runs, data)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("argv,match", [pytest.param(a, m, id=i) for i, a, m in CLI])
def test_bad_cli_input_is_one_line_naming_the_argument_and_writes_nothing(argv, match, folders, tmp_path, capsys):
    runs, data, before = folders
    argv = [str(tmp_path / "a-file") if a == "{file}" else a for a in argv]
    defaults: list[str] = []
    for flag, path in (("--runs-dir", runs), ("--data-dir", data)):
        if flag not in argv:
            defaults += [flag, str(path)]
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, *defaults, "--quiet"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kdfair: error: "), err
    assert re.search(match, err), err
    assert snapshot(tmp_path) == before
