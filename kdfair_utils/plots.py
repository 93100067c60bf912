"""Figures of the series (matplotlib; every function returns the Figure)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .datasets import Dataset


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _split(data: Dataset, split: str):
    """``data``'s split named ``split`` (``train`` or an evaluation split)."""
    s = data.eval_splits().get(split, data.train if split == "train" else None)
    if s is None:
        raise ValueError(f"unknown split {split!r}")
    return s


def trifeature_gallery(data: Dataset, *, rows: str = "shape", cols: str = "color", split: str = "train",
                       size: float = 0.9):
    """One example per (rows value, cols value), e.g. every shape in every colour."""
    plt = _plt()
    s = _split(data, split)
    for name in (rows, cols):
        if name not in s.attributes:
            raise ValueError(f"unknown attribute {name!r}; known: {', '.join(s.attributes)}")
    r_names, c_names = data.attribute_values[rows], data.attribute_values[cols]
    fig, axes = plt.subplots(len(r_names), len(c_names), figsize=(size * len(c_names), size * len(r_names)),
                             squeeze=False)
    for i in range(len(r_names)):
        for j in range(len(c_names)):
            ax = axes[i, j]
            hit = np.flatnonzero((s.attributes[rows] == i) & (s.attributes[cols] == j))
            if hit.size:
                ax.imshow(s.images[hit[0]].transpose(1, 2, 0), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(r_names[i], rotation=0, ha="right", va="center", fontsize=8)
            if i == 0:
                ax.set_title(c_names[j], fontsize=8)
    fig.suptitle(f"Trifeature: {rows} (rows) × {cols} (columns)")
    fig.tight_layout()
    return fig


def class_gallery(data: Dataset, *, per_class: int = 6, max_classes: int = 10, split: str = "train",
                  size: float = 1.0):
    """The first ``per_class`` images of each of the first ``max_classes`` classes, one row per
    class (for data sets without Trifeature's generating factors)."""
    plt = _plt()
    s = _split(data, split)
    shown = range(min(max_classes, data.num_classes))
    fig, axes = plt.subplots(len(shown), per_class, figsize=(size * per_class, size * len(shown)), squeeze=False)
    for i in shown:
        hits = np.flatnonzero(np.asarray(s.labels) == i)[:per_class]
        for j in range(per_class):
            ax = axes[i, j]
            if j < len(hits):
                ax.imshow(np.asarray(s.images[hits[j]]).transpose(1, 2, 0), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(data.class_names[i], rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"{data.name} ({data.label}): {len(shown)} of {data.num_classes} classes, {split} split")
    fig.tight_layout()
    return fig


def soft_targets_plot(logits: Sequence[float], temperatures: Sequence[float], class_names: Sequence[str],
                      top: int = 20):
    """softmax(z / T) of one example for several T: higher T flattens the distribution. With more
    than ``top`` classes, the ``top`` classes of the largest logits are shown (their share of the
    probability in the title)."""
    from .individual_fairness import softmax

    plt = _plt()
    z = np.asarray(logits, dtype=float)
    shown = np.argsort(-z, kind="stable")[:top] if len(z) > top else np.arange(len(z))
    fig, axes = plt.subplots(1, len(temperatures), figsize=(2.6 * len(temperatures), 2.6), sharey=True)
    for ax, t in zip(np.atleast_1d(axes), temperatures):
        p = softmax(z[None], t)[0]
        ax.bar(range(len(shown)), p[shown], color="C0")
        ax.set_title(f"T = {t:g}" + (f" (top {len(shown)}: {p[shown].sum():.0%})" if len(shown) < len(z) else ""),
                     fontsize=9)
        ax.set_xticks(range(len(shown)), [class_names[i] for i in shown], rotation=90, fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel("probability")
    fig.tight_layout()
    return fig


def _reference_lines(ax, refs: dict[str, float] | None) -> None:
    for k, (name, value) in enumerate((refs or {}).items()):
        ax.axhline(value, ls="--", color=f"C{k + 1}", label=name)


def metric_vs_temperature(table: Any, *, metric: str, ylabel: str | None = None,
                          refs: dict[str, float] | None = None, std: str | None = None, ax=None):
    """Mean (± std band) of ``metric`` against T for the DS rows of ``table`` (columns T, metric
    and optionally ``std``); ``refs`` draws horizontal lines, e.g. the teacher and NDS means."""
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.2))
    t = np.asarray(table["T"], dtype=float)
    y = np.asarray(table[metric], dtype=float)
    ax.plot(t, y, "o-", color="C0", label="distilled student")
    if std is not None:
        s = np.asarray(table[std], dtype=float)
        ax.fill_between(t, y - s, y + s, color="C0", alpha=0.2)
    _reference_lines(ax, refs)
    ax.set_xlabel("temperature T")
    ax.set_ylabel(ylabel or metric)
    if t.max() / max(t.min(), 1e-9) > 15:
        ax.set_xscale("log")
        ax.set_xticks(t, [f"{v:g}" for v in t])
    ax.legend(fontsize=8)
    return fig or ax.figure


def summary_vs_temperature(summary: Any, *, ylabel: str | None = None, ax=None):
    """A :class:`~kdfair_utils.results.MetricSummary` against T: the distilled students' mean ± std
    band, and the teacher's and the NDS's means as dashed reference lines (the paper's Fig. 4)."""
    frame = summary.frame()
    refs = {name: float(frame.loc[frame.role == role, "mean"].iloc[0])
            for role, name in (("teacher", "teacher"), ("nds", "NDS")) if (frame.role == role).any()}
    label = ylabel or f"{summary.metric}" + (f" ({summary.unit})" if summary.unit else "") + (
        f", {summary.attribute}" if summary.attribute else "")
    return metric_vs_temperature(frame[frame.role == "ds"], metric="mean", std="std", ylabel=label, refs=refs, ax=ax)


def counts_vs_temperature(table: Any, *, null_expected: float | None = None, tc_null_expected: float | None = None,
                          n_classes: int | None = None, title: str = ""):
    """#SC and #TC (raw and BH) against T — the paper's Fig. 3 — with the chance level of each
    (``null_expected`` for #SC, ``tc_null_expected`` for #TC) and, where the table has it
    (``SC_accuracy_only``), the #SC an accuracy change alone would give."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.2, 3.4))
    for col, style, label in (("SC_raw", "o-C0", "#SC raw (NDS vs DS)"), ("SC_bh", "o--C0", "#SC BH"),
                              ("SC_accuracy_only", "^:C2", "#SC from accuracy alone"),
                              ("TC_raw", "s-C3", "#TC raw (teacher vs DS)"), ("TC_bh", "s--C3", "#TC BH")):
        if col in table:
            ax.plot(table["T"], table[col], style[:-2], color=style[-2:], label=label)
    if null_expected is not None:
        ax.axhline(null_expected, color="C0", ls=":", lw=0.8, label=f"#SC chance ≈ {null_expected:.1f}")
    if tc_null_expected is not None:
        ax.axhline(tc_null_expected, color="C3", ls=":", lw=0.8, label=f"#TC chance ≈ {tc_null_expected:.1f}")
    ax.set_xlabel("temperature T")
    ax.set_ylabel("significant classes" + (f" (of {n_classes})" if n_classes else ""))
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def fairness_vs_accuracy(table: Any, *, metric: str = "eod", attribute: str = "color", ax=None):
    """Every model's ``metric`` (%) against its accuracy (filled), beside its zero-disparity
    reference (hollow, with the 95 % band of the shuffles as a vertical bar): where the two
    overlap, the disparity is what the error rate produces without any group effect. ``table``
    is a per-model table with the reference columns (``table(reference_draws=...)``)."""
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.6, 3.8))
    temps = sorted(set(table.loc[table.role == "ds", "T"]))
    colors = {("teacher", None): "C3", ("nds", None): "C1"}
    colors.update({("ds", t): plt.cm.viridis(i / max(1, len(temps) - 1)) for i, t in enumerate(temps)})
    for (role, t), color in colors.items():
        rows = table[(table.role == role) & ((table["T"] == t) if t is not None else table["T"].isna())]
        x = rows["accuracy"].to_numpy()
        ref, lo, hi = (rows[f"{metric}{part}_{attribute}"].to_numpy() for part in ("_ref", "_ref_low", "_ref_high"))
        label = {"teacher": "teacher", "nds": "NDS"}.get(role) or f"DS@T={t:g}"
        ax.scatter(x, rows[f"{metric}_{attribute}"], color=color, s=18, label=label)
        ax.errorbar(x, ref, yerr=np.vstack([ref - lo, hi - ref]), fmt="o", mfc="none", color=color, ms=4, lw=0.6)
    ax.set_xlabel("accuracy (%)")
    ax.set_ylabel(f"{metric.upper()} (%), {attribute}")
    ax.set_title(f"{metric.upper()}: observed (filled) vs zero-disparity reference (hollow)", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    return fig or ax.figure


def disagreement_heatmap(matrix: np.ndarray, class_names: Sequence[str], *, title: str = "",
                         xlabel: str = "other model", ylabel: str = "teacher", ax=None):
    """Off-diagonal disagreement counts (the paper's Fig. 2); class names label the axes up to
    30 classes (beyond, the axes count classes)."""
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 3.8))
    im = ax.imshow(matrix, cmap="viridis", interpolation="nearest")
    if len(class_names) <= 30:
        ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel), ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    return fig or ax.figure


def class_effect_plot(table: Any, *, title: str = "", max_classes: int | None = None):
    """Per-class difference of normalised accuracy with 95 % Welch intervals, sorted; the
    significant classes (raw p < α) in red. Every class by default; with ``max_classes``, the
    ``max_classes // 2`` largest effects each way, and the title says so."""
    plt = _plt()
    t = table.sort_values("diff").reset_index(drop=True)
    n = len(t)
    if max_classes is not None and n > max_classes:
        t = t.iloc[np.r_[0: max_classes // 2, n - max_classes // 2: n]].reset_index(drop=True)
        title = f"{title} ({max_classes // 2} largest effects each way, of {n} classes)"
    else:
        title = f"{title} (all {n} classes)"
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.13 * len(t))))
    colors = np.where(t["significant"].fillna(False), "C3", "C0")
    err = np.vstack([t["diff"] - t["ci_low"], t["ci_high"] - t["diff"]])
    for i in range(len(t)):
        ax.errorbar(t["diff"][i], i, xerr=err[:, i: i + 1], fmt="o", color=colors[i], ms=3)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(t)), t["class"], fontsize=5 if len(t) > 50 else 6)
    ax.set_xlabel("difference of normalised class accuracy (B − A)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig, path_stem: Any) -> None:
    """Save as PNG and SVG beside each other."""
    from pathlib import Path

    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(stem.with_suffix(".png"), dpi=120, bbox_inches="tight")
    fig.savefig(stem.with_suffix(".svg"), bbox_inches="tight")
