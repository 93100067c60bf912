"""Training throughput of the text models on this machine, and the hatexplain_tiny grid's cost.

Synthetic posts (random words, 10-40 per post, a WordPiece vocabulary built on them) are cut and
padded to the profile's ``max_length``; one epoch of each model is timed: the BERT-tiny teacher,
the DistilBERT-tiny NDS (cross-entropy) and a DS (KD from cached teacher logits). The projection
scales these rates by the ``hatexplain_tiny`` profile's grid on HateXplain's 15,383 training posts.

Usage: python benchmarks/bench_text.py [--posts 4096]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from kdfair_utils import text_models as tm
from kdfair_utils.distill import KDLoss
from kdfair_utils.experiments import get_profile

TRAIN_POSTS = 15_383  # HateXplain's training division


def rates(posts: int) -> dict[str, float]:
    """Posts per second of one training epoch: teacher, NDS and DS of the hatexplain_tiny profile."""
    grid = get_profile("hatexplain_tiny").main
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(5000)]
    texts = [" ".join(rng.choice(words, size=rng.integers(10, 41))) for _ in range(posts)]
    labels = rng.integers(0, 2, posts)
    tokenizer = tm.train_wordpiece(texts, grid.data_options["vocab_size"])
    ids, mask = tm.encode(tokenizer, texts, grid.data_options["max_length"])
    recipe = grid.student_train.replace({"epochs": 1})
    out, teacher_logits = {}, None
    for role, arch in (("teacher", grid.teacher), ("nds", grid.student), ("ds", grid.student)):
        torch.manual_seed(0)
        model = tm.build_text_model(arch, 2, vocab_size=len(tokenizer), max_length=ids.shape[1])
        distil = {"teacher_logits": teacher_logits, "kd": KDLoss(4.0, grid.alpha)} if role == "ds" else {}
        start = time.perf_counter()
        tm.train_text_model(model, ids, mask, labels, recipe, seed=0, progress=False, **distil)
        out[role] = posts / (time.perf_counter() - start)
        if role == "teacher":
            teacher_logits = tm.predict_text_logits(model, ids, mask)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=4096, help="synthetic posts per timed epoch (default 4096)")
    args = parser.parse_args()
    if args.posts < 2:
        parser.error(f"--posts must be >= 2, got {args.posts}")
    grid = get_profile("hatexplain_tiny").main
    r = rates(args.posts)
    print(f"train posts/s ({torch.get_num_threads()} threads, {grid.data_options['max_length']} tokens): "
          + ", ".join(f"{k} {v:.0f}" for k, v in r.items()) + f"; DS / NDS {r['ds'] / r['nds']:.2f}x")
    epochs_t, epochs_s = grid.teacher_train.epochs, grid.student_train.epochs
    seconds = TRAIN_POSTS * (len(grid.teacher_seeds) * epochs_t / r["teacher"] + len(grid.seeds) * epochs_s / r["nds"]
                             + len(grid.seeds) * len(grid.temperatures) * epochs_s / r["ds"])
    models = len(grid.teacher_seeds) + len(grid.seeds) * (1 + len(grid.temperatures))
    print(f"hatexplain_tiny grid ({models} models, {TRAIN_POSTS:,} posts): projected {seconds / 60:.1f} min of training")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
