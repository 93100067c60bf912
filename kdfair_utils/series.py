"""The notebook series: shared notebook helpers, the papermill runner and the report.

``kdfair run --profile quick`` (= ``make reproduce``) executes ``notebooks/NN_*.ipynb`` in order
into ``runs/<profile>/`` (executed notebooks, ``results/<notebook>.json``, ``figures/``) and
writes ``runs/<profile>/report.md``, whose first table sets the paper's claims beside ours.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .cache import atomic_write, load_json, save_json
from .grid import GridConfig, default_runs_dir, get_profile

# The 100-class Trifeature label on which notebook 03 studies class bias (its default).
CLASS_BIAS_LABEL = "shape_color"


def notebooks_dir() -> Path:
    """The ``notebooks/`` folder of the checkout this package was installed from."""
    path = Path(__file__).resolve().parent.parent / "notebooks"
    if not path.is_dir():
        raise FileNotFoundError(f"{path} not found: run the series from a checkout (pip install -e .)")
    return path


def series_notebooks(folder: Path | None = None) -> list[Path]:
    """``NN_topic.ipynb`` files in order."""
    return sorted((folder or notebooks_dir()).glob("[0-9][0-9]_*.ipynb"))


def grid_config(profile: str, *, label: str | None = None, seeds: Any = None, teacher_seeds: Any = None,
                temperatures: Any = None, teacher_epochs: int | None = None, student_epochs: int | None = None,
                image_size: int | None = None, per_combination: int | None = None) -> GridConfig:
    """The profile's grid with the notebook parameters that are not ``None`` applied."""
    overrides: dict[str, Any] = {}
    for key, value in {"label": label, "seeds": seeds, "teacher_seeds": teacher_seeds,
                       "temperatures": temperatures, "teacher_train.epochs": teacher_epochs,
                       "student_train.epochs": student_epochs, "data_options.image_size": image_size,
                       "data_options.per_combination": per_combination}.items():
        if value is not None:
            overrides[key] = value
    return get_profile(profile, **overrides)


def record(out_dir: str | Path, notebook: str, results: dict[str, Any]) -> Path:
    """Write a notebook's key results to ``<out_dir>/results/<notebook>.json`` (atomically)."""
    return save_json(Path(out_dir) / "results" / f"{notebook}.json", _plain(results))


def load_results(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    folder = Path(out_dir) / "results"
    return {p.stem: load_json(p) for p in sorted(folder.glob("*.json"))}


def _plain(obj: Any) -> Any:
    """JSON-friendly copy: numpy scalars/arrays to Python, NaN to None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def spearman(x: Any, y: Any) -> float | None:
    """Spearman's ρ (None when undefined, e.g. a constant series)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(y) == 0:
        return None
    return float(spearmanr(x, y).statistic)


# ----------------------------------------------------------------------------- runner
def run_series(profile: str = "quick", *, out_dir: str | Path | None = None, runs_dir: str | Path | None = None,
               data_dir: str | Path | None = None, device: str = "auto",
               extra_parameters: dict[str, Any] | None = None, notebooks: list[Path] | None = None,
               progress: bool = True) -> Path:
    """Execute the series with papermill into ``out_dir`` and write the report; returns its path.

    Each notebook receives the parameters it declares (its ``parameters`` cell); an extra
    parameter that no notebook declares is a ``ValueError``. A failing notebook raises
    ``RuntimeError`` naming the notebook, the cell and the error.
    """
    import papermill as pm
    from tqdm.auto import tqdm

    get_profile(profile)  # validates the name before anything runs
    runs = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    out = Path(out_dir) if out_dir is not None else runs / profile
    out.mkdir(parents=True, exist_ok=True)
    params = {"PROFILE": profile, "DEVICE": device, "OUT_DIR": str(out.resolve()),
              "RUNS_DIR": str(runs.resolve()), **(extra_parameters or {})}
    if data_dir is not None:
        params["DATA_DIR"] = str(Path(data_dir).resolve())
    nbs = notebooks if notebooks is not None else series_notebooks()
    if not nbs:
        raise FileNotFoundError("no notebooks/NN_*.ipynb found")
    declared = {nb: set(pm.inspect_notebook(str(nb))) for nb in nbs}
    unknown = set(extra_parameters or {}) - set().union(*declared.values())
    if unknown:
        known = sorted(set().union(*declared.values()))
        raise ValueError(f"unknown notebook parameter(s) {sorted(unknown)}; the notebooks declare: {', '.join(known)}")
    timings: dict[str, float] = {}
    # kernels that advertise CurveZMQ get encrypted sockets (ipykernel >= 7.3 warns on plain TCP)
    from traitlets.config import Config

    kernel_config = Config({"KernelManager": {"transport_encryption": "auto"}})
    bar = tqdm(total=len(nbs), desc="notebooks", disable=not progress, bar_format="{desc} {n}/{total} [{elapsed}]{postfix}")
    current = {"name": ""}
    stop = threading.Event()

    def watch() -> None:  # training happens inside the kernel: show the cache growing instead
        while not stop.wait(2.0):
            done = sum(1 for _ in (runs / "models").glob("*/meta.json"))
            bar.set_postfix_str(f"{current['name']} · {done} models in the cache", refresh=True)

    watcher = threading.Thread(target=watch, daemon=True)
    if progress:
        watcher.start()
    try:
        for nb in nbs:
            current["name"] = nb.name
            bar.set_postfix_str(nb.name)
            start = time.perf_counter()
            try:
                pm.execute_notebook(str(nb), str(out / nb.name), cwd=str(nb.parent),
                                    parameters={k: v for k, v in params.items() if k in declared[nb]},
                                    kernel_name="python3", progress_bar=False, config=kernel_config)
            except pm.PapermillExecutionError as exc:
                raise RuntimeError(f"{nb.name} failed in cell {exc.cell_index} ({exc.ename}: {exc.evalue}); "
                                   f"executed notebook: {out / nb.name}") from None
            timings[nb.name] = time.perf_counter() - start
            if progress:
                tqdm.write(f"  {nb.name}: {timings[nb.name]:.0f} s")
            bar.update(1)
    finally:
        stop.set()  # stop the watcher before the bar closes, so it never redraws a closed bar
        if watcher.is_alive():
            watcher.join()
        bar.close()
    save_json(out / "timings.json", timings)
    return write_report(out, profile=profile)


# ----------------------------------------------------------------------------- claims & report
def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def trend_verdict(rho: float | None, expected_sign: int) -> str:
    """``yes`` if ρ has the expected sign and |ρ| ≥ 0.5, ``weakly`` if only the sign is right."""
    if rho is None:
        return "n/a"
    signed = expected_sign * rho
    return "yes" if signed >= 0.5 else "weakly" if signed > 0 else "no"


def less_verdict(a: dict[str, Any], b: dict[str, Any], key: str = "mean") -> str:
    """Is population ``a``'s mean below ``b``'s? ``yes`` if so and Welch's one-sided p < 0.05
    (from the recorded mean, std and n), ``weakly`` if only the direction holds."""
    from scipy.stats import ttest_ind_from_stats

    ma, mb = a[key], b[key]
    if ma is None or mb is None:
        return "n/a"
    if not ma < mb:
        return "no"
    std_key = "std" if key == "mean" else f"{key}_std"
    sa, sb, na, nb = a.get(std_key), b.get(std_key), a.get("n", 1), b.get("n", 1)
    if sa is None or sb is None or na < 2 or nb < 2 or (sa == 0 and sb == 0):
        return "weakly"
    p = ttest_ind_from_stats(ma, sa, na, mb, sb, nb, equal_var=False, alternative="less").pvalue
    return "yes" if p < 0.05 else "weakly"


VERDICTS = ("- **yes**: the direction holds and is clear — Spearman |ρ| ≥ 0.5 for trends over T, Welch "
            "one-sided p < 0.05 (over seeds) for comparisons of means, permutation p < 0.05 for counts;\n"
            "- **weakly**: the direction holds but not clearly (|ρ| < 0.5, or p ≥ 0.05);\n"
            "- **no**: the direction is opposite; **n/a**: not measurable with this run's parameters.")


def claims_table(results: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """The paper's claims beside our measured values, from the notebooks' recorded results."""
    rows: list[dict[str, str]] = []

    def add(claim: str, paper: str, ours: str, held: str) -> None:
        rows.append({"claim": claim, "paper": paper, "kdfair": ours, "held": held})

    kd = results.get("02_knowledge_distillation")
    if kd:
        acc = kd["accuracy"]
        add("Teacher (ResNet-20) reaches ~100 % on Trifeature shape", "100.00 ± 0.00",
            f"{acc['teacher']['mean']:.2f} ± {acc['teacher']['std']:.2f}", "yes" if acc["teacher"]["mean"] >= 99 else "no")
        ds = kd.get("ds_t1_10_accuracy")
        add("Distilled students are more accurate than the NDS (T = 1..10)", "NDS 90.33 vs DS 92.41–93.25",
            f"NDS {acc['nds']['mean']:.2f} ± {acc['nds']['std']:.2f} vs DS {_fmt(ds and ds['mean'])} ± {_fmt(ds and ds['std'])}",
            less_verdict(acc["nds"], ds) if ds else "n/a")
    cb = results.get("03_class_bias")
    if cb:
        hard = cb["variants"].get(cb.get("class_bias_label", CLASS_BIAS_LABEL))
        if hard:
            t, sc, tc = hard["T"], hard["SC_raw"], hard["TC_raw"]
            add(f"#SC rises with T ({len(hard['class_names'])}-class Trifeature shape×colour)",
                "CIFAR-100 5→22, ImageNet 77→408 (T = 2→10)",
                f"{sc[0]}→{sc[-1]} (T = {t[0]:g}→{t[-1]:g}), ρ = {_fmt(hard['spearman_SC'])}; BH {hard['SC_bh'][0]}→{hard['SC_bh'][-1]}",
                trend_verdict(hard["spearman_SC"], +1))
            p, min_p = hard["null_p_value_raw"], hard.get("null_min_p", 0.0)
            testable = p is not None and min_p < 0.05
            add(f"#SC exceeds chance (NDS vs DS@T={t[-1]:g}, seed-permutation null)", "not tested in the paper",
                f"{hard['observed_at_max_T']['raw']} vs chance ≈ {_fmt(hard['null_expected_raw'], 1)}, p = {_fmt(p, 3)}"
                + ("" if testable else f" (too few seeds: the smallest possible p is {_fmt(min_p, 2)})"),
                "n/a" if not testable else "yes" if p < 0.05 else "no")
            add("#TC falls with T", "CIFAR-100 15→11 (min 6), ImageNet 314→86",
                f"{tc[0]}→{tc[-1]}, ρ = {_fmt(hard['spearman_TC'])}; BH {hard['TC_bh'][0]}→{hard['TC_bh'][-1]}",
                trend_verdict(hard["spearman_TC"], -1))
    gf = results.get("04_group_fairness")
    if gf:
        for metric, paper in (("eod", "1.67→1.01"), ("dpd", "3.75→3.10")):
            rho = gf[f"spearman_{metric}_t1_10"]
            add(f"DS {metric.upper()} (colour) falls as T rises over 1..10", f"{paper} (%)",
                f"{_fmt(gf['ds'][metric][0])}→{_fmt(gf['ds_t10'][metric])} (%), ρ = {_fmt(rho)}", trend_verdict(rho, -1))
        add("DS fairer than NDS (EOD, colour)", "NDS 2.81 vs DS ≤ 1.67",
            f"NDS {_fmt(gf['nds']['eod'])} vs DS (T = 1..10) {_fmt(gf['ds_mean_t1_10']['eod'])}",
            less_verdict(gf["ds_mean_t1_10"], gf["nds"], "eod"))
        add("DS DPD below the teacher's at high T", "3.10 (T=10) < 3.64",
            f"{_fmt(gf['ds_t10']['dpd'])} vs {_fmt(gf['teacher']['dpd'])}", less_verdict(gf["ds_t10"], gf["teacher"], "dpd"))
        if gf.get("very_high_T"):
            v = gf["very_high_T"]
            add("Very high T (20–40) reverses the EOD trend", "HateXplain EOD 1.13 (T=10) → 4.49 (T=40)",
                f"{_fmt(gf['ds_t10']['eod'])} (T=10) → {_fmt(v['eod'])} (T={v['T']:g})", less_verdict(gf["ds_t10"], v, "eod"))
    ind = results.get("05_individual_fairness")
    if ind:
        rho = ind["spearman_t1_10"]
        add("Individual unfairness (Lipschitz ratio) falls with T", "0.0422 (T=1) → 0.0338 (T=10)",
            f"{_fmt(ind['ds'][0], 4)} → {_fmt(ind['ds_t10'], 4)}, ρ = {_fmt(rho)}", trend_verdict(rho, -1))
        order = ind["teacher"] < ind["ds_mean_t1_10"] < ind["nds"]
        add("Teacher < DS < NDS on individual fairness", "0.016 < 0.034–0.042 < 0.046",
            f"{_fmt(ind['teacher'], 4)} / DS {_fmt(ind['ds_mean_t1_10'], 4)} / {_fmt(ind['nds'], 4)}",
            "yes" if order else "no")
    return rows


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "_no results recorded_\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, *, profile: str = "") -> Path:
    """``<out_dir>/report.md``: the paper-vs-kdfair table, then each notebook's figures."""
    out = Path(out_dir)
    results = load_results(out)
    rows = claims_table(results)
    held = sum(r["held"] == "yes" for r in rows)
    weak = sum(r["held"] == "weakly" for r in rows)
    timings = load_json(out / "timings.json") if (out / "timings.json").exists() else {}
    parts = [f"# kdfair report — profile `{profile}`\n",
             "Trifeature (generated), ResNet-20 teacher → LeNet-5 students; every number below was measured "
             "in this run and recorded by the executed notebooks beside this file.\n",
             "## Paper vs kdfair\n", markdown_table(rows),
             f"\n{held} of {len(rows)} claims held clearly and {weak} weakly in this run. Verdicts:\n\n{VERDICTS}\n\n"
             "Where a claim did not hold, the numbers above are what we measured; notebook 06 discusses why.\n"]
    if timings:
        parts.append("\n## Run time\n\n" + "\n".join(f"- `{k}`: {v:.0f} s" for k, v in timings.items())
                     + f"\n- total: {sum(timings.values()):.0f} s\n")
    figures = sorted((out / "figures").glob("*.png"))
    if figures:
        parts.append("\n## Figures\n")
        parts += [f"\n### {f.stem.replace('_', ' ')}\n\n![{f.stem}](figures/{f.name})\n" for f in figures]
    text = "\n".join(parts)
    path = out / "report.md"
    atomic_write(path, lambda tmp: tmp.write_text(text))
    save_json(out / "claims.json", rows)
    return path

