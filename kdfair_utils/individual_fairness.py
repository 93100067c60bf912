"""Individual fairness: Dwork et al.'s Lipschitz ratio and the counterfactual flip rate.

The paper measures ``I(f) = E_(x,x')[ D(f(x), f(x')) / d(x, x') ]`` over pairs of similar inputs
but states neither the pairs, nor D, nor d. Our choices (all parameters):

* pairs: counterfactual twins (Trifeature: the same image with the protected attribute changed,
  :func:`kdfair_utils.datasets.load_trifeature` ``test_cf_color``/``test_cf_texture``), or the
  ``k`` nearest neighbours in a fixed feature space (:func:`knn_pairs`; on real data, seeded
  test images with their nearest neighbour in pixel space, the pair kind :data:`NEIGHBOURS`);
* D on probability vectors: total variation ``½‖p − p'‖₁`` (default, in [0, 1]), ``l1`` or ``l2``;
* d in the fixed input space: ``l2`` = ‖x − x'‖₂ / √dim (RMS difference; pixels in [0, 1]) or
  ``cosine`` = 1 − cos(x, x'). Pairs with d = 0 are an error (the ratio is undefined).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .validation import check_int
from .distill import check_temperature
from .results import MetricSummary, summarize

OUTPUT_DISTANCES = ("tv", "l1", "l2")
INPUT_DISTANCES = ("l2", "cosine")
NEIGHBOURS = "nn"  # the pair kind of nearest-neighbour pairs in metric columns: lipschitz_nn, flip_rate_nn


def softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable softmax over the last axis (numpy); ``temperature`` finite and > 0."""
    check_temperature(temperature)
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 0 or z.shape[-1] == 0 or not np.all(np.isfinite(z)):
        raise ValueError(f"logits must be finite with a class axis, got shape {z.shape}")
    z = z / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def output_distance(p: np.ndarray, q: np.ndarray, kind: str = "tv") -> np.ndarray:
    """Distance between probability vectors along the last axis."""
    if kind not in OUTPUT_DISTANCES:
        raise ValueError(f"output distance must be one of {OUTPUT_DISTANCES}, got {kind!r}")
    diff = np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)
    if kind == "l2":
        return np.sqrt((diff**2).sum(-1))
    l1 = np.abs(diff).sum(-1)
    return 0.5 * l1 if kind == "tv" else l1


def input_distance(x: Any, x2: Any, kind: str = "l2") -> np.ndarray:
    """Distance between paired inputs ``[N, ...]`` (flattened): RMS-L2 or cosine distance."""
    if kind not in INPUT_DISTANCES:
        raise ValueError(f"input distance must be one of {INPUT_DISTANCES}, got {kind!r}")
    a = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    b = np.asarray(x2, dtype=np.float64).reshape(len(x2), -1)
    if a.shape != b.shape:
        raise ValueError(f"x and x2 differ in shape: {a.shape} vs {b.shape}")
    if kind == "l2":
        return np.sqrt(((a - b) ** 2).mean(1))
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    if np.any(na == 0) or np.any(nb == 0):
        raise ValueError("cosine distance is undefined for an all-zero input")
    return 1.0 - (a * b).sum(1) / (na * nb)


def lipschitz_ratio(probs: Any, probs2: Any, x: Any, x2: Any, *, output: str = "tv", input: str = "l2",
                    reduce: bool = True) -> np.ndarray | float:
    """Mean of D(f(x), f(x')) / d(x, x') over pairs (lower = fairer).

    ``probs``/``probs2``: probabilities ``[examples, classes]`` or ``[models, examples, classes]``
    for x and its partner x'; ``x``/``x2``: the paired inputs in the fixed space where d is taken
    (e.g. images scaled to [0, 1]). Returns one value per model (or the per-pair ratios with
    ``reduce=False``).
    """
    p, q = np.asarray(probs, dtype=np.float64), np.asarray(probs2, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"probs and probs2 differ in shape: {p.shape} vs {q.shape}")
    if p.ndim not in (2, 3):
        raise ValueError(f"probs must be [examples, classes] or [models, examples, classes], got {p.shape}")
    for name, arr in (("probs", p), ("probs2", q)):
        check_probabilities(arr, name)
    d_in = input_distance(x, x2, input)
    if len(d_in) != p.shape[-2]:
        raise ValueError(f"{len(d_in)} input pairs for {p.shape[-2]} output pairs")
    if np.any(d_in <= 0):
        raise ValueError(f"{int(np.sum(d_in <= 0))} pair(s) have input distance 0; the ratio is undefined")
    ratios = output_distance(p, q, output) / d_in
    if not reduce:
        return ratios
    out = ratios.mean(-1)
    return float(out) if np.ndim(out) == 0 else out


def check_probabilities(probs: np.ndarray, name: str = "probs", atol: float = 1e-4) -> None:
    """``ValueError`` unless every row is a probability vector (entries in [0, 1] summing to 1
    within ``atol``): logits passed where probabilities belong give a meaningless ratio."""
    if not np.all(np.isfinite(probs)):
        raise ValueError(f"{name} contain NaN or inf")
    if probs.min() < -atol or probs.max() > 1 + atol or np.abs(probs.sum(-1) - 1).max() > atol:
        raise ValueError(f"{name} must be probabilities (rows in [0, 1] summing to 1), got values in "
                         f"[{probs.min():.3g}, {probs.max():.3g}] with row sums up to {probs.sum(-1).max():.3g}; "
                         "pass softmax(logits), not logits")


def flip_rate(preds: Any, preds2: Any) -> np.ndarray | float:
    """Share of pairs whose predicted class differs (per model for ``[models, examples]``)."""
    a, b = np.asarray(preds), np.asarray(preds2)
    if a.shape != b.shape:
        raise ValueError(f"preds and preds2 differ in shape: {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("preds is empty")
    out = (a != b).mean(-1)
    return float(out) if np.ndim(out) == 0 else out


def knn_pairs(features: Any, k: int = 1, *, metric: str = "l2", exclude_identical: bool = True,
              queries: Any = None, chunk: int = 4096) -> np.ndarray:
    """Index pairs ``[<= Q*k, 2]``: each query example with its ``k`` nearest neighbours among all
    of ``features`` (queries: every example by default, or the given row indices).

    An example is never paired with itself; exact duplicates (distance 0) are skipped when
    ``exclude_identical``, so every pair has a defined ratio, and an example with fewer than
    ``k`` such neighbours contributes fewer pairs. ``features`` may be a memory-mapped array:
    it is read ``chunk`` rows at a time, so ImageNet's validation set never sits in memory as floats.
    """
    if not hasattr(features, "shape"):  # a list: arrays and memmaps are read as they are
        features = np.asarray(features)
    n = len(features)
    if metric not in INPUT_DISTANCES:
        raise ValueError(f"metric must be one of {INPUT_DISTANCES}, got {metric!r}")
    check_int(k, "k", minimum=1, maximum=n - 1)
    check_int(chunk, "chunk", minimum=1)
    rows = np.arange(n) if queries is None else np.asarray(queries)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer) or (len(rows) and (rows.min() < 0 or rows.max() >= n)):
        raise ValueError(f"queries must be row indices in [0, {n}), got {queries!r}")

    def block(idx: Any) -> np.ndarray:
        f = np.asarray(features[idx], dtype=np.float64).reshape(-1, int(np.prod(np.shape(features)[1:])))
        if metric != "cosine":
            return f
        norm = np.linalg.norm(f, axis=1, keepdims=True)
        if not norm.all():
            raise ValueError("cosine distance is undefined for an all-zero input (e.g. a black image); use metric='l2'")
        return f / norm

    q = block(rows)
    sq_q = (q**2).sum(1)
    best = np.full((len(rows), k), np.inf)
    best_idx = np.zeros((len(rows), k), dtype=np.int64)
    for lo in range(0, n, chunk):
        f = block(slice(lo, min(lo + chunk, n)))
        if metric == "cosine":
            dist, scale = 1.0 - q @ f.T, 2.0
        else:
            sq = (f**2).sum(1)
            dist = np.maximum(sq_q[:, None] + sq[None] - 2 * q @ f.T, 0.0)
            scale = sq_q[:, None] + sq[None]
        cols = np.arange(lo, lo + len(f))
        dist[rows[:, None] == cols[None]] = np.inf  # never an example with itself
        if exclude_identical:  # the Gram trick rounds with the vectors' size: a relative tolerance
            dist[dist <= 1e-9 * scale + 1e-300] = np.inf
        both = np.concatenate([best, dist], axis=1)
        both_idx = np.concatenate([best_idx, np.broadcast_to(cols, dist.shape)], axis=1)
        order = np.argsort(both, axis=1, kind="stable")[:, :k]  # ties: the lower index, as one full sort
        best, best_idx = np.take_along_axis(both, order, 1), np.take_along_axis(both_idx, order, 1)
    pairs = np.stack([np.repeat(rows, k), best_idx.ravel()], axis=1)
    valid = np.isfinite(best.ravel())
    if exclude_identical and valid.any():  # and never two identical vectors, checked exactly
        a, b = pairs[valid, 0], pairs[valid, 1]
        same = np.all(np.asarray(features[a]) == np.asarray(features[b]), axis=tuple(range(1, np.ndim(features))))
        valid[np.flatnonzero(valid)[same]] = False
    if not valid.any():
        raise ValueError("no pair of distinct examples: every example is identical to all others")
    return pairs[valid]


def neighbour_queries(n: int, count: int, seed: int) -> np.ndarray:
    """The ``count`` test images (sorted row indices, seeded) whose nearest neighbour forms a
    pair for the Lipschitz ratio on data sets without counterfactual twins; all when ``count >= n``."""
    check_int(count, "count", minimum=1)
    if count >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))


def summaries(table: Any, pair_kinds: Sequence[str], *, experiment: str = "main") -> list[MetricSummary]:
    """Lipschitz ratio and flip rate of every population for each kind of pairs (a twin attribute,
    or :data:`NEIGHBOURS`), from a per-model table (:meth:`~kdfair_utils.grid.GridResult.table`):
    the records notebook 05 writes."""
    return [summarize(table, metric, a, experiment=experiment) for a in pair_kinds
            for metric in ("lipschitz", "flip_rate")]


def pair_label(kind: str) -> str:
    """How figures and tables name a kind of pairs: ``colour twins``, ``nearest neighbours``."""
    return "nearest neighbours" if kind == NEIGHBOURS else f"{'colour' if kind == 'color' else kind} twins"
