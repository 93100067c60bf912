"""Train a grid with several workers on one shared cache: in this process, or as a submitit job
array (SLURM on a cluster; submitit's local or debug executor elsewhere).

Every worker runs :func:`~kdfair_utils.grid.run_grid` on the same runs folder. The cache is the
coordination: a worker claims a whole training chunk (a population of students, or the
teachers) by locking each of its models' folders, re-verifies them under the locks, trains
what is still missing and writes each folder atomically; teachers come before the students that
distil from them (a worker waits for a teacher another one is training). So N workers share the
grid's chunks, never train a model twice and never leave a half-written folder. The locks are
``flock`` locks on ``<runs>/.locks``: on a cluster the runs folder must be on a file system
whose ``flock`` is shared between nodes (NFSv4, Lustre mounted with ``flock``, GPFS, BeeGFS).

Afterwards this process loads the finished grid (nothing is left to train) and returns it; the
notebooks (``kdfair run``) then only read the cache, as long as they use the same device,
precision and engine (the default ``auto`` / ``population``) and, on a CPU, the same thread
count (workers are given this process's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checks import check_choice, check_int, check_number
from .grid import POPULATION_SIZE, GridConfig, GridResult, run_grid

EXECUTORS = ("local", "submitit")
SUBMITIT_CLUSTERS = ("auto", "slurm", "local", "debug")


def _worker(cfg: GridConfig, options: dict[str, Any], threads: int) -> list[str]:
    """One worker of the array: the grid's claim loop; returns the keys it trained."""
    import torch

    torch.set_num_threads(threads)  # the thread count is part of a CPU model's cache key
    result = run_grid(cfg, progress=False, **options)
    return [s.key for s in result.trained]


def run_grid_workers(cfg: GridConfig, *, workers: int = 1, executor: str = "local", cluster: str = "auto",
                     slurm: dict[str, Any] | None = None, runs_dir: str | Path | None = None,
                     data_dir: str | Path | None = None, device: str = "auto", precision: str = "auto",
                     engine: str = "population", population_size: int = POPULATION_SIZE,
                     progress: bool = True) -> GridResult:
    """Train ``cfg`` with ``workers`` workers on one cache and return the loaded grid.

    ``executor="local"`` runs the grid in this process (``workers`` must be 1);
    ``"submitit"`` submits ``workers`` array tasks through ``submitit.AutoExecutor``
    (``cluster``: ``auto`` = SLURM where ``sbatch`` exists, else local processes; ``debug`` runs
    them in this process) with ``slurm`` options, e.g. ``{"slurm_partition": "gpu",
    "gpus_per_node": 1, "timeout_min": 240, "cpus_per_task": 8}``. Job logs go to
    ``<runs>/submitit/``. Every argument is checked before anything is submitted.
    """
    import torch

    from .checks import check_device, check_dir_path, check_writable_dir
    from .paths import default_runs_dir
    from .train import resolve_precision

    check_choice(executor, "executor", EXECUTORS)
    check_choice(cluster, "cluster", SUBMITIT_CLUSTERS)
    check_int(workers, "workers", minimum=1)
    if executor == "local" and workers != 1:
        raise ValueError(f"workers={workers} needs executor='submitit' (the local executor is this process)")
    if not isinstance(cfg, GridConfig):
        raise ValueError(f"cfg must be a GridConfig, got {type(cfg).__name__}")
    cfg.validate()
    dev = str(check_device(device))
    resolve_precision(precision, dev)
    check_int(population_size, "population_size", minimum=1)
    slurm = dict(slurm or {})
    for key, value in slurm.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"slurm options must be named, got {key!r}")
        if key in ("timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb"):
            check_number(value, f"slurm.{key}", minimum=0)
    runs = check_dir_path(runs_dir if runs_dir is not None else default_runs_dir(), "runs_dir")
    options = {"runs_dir": str(runs), "data_dir": None if data_dir is None else str(data_dir), "device": dev,
               "precision": precision, "engine": engine, "population_size": population_size}
    if executor == "submitit":
        try:
            import submitit
        except ImportError:
            raise ValueError("executor='submitit' needs the submitit package: pip install 'kdfair[cluster]'") from None
        check_writable_dir(runs, "runs_dir")
        folder = runs / "submitit"
        ex = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=None if cluster == "auto" else cluster)
        ex.update_parameters(name=f"kdfair-{cfg.label}", **({"slurm_array_parallelism": workers} if
                                                             ex.cluster == "slurm" else {}), **slurm)
        threads = torch.get_num_threads()
        jobs = ex.map_array(_worker, [cfg] * workers, [options] * workers, [threads] * workers)
        if progress:
            print(f"submitted {workers} {ex.cluster} worker(s) for grid {cfg.label}: "
                  f"{', '.join(j.job_id for j in jobs)}; logs in {folder}")
        trained = [key for job in jobs for key in job.result()]  # raises the worker's error, with its log
        if len(trained) != len(set(trained)):
            raise RuntimeError("a model was trained by two workers; is flock shared on this file system?")
    return run_grid(cfg, progress=progress, **options)
