"""Test environment: offline, headless, writable temp homes, one BLAS thread per test process."""

from __future__ import annotations

import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="kdfair-test-home-")
for var, value in {
    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MPLBACKEND": "Agg",
    "MPLCONFIGDIR": os.path.join(_TMP, "mpl"), "JUPYTER_CONFIG_DIR": os.path.join(_TMP, "jupyter-config"),
    "JUPYTER_DATA_DIR": os.path.join(_TMP, "jupyter-data"), "JUPYTER_RUNTIME_DIR": os.path.join(_TMP, "jupyter-rt"),
    "IPYTHONDIR": os.path.join(_TMP, "ipython"), "TQDM_DISABLE": "1",
}.items():
    os.environ.setdefault(var, value)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One generated-data cache for the whole session."""
    return tmp_path_factory.mktemp("data")


# A tiny profile in the override vocabulary every entry point shares: a few seconds of training.
TINY_OVERRIDES = {
    "seeds": [0, 1, 2], "teacher_seeds": [0, 1], "temperatures": [1, 2, 4, 20], "teacher": "resnet8",
    "main.teacher_train.epochs": 1, "class_bias.teacher_train.epochs": 1, "student_train.epochs": 1,
    "data_options.image_size": 16,
    "data_options.per_combination": 1, "data_options.test_per_combination": 0,
    "data_options.twins_per_combination": 0, "class_bias.temperatures": [2, 4, 8],
    # 1-epoch 100-class students can score 0 %, for which the ratio form is undefined
    "analysis.null_splits": 20, "analysis.normalization": "difference",
}


@pytest.fixture(scope="session")
def tiny_lesson(tmp_path_factory, data_dir):
    """A lesson on the tiny profile, with both experiments' grids trained."""
    import warnings

    from kdfair_utils.lesson import setup

    root = tmp_path_factory.mktemp("lesson")
    nb = setup("99_tiny", "quick", TINY_OVERRIDES, device="cpu", data_dir=data_dir, runs_dir=root / "runs",
               out_dir=root / "out")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for experiment in ("main", "class_bias"):
            nb.grid(experiment)
        nb.table()
    return nb
