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
