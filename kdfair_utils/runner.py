"""The notebook runner (parent process only): ``kdfair run`` / ``make reproduce``.

It executes ``notebooks/NN_*.ipynb`` in order with papermill into the run folder
(``<runs>/<run name>``, :attr:`kdfair_utils.experiments.Profile.run_name`: executed notebooks, ``results/<notebook>.json``,
``figures/``, ``run.json``), then writes ``report.md`` (:mod:`kdfair_utils.report`). Every
notebook gets the same parameters — ``PROFILE``, ``OVERRIDES`` (the dotted vocabulary of
:mod:`kdfair_utils.experiments`) and ``DEVICE`` — validated before the first notebook starts;
the folders reach the kernels through the environment (``$KDFAIR_RUNS``, ``$KDFAIR_DATA``), as
they reach a notebook a user runs alone. Training happens inside the notebooks' kernels, so
the progress line watches the model cache (absolute path): ``02_knowledge_distillation ·
models 12/62 cached (12 trained in this run)``. A lesson that does not apply to the profile
(:func:`kdfair_utils.lesson.not_applicable`) is not executed: its copy in the run folder is one
cell saying why, ``run.json`` lists it under ``not_applicable``, and it records nothing.
"""

from __future__ import annotations

import os
import platform
import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .cache import atomic_write, save_json
from .validation import check_device, check_dir_path, check_number, check_writable_dir
from .experiments import Profile, get_profile
from .grid import model_specs
from .lesson import not_applicable
from .paths import checkout_dir, default_data_dir, default_runs_dir
from .report import write_report

PARAMETERS = ("PROFILE", "OVERRIDES", "DEVICE")


def notebooks_dir() -> Path:
    """The ``notebooks/`` folder of the checkout this package runs from."""
    root = checkout_dir()
    if root is None:
        raise FileNotFoundError("notebooks/ not found: run the series from a clone (pip install -e .)")
    return root / "notebooks"


def series_notebooks(folder: Path | None = None) -> list[Path]:
    """``NN_topic.ipynb`` files in order."""
    return sorted((folder or notebooks_dir()).glob("[0-9][0-9]_*.ipynb"))


def expected_models(profile: Profile, device: str = "auto") -> list[str]:
    """Cache folder names of every model the profile's experiments train (each once)."""
    return sorted({s.dirname for name in profile.experiments
                   for s in model_specs(profile.experiment(name), device=device)})


def machine_description(device: str) -> str:
    """E.g. ``x86_64, 2 CPU cores, torch 2.14.1 with 2 threads (cpu)``: the thread count changes
    float summation order, so a run on other hardware or threads can differ in the last digits."""
    import torch

    from .train import resolve_device

    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads ({resolve_device(device)})")


def untagged_errors(path: Path) -> list[int]:
    """Indices of the cells of an executed notebook that raised anything but an unfinished
    exercise: a ``NotImplementedError`` in a cell tagged ``raises-exception`` (course mode's
    stubs, :mod:`kdfair_utils.course`). papermill runs past tagged cells but reports their errors
    afterwards; a run whose only errors are unfinished exercises ran to the end by design."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            and any(o.output_type == "error" and not ("raises-exception" in cell.metadata.get("tags", [])
                                                      and o.get("ename") == "NotImplementedError")
                    for o in cell.outputs)]


def run_series(profile: str = "quick", overrides: dict[str, Any] | None = None, *, runs_dir: str | Path | None = None,
               data_dir: str | Path | None = None, device: str = "auto", notebooks: list[Path] | None = None,
               progress: bool = True, cell_timeout: float | None = None) -> Path:
    """Execute the series with papermill into ``<runs>/<run name>`` and write the report; returns
    the report's path.

    ``overrides`` use the dotted vocabulary of :mod:`kdfair_utils.experiments`; a bad name or
    value is a ``ValueError`` before any notebook runs. A notebook without the standard
    parameters (:data:`PARAMETERS`) is a ``ValueError`` too. A failing notebook raises
    ``RuntimeError`` naming the notebook, the cell and the error.

    ``cell_timeout`` (seconds, default none) bounds the wait for any one cell. Rarely, a kernel
    finishes a cell but its reply never reaches the client (a known, intermittent papermill /
    jupyter_client hang: kernel idle, client waiting forever). With a timeout, such a notebook is
    run again — every model it trained is cached, so the rerun resumes — for as long as each
    timed-out attempt trained a model; a second timeout without one is a ``RuntimeError``.
    """
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError
    from tqdm.auto import tqdm

    resolved = get_profile(profile, overrides)  # validates every name and value before anything runs
    check_device(device)
    if cell_timeout is not None:
        check_number(cell_timeout, "cell_timeout", minimum=0, min_inclusive=False)
    runs = check_writable_dir(runs_dir if runs_dir is not None else default_runs_dir(), "runs_dir").resolve()
    data = check_dir_path(data_dir if data_dir is not None else default_data_dir(), "data_dir").resolve()
    out = runs / resolved.run_name
    nbs = notebooks if notebooks is not None else series_notebooks()
    if not nbs:
        raise FileNotFoundError("no notebooks/NN_*.ipynb found")
    skipped = {nb.name: why for nb in nbs if (why := not_applicable(nb.stem, resolved))}
    for nb in nbs:
        missing = set(PARAMETERS) - set(pm.inspect_notebook(str(nb)))
        if missing:
            raise ValueError(f"{nb.name} does not declare the series parameters {sorted(missing)}")
    params = {"PROFILE": profile, "OVERRIDES": dict(overrides or {}), "DEVICE": device}
    folders = {"KDFAIR_RUNS": str(runs), "KDFAIR_DATA": str(data)}  # absolute: kernels run in notebooks/
    expected = expected_models(resolved, device)
    for stale in ("results", "figures"):  # a run's records, figures and report are this run's alone
        shutil.rmtree(out / stale, ignore_errors=True)
    for stale in ("report.md", "claims.json", "run.json"):
        (out / stale).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    def cached() -> int:
        return sum((runs / "models" / name / "meta.json").exists() for name in expected)

    at_start = cached()
    timings: dict[str, float] = {}
    # kernels that advertise CurveZMQ get encrypted sockets (ipykernel >= 7.3 warns on plain TCP)
    from traitlets.config import Config

    kernel_config = Config({"KernelManager": {"transport_encryption": "auto"}})
    bar = tqdm(total=len(nbs), desc="notebooks", disable=not progress,
               bar_format="{desc} {n}/{total} [{elapsed}]{postfix}")
    current = {"name": ""}
    stop = threading.Event()

    def status() -> str:
        now = cached()
        return f"{current['name']} · models {now}/{len(expected)} cached ({now - at_start} trained in this run)"

    def watch() -> None:  # training happens inside the kernel: show the cache growing instead
        while not stop.wait(2.0):
            bar.set_postfix_str(status(), refresh=True)

    watcher = threading.Thread(target=watch, daemon=True)
    saved_env = {k: os.environ.get(k) for k in folders}
    if progress:
        tqdm.write(f"kdfair run --profile {profile}: {len(nbs)} notebooks · models {at_start}/{len(expected)} cached "
                   f"in {runs / 'models'} · results in {out}")
        watcher.start()
    try:
        os.environ.update(folders)  # kernels inherit the environment: the folders reach every notebook
        for nb in nbs:
            current["name"] = nb.name
            bar.set_postfix_str(status())
            if nb.name in skipped:
                write_not_applicable(nb, out / nb.name, skipped[nb.name])
                if progress:
                    tqdm.write(f"  {nb.name}: does not apply ({skipped[nb.name]}); nothing recorded")
                bar.update(1)
                continue
            start = time.perf_counter()
            idle_timeouts = 0
            while True:
                before = cached()
                try:
                    pm.execute_notebook(str(nb), str(out / nb.name), cwd=str(nb.parent), parameters=params,
                                        kernel_name="python3", progress_bar=False, config=kernel_config,
                                        execution_timeout=cell_timeout)
                    break
                except pm.PapermillExecutionError as exc:
                    if not untagged_errors(out / nb.name):  # only stubs of course mode raised: it ran to the end
                        break
                    raise RuntimeError(f"{nb.name} failed in cell {exc.cell_index} ({exc.ename}: {exc.evalue}); "
                                       f"executed notebook: {out / nb.name}") from None
                except CellTimeoutError:
                    # a timeout while models were being trained is progress (they are cached): go on;
                    # a second one without progress is a real failure
                    idle_timeouts += cached() == before
                    if idle_timeouts == 2:
                        raise RuntimeError(f"{nb.name}: a cell gave no reply within {cell_timeout:g} s, twice, "
                                           "without training a model; raise --cell-timeout if a cell is slower "
                                           "than that") from None
                    tqdm.write(f"  {nb.name}: a cell gave no reply within {cell_timeout:g} s (a lost kernel message, "
                               "or a cell slower than the timeout); running the notebook again, cached models "
                               "are reused")
            timings[nb.name] = time.perf_counter() - start
            if progress:
                tqdm.write(f"  {nb.name}: {timings[nb.name]:.0f} s · models {cached()}/{len(expected)} cached")
            bar.update(1)
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop.set()  # stop the watcher before the bar closes, so it never redraws a closed bar
        if watcher.is_alive():
            watcher.join()
        bar.close()
    save_json(out / "run.json", {"profile": profile, "overrides": dict(overrides or {}), "config_key": resolved.key,
                                 "machine": machine_description(device),
                                 "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                                 "models": len(expected), "trained": cached() - at_start, "timings": timings,
                                 "not_applicable": skipped, "dataset": resolved.main.dataset,
                                 "description": describe(resolved)})
    return write_report(out, resolved.analysis)  # its data set and description come from run.json


def describe(profile: Profile) -> str:
    """The report's one-line description, e.g. ``celeba (smiling), resnet50 teacher → resnet18 students``."""
    main = profile.main
    return f"{main.dataset} ({main.label}), {main.teacher} teacher → {main.student} students"


def write_not_applicable(notebook: Path, dest: Path, reason: str) -> None:
    """``dest``: the notebook's title and one cell saying why it does not apply (it records nothing)."""
    import nbformat

    title = next((c.source.splitlines()[0] for c in nbformat.read(notebook, as_version=4).cells
                  if c.cell_type == "markdown" and c.source.startswith("#")), f"# {notebook.stem}")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"{title}\n\n**This lesson does not apply to this run:** {reason}. "
                                              "Nothing was trained or recorded for it.")]
    atomic_write(dest, lambda tmp: nbformat.write(nb, str(tmp)))
