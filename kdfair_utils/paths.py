"""Where data, cached models and run outputs live, the same for the CLI, the runner and notebooks.

* data: ``$KDFAIR_DATA``, else ``<checkout>/data``;
* cached models and run outputs: ``$KDFAIR_RUNS``, else ``<checkout>/runs``;
* one run's executed notebooks, records, figures and report: ``<runs>/<run name>``, where the
  run name is the profile's (``quick``), or ``quick+<hash>`` when overrides change it (so a
  changed run never overwrites, or mixes with, the default one; see
  :attr:`kdfair_utils.experiments.Profile.run_name`).

``<checkout>`` is the folder holding ``pyproject.toml`` above this package (an editable install
from a clone); an installed copy without a checkout uses the current directory instead.

:func:`usable_cores` is how many CPU cores this process may use (threaded decoding and rendering).
"""

from __future__ import annotations

import os
from pathlib import Path


def checkout_dir() -> Path | None:
    """The clone this package runs from, or None for an installed copy."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir() else None


def _default(env: str, name: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env])
    root = checkout_dir()
    return root / name if root is not None else Path(name)


def default_data_dir() -> Path:
    """``$KDFAIR_DATA``, else ``<checkout>/data``."""
    return _default("KDFAIR_DATA", "data")


def default_runs_dir() -> Path:
    """``$KDFAIR_RUNS``, else ``<checkout>/runs``."""
    return _default("KDFAIR_RUNS", "runs")



def usable_cores(cap: int | None = None) -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one, so a
    container or ``taskset`` limit counts; else ``os.cpu_count()``), at most ``cap``; at least 1."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, cap) if cap is not None else cores)
