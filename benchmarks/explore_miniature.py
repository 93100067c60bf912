"""Exploration: why DS@T=1 ≈ NDS in the quick profile, and which small recipe gives a paper-like
pattern (teacher ≈ 100 %, NDS a few points below DS, DS@T=1 already above the NDS).

A measurement, not a tuning loop: every configuration below is run once, as listed, and its row
printed whatever it shows. Each is the quick profile's main grid (label shape) reduced to
teacher seeds (0, 1), student seeds (0, 1, 2) and T in (1, 1.5, 2, 4, 10), with the overrides
named in CONFIGS. Per configuration it records

* teacher test accuracy (mean of the teachers), and on the TRAINING set at T=1 (and T=2): the
  teachers' mean max softmax probability, mean entropy (nats) and mean probability of the true
  class — read from each teacher's cached ``train_logits.npz``;
* NDS accuracy mean ± std, DS accuracy mean at each T;
* EOD(colour) means (%) for NDS, DS@T=1 and DS@T=10 (``GridResult.table(attributes=("color",))``);
* wall time and process CPU time of the call (one thread, so CPU time is the compute, robust to
  other load on the machine and to the process being paused; models already cached — e.g. teachers shared with an earlier
  configuration — are loaded, not retrained) and the summed training seconds of every model of
  the grid as recorded in its ``meta.json`` (comparable across configurations whatever was reused).

Configurations whose name starts with ``x_`` are EXPLORATORY: they monkeypatch the Trifeature
renderer in this process only (never the package) and use their own data and runs folders, so
their images never enter a shared cache.

Single thread (``torch.set_num_threads(1)``), population engine, one training at a time.

Usage: PYTHONPATH=. python benchmarks/explore_miniature.py [--runs-dir DIR] [--data-dir DIR]
       [--only NAME[,NAME...]] [--list] [--table]
Running a configuration again loads its cached models, recomputes every number and keeps the
first run's wall time. Results are appended as JSON lines to ``<runs-dir>/explore_results.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

BASE = {"label": "shape", "teacher_seeds": (0, 1), "seeds": (0, 1, 2), "temperatures": (1, 1.5, 2, 4, 10)}

# name -> (what changed, GridConfig overrides, renderer patch or None)
CONFIGS: dict[str, tuple[str, dict, str | None]] = {
    "baseline": ("quick recipe", {}, None),
    "t_ep3": ("teacher 3 epochs (10)", {"teacher_train.epochs": 3}, None),
    "t_ep5": ("teacher 5 epochs (10)", {"teacher_train.epochs": 5}, None),
    "t_ep7": ("teacher 7 epochs (10)", {"teacher_train.epochs": 7}, None),
    "t_wd5e-3": ("teacher weight decay 5e-3 (5e-4)", {"teacher_train.weight_decay": 5e-3}, None),
    "s_ep45": ("student 45 epochs (30)", {"student_train.epochs": 45}, None),
    "s_ep45_T1.25": ("student 45 epochs, plus T=1.25", {"student_train.epochs": 45,
                                                         "temperatures": (1, 1.25, 1.5, 2, 4, 10)}, None),
    "s_ep60": ("student 60 epochs (30)", {"student_train.epochs": 60}, None),
    "data_5": ("5 train images per combination (3): 5,000 train", {"data_options.per_combination": 5}, None),
    "data_1": ("1 train image per combination (3): 1,000 train", {"data_options.per_combination": 1}, None),
    "t_wd0": ("teacher weight decay 0 (5e-4)", {"teacher_train.weight_decay": 0.0}, None),
    "x_white": ("EXPLORATORY renderer: off-texture shade 0.35→0.15 (white off-pixels 0.15, not ≈ grey 0.5)",
                {}, "off_shade_0.15"),
}


def patch_renderer(kind: str) -> None:
    """EXPLORATORY, this process only: re-implement the one line of ``trifeature.render`` that
    shades off-texture pixels, by wrapping ``np.where`` inside the module."""
    from kdfair_utils import trifeature as tf

    assert kind == "off_shade_0.15", kind
    real_np = tf.np

    class _NP:  # forwards everything to numpy but the texture shade np.where(tex, 1.0, 0.35)
        def __getattr__(self, name):
            return getattr(real_np, name)

        @staticmethod
        def where(cond, a=None, b=None):
            if isinstance(a, float) and a == 1.0 and isinstance(b, float) and b == 0.35:
                b = 0.15
            return real_np.where(cond, a, b)

    tf.np = _NP()


def teacher_soft_stats(result, runs_dir: Path) -> dict:
    """Mean max prob / entropy / true-class prob of each teacher's training-set softmax at T=1, 2."""
    from kdfair_utils.cache import load_npz
    from kdfair_utils.individual_fairness import softmax
    from kdfair_utils.results import Population

    y = result.dataset.train.labels
    out: dict[str, list] = {}
    for spec in result.models(Population.teacher()):
        z = load_npz(runs_dir / "models" / spec.dirname / "train_logits.npz")["train"]
        for t in (1.0, 2.0):
            p = softmax(z, t)
            tag = f"T{t:g}"
            out.setdefault(f"maxp_{tag}", []).append(float(p.max(-1).mean()))
            out.setdefault(f"ent_{tag}", []).append(float(-(p * np.log(p + 1e-30)).sum(-1).mean()))
            out.setdefault(f"ptrue_{tag}", []).append(float(p[np.arange(len(y)), y].mean()))
        out.setdefault("train_acc", []).append(float(100 * (z.argmax(-1) == y).mean()))
    return {k: float(np.mean(v)) for k, v in out.items()}


def student_train_stats(result, runs_dir: Path) -> dict:
    """Mean training-set accuracy (%) of the NDS and of the DS at each T, from their saved weights
    (read with ``weights_only=True``): is the student limited by fitting, or by generalising?"""
    from kdfair_utils.models import build_model, load_state_dict
    from kdfair_utils.results import Population
    from kdfair_utils.train import predict_logits, with_normalization

    data = result.dataset
    y = data.train.labels
    out: dict[str, float] = {}
    pops = [("nds", Population.nds())] + [(f"ds_T{t:g}", Population.ds(float(t))) for t in result.config.temperatures]
    for tag, pop in pops:
        accs = []
        for spec in result.models(pop):
            net = with_normalization(build_model(spec.arch, data.num_classes, in_channels=data.image_shape[0],
                                                 image_size=data.image_shape[1]), data.train.images)
            net.load_state_dict(load_state_dict(runs_dir / "models" / spec.dirname / "model.pt"))
            z = predict_logits(net, data.train.images, device="cpu")
            accs.append(100 * float((z.argmax(-1) == y).mean()))
        out[f"{tag}_train_acc"] = float(np.mean(accs))
    return out


def run_config(name: str, runs_root: Path, data_root: Path) -> dict:
    from kdfair_utils.experiments import get_profile
    from kdfair_utils.grid import run_grid

    what, overrides, patch = CONFIGS[name]
    runs_dir, data_dir = runs_root / "shared", data_root
    if patch is not None:  # exploratory data never enters a shared cache
        patch_renderer(patch)
        runs_dir, data_dir = runs_root / name, runs_root / name / "data"
    cfg = get_profile("quick").main.replace(**{**BASE, **overrides})
    start, cpu_start = time.perf_counter(), time.process_time()
    result = run_grid(cfg, runs_dir=runs_dir, data_dir=data_dir, progress=False, engine="population")
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    table = result.table(attributes=("color",))
    row: dict = {"name": name, "what": what, "overrides": overrides, "patch": patch,
                 "n_train": len(result.dataset.train), "n_test": len(result.dataset.test),
                 "wall_min": wall / 60, "cpu_min": cpu / 60, "trained": len(result.trained), "loaded": len(result.loaded),
                 "train_min_all": sum(m["train_seconds"] for m in result.meta.values()) / 60,
                 "train_min_teachers": sum(m["train_seconds"] for m in result.meta.values()
                                           if m["spec"]["role"] == "teacher") / 60}
    teach = table[table.role == "teacher"]
    nds = table[table.role == "nds"]
    row["teacher_acc"] = float(teach.accuracy.mean())
    row.update({f"teacher_{k}": v for k, v in teacher_soft_stats(result, runs_dir).items()})
    row["nds_acc"], row["nds_std"] = float(nds.accuracy.mean()), float(nds.accuracy.std(ddof=1))
    row["nds_eod"] = float(nds.eod_color.mean())
    for t in cfg.temperatures:
        ds = table[(table.role == "ds") & (table["T"] == float(t))]
        row[f"ds_acc_T{t:g}"] = float(ds.accuracy.mean())
        row[f"ds_std_T{t:g}"] = float(ds.accuracy.std(ddof=1))
        row[f"ds_eod_T{t:g}"] = float(ds.eod_color.mean())
    row["teacher_eod"] = float(teach.eod_color.mean())
    row.update(student_train_stats(result, runs_dir))
    return row


def format_row(r: dict) -> str:
    ds = " ".join(f"{r[f'ds_acc_T{t:g}']:.2f}" for t in BASE["temperatures"])
    return (f"{r['name']:<10} T {r['teacher_acc']:6.2f} maxp {r['teacher_maxp_T1']:.3f} "
            f"H {r['teacher_ent_T1']:.3f} | NDS {r['nds_acc']:.2f}±{r['nds_std']:.2f} | DS {ds} | "
            f"EOD NDS {r['nds_eod']:.2f} DS1 {r['ds_eod_T1']:.2f} DS10 {r['ds_eod_T10']:.2f} | "
            f"train acc NDS {r.get('nds_train_acc', float('nan')):.1f} DS1 {r.get('ds_T1_train_acc', float('nan')):.1f} "
            f"DS4 {r.get('ds_T4_train_acc', float('nan')):.1f} | "
            f"wall {r['wall_min']:.1f} min (trained {r['trained']}), all-model train {r['train_min_all']:.1f} min")


def markdown_table(path: Path) -> str:
    """The latest row of each configuration in ``path`` as a markdown table."""
    rows: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        rows[r["name"]] = r
    ts = BASE["temperatures"]
    head = (["configuration", "what changed", "teacher acc", "teacher max-p (train, T=1)", "NDS acc"]
            + [f"DS T={t:g}" for t in ts] + ["EOD NDS", "EOD DS T=1", "EOD DS T=10", "NDS / DS T=1 / DS T=4 train acc",
                                              "minutes (wall; all-model train)"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in [n for n in CONFIGS if n in rows]:
        r = rows[name]
        cells = [f"`{name}`", r["what"], f"{r['teacher_acc']:.2f}", f"{r['teacher_maxp_T1']:.3f}",
                 f"{r['nds_acc']:.2f} ± {r['nds_std']:.2f}"]
        cells += [f"{r[f'ds_acc_T{t:g}']:.2f}" for t in ts]
        cells += [f"{r['nds_eod']:.1f}", f"{r['ds_eod_T1']:.1f}", f"{r['ds_eod_T10']:.1f}"]
        cells.append(f"{r.get('nds_train_acc', float('nan')):.1f} / {r.get('ds_T1_train_acc', float('nan')):.1f} / "
                     f"{r.get('ds_T4_train_acc', float('nan')):.1f}")
        cells.append(f"{r['wall_min']:.1f}; {r['train_min_all']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", default="runs_explore", help="runs folder (default: runs_explore)")
    parser.add_argument("--data-dir", default="data", help="data folder for un-patched configurations")
    parser.add_argument("--only", default=None, help="comma-separated configuration names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the configurations and exit")
    parser.add_argument("--table", action="store_true", help="print the results so far as a markdown table and exit")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(Path(args.runs_dir) / "explore_results.jsonl"))
        return
    if args.list:
        for name, (what, overrides, patch) in CONFIGS.items():
            print(f"{name:<10} {what}  {overrides}{'  [patched renderer]' if patch else ''}")
        return
    names = list(CONFIGS) if args.only is None else args.only.split(",")
    for n in names:
        if n not in CONFIGS:
            raise SystemExit(f"unknown configuration {n!r}; known: {', '.join(CONFIGS)}")
    if sum(CONFIGS[n][2] is not None for n in names) > 1 or (len(names) > 1 and any(CONFIGS[n][2] for n in names)):
        raise SystemExit("run a patched (x_) configuration alone: the patch lasts for the process")
    torch.set_num_threads(1)
    runs_root = Path(args.runs_dir)
    runs_root.mkdir(parents=True, exist_ok=True)
    for name in names:
        row = run_config(name, runs_root, Path(args.data_dir))
        row["torch"], row["threads"] = torch.__version__, torch.get_num_threads()
        path = runs_root / "explore_results.jsonl"
        earlier = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        first = next((r for r in earlier if r["name"] == name and r["trained"] > 0), None)
        if row["trained"] == 0 and first is not None:  # everything was cached: keep the first run's cost
            row.update(refreshed=True, wall_min=first["wall_min"], cpu_min=first.get("cpu_min"), trained=first["trained"],
                       loaded=first["loaded"])
        with open(runs_root / "explore_results.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        print(format_row(row), flush=True)


if __name__ == "__main__":
    main()
