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

import json
import re
from pathlib import Path
from typing import Any

from .validation import check_bool, check_choice, check_int, check_number
from .grid import GridConfig, GridResult, run_grid

EXECUTORS = ("local", "submitit")
SUBMITIT_CLUSTERS = ("auto", "slurm", "local", "debug")


DEFAULT_TIMEOUT_MIN = 24 * 60  # submitit's own defaults (2 min local, 5 min SLURM) would kill any real grid
_DEVICE_SYNTAX = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _worker(cfg: GridConfig, options: dict[str, Any], threads: int) -> dict[str, Any]:
    """One worker of the array: the grid's claim loop on the worker's own device (``auto`` is
    resolved there). Returns the keys it trained and the numerics its models are keyed by."""
    import torch

    from .train import numerics, resolve_device

    if resolve_device(options["device"]).type == "cpu":
        torch.set_num_threads(threads)  # a CPU model's key holds the thread count: match the submitter's
    result = run_grid(cfg, progress=False, **options)
    return {"trained": [s.key for s in result.trained], "numerics": numerics(options["device"], options["precision"])}


def run_grid_workers(cfg: GridConfig, *, workers: int = 1, executor: str = "local", cluster: str = "auto",
                     slurm: dict[str, Any] | None = None, runs_dir: str | Path | None = None,
                     data_dir: str | Path | None = None, device: str = "auto", precision: str = "auto",
                     engine: str = "population", population_size: int | None = None,
                     progress: bool = True, download: bool = False) -> GridResult:
    """Train ``cfg`` with ``workers`` workers on one cache and return the loaded grid.

    ``executor="local"`` runs the grid in this process (``workers`` must be 1);
    ``"submitit"`` submits ``workers`` array tasks through ``submitit.AutoExecutor``
    (``cluster``: ``auto`` = SLURM where ``sbatch`` exists, else local processes; ``debug`` runs
    them in this process) with ``slurm`` options, e.g. ``{"slurm_partition": "gpu",
    "slurm_gpus_per_task": 1, "timeout_min": 240, "cpus_per_task": 8}`` (``timeout_min``
    defaults to a day). ``device`` and ``precision`` are resolved on each worker (``auto``: a
    GPU where the worker has one); this process then reads the models the workers keyed, on
    any device, training nothing. Job logs go to ``<runs>/submitit/``. Every argument is
    checked before anything is submitted. ``download`` fetches a missing data set first (here,
    once, before any worker starts).
    """
    import torch

    from .validation import check_device, check_dir_path, check_writable_dir
    from .grid import ENGINES
    from .paths import default_runs_dir
    from .train import PRECISIONS

    check_choice(executor, "executor", EXECUTORS)
    check_choice(cluster, "cluster", SUBMITIT_CLUSTERS)
    check_choice(engine, "engine", ENGINES)
    check_choice(precision, "precision", PRECISIONS)
    check_int(workers, "workers", minimum=1)
    if executor == "local" and workers != 1:
        raise ValueError(f"workers={workers} needs executor='submitit' (the local executor is this process)")
    if not isinstance(cfg, GridConfig):
        raise ValueError(f"cfg must be a GridConfig, got {type(cfg).__name__}")
    cfg.validate()
    if population_size is not None:
        check_int(population_size, "population_size", minimum=1)
    slurm = dict(slurm or {})
    for key, value in slurm.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"slurm options must be named, got {key!r}")
        if key in ("timeout_min", "gpus_per_node", "slurm_gpus_per_task", "cpus_per_task"):
            check_int(value, f"slurm.{key}", minimum=0)
        elif key == "mem_gb":
            check_number(value, f"slurm.{key}", minimum=0, min_inclusive=False)
    runs = check_dir_path(runs_dir if runs_dir is not None else default_runs_dir(), "runs_dir")
    options = {"runs_dir": str(runs), "data_dir": None if data_dir is None else str(data_dir), "device": device,
               "precision": precision, "engine": engine, "population_size": population_size}
    if executor == "local":
        return run_grid(cfg, progress=progress, download=check_bool(download, "download"), **options)
    if check_bool(download, "download"):
        from .datasets import load_dataset

        load_dataset(cfg.dataset, cfg.label, data_dir=data_dir, download=True, **cfg.data_options)
    try:
        import submitit
    except ImportError:
        raise ValueError("executor='submitit' needs the submitit package: pip install 'kdfair[cluster]'") from None
    if not isinstance(device, str) or not _DEVICE_SYNTAX.fullmatch(device):
        raise ValueError(f"device must be auto, cpu, mps, cuda or cuda:N, got {device!r}")
    check_writable_dir(runs, "runs_dir")
    folder = runs / "submitit"
    ex = submitit.AutoExecutor(folder=str(folder), cluster=None if cluster == "auto" else cluster)
    if ex.cluster != "slurm":  # the workers run on this machine: its device must exist
        dev = check_device(device)
        slurm.setdefault("gpus_per_node", 1 if dev.type == "cuda" else 0)  # else CUDA_VISIBLE_DEVICES=""
        dropped = sorted(k for k in slurm if k.startswith("slurm_"))
        if dropped and progress:
            print(f"note: {ex.cluster} workers ignore the SLURM-only options {', '.join(dropped)}")
        slurm = {k: v for k, v in slurm.items() if not k.startswith("slurm_")}
    slurm.setdefault("timeout_min", DEFAULT_TIMEOUT_MIN)
    ex.update_parameters(name=f"kdfair-{cfg.label}", **({"slurm_array_parallelism": workers} if
                                                         ex.cluster == "slurm" else {}), **slurm)
    threads = torch.get_num_threads()
    jobs = ex.map_array(_worker, [cfg] * workers, [options] * workers, [threads] * workers)
    if progress:
        print(f"submitted {workers} {ex.cluster} worker(s) for grid {cfg.label}: "
              f"{', '.join(j.job_id for j in jobs)}; logs in {folder}")
    outcomes = [job.result() for job in jobs]  # raises a worker's error, with its log
    if progress:
        print(f"workers trained {sum(len(o['trained']) for o in outcomes)} model(s): "
              + ", ".join(f"{job.job_id} → {len(o['trained'])}" for job, o in zip(jobs, outcomes)))
    trained = [key for outcome in outcomes for key in outcome["trained"]]
    if len(trained) != len(set(trained)):
        raise RuntimeError("a model was trained by two workers; is flock shared on this file system?")
    found = {json.dumps(o["numerics"], sort_keys=True) for o in outcomes}
    if len(found) != 1:
        raise RuntimeError(f"the workers keyed their models by different numerics ({sorted(found)}): give them "
                           "one device type and thread count (--device, --slurm-cpus-per-task)")
    return run_grid(cfg, progress=progress, numerics_as=outcomes[0]["numerics"], **{**options, "device": "cpu"})
