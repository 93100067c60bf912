"""Grid training speed, measured in one run: three ways to train the same students.

(a) **naive** — one model at a time, the teacher run on every batch (as common KD code does), fp32;
(b) **one-at-a-time** — the package's path before population training: one model at a time,
    the teacher's training-set logits computed once and sliced per batch, fp32;
(c) **population** — :func:`kdfair_utils.population.train_population`: the grid's chunks of
    students packed into one network, at the default precision (bf16 autocast on CUDA and on CPUs
    with native bf16, else fp32); (c') the same in fp32, so the precision's share of the gain shows.

Workloads: the quick profile's students (LeNet-5, distilled from a ResNet-20, Trifeature 32×32,
no augmentation) and a CIFAR-100-shaped slice (ResNet-56 → ResNet-20, 100 classes, synthetic
32×32 images, flip + 4-pixel translate, so the teacher must run on each augmented batch: the
population shares one teacher forward per batch stream). Throughput is model-images per second
(images × epochs × models / seconds), each path after an untimed warm-up; (a) and (b) are timed
on a sample of the models (their cost is linear in the number of models), (c) on all of them.
The weights are random: speed does not depend on them.

The last line, for the quick grid's students, reads
``speed-up vs naive: <N>x, vs one-at-a-time: <M>x``.

Usage: python benchmarks/bench_grid.py [--epochs 2] [--sample 3] [--device auto] [--reduced]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _students(grid, data):
    from kdfair_utils.distill import KDLoss
    from kdfair_utils.grid import _initial_model, model_specs

    specs = [s for s in model_specs(grid) if s.role != "teacher"]
    kds = [None if s.temperature is None else KDLoss(s.temperature, grid.alpha, grid.t2_scaling) for s in specs]
    return specs, kds, lambda spec: _initial_model(spec, data)


def measure(grid, data, teacher_arch: str, *, epochs: int, sample: int, device: str, population_size: int,
            label: str) -> dict[str, float]:
    """Model-images per second of each path for ``grid``'s students on ``data``."""
    from kdfair_utils.grid import chunks
    from kdfair_utils.models import build_model
    from kdfair_utils.population import Member, train_population
    from kdfair_utils.train import predict_logits, seed_everything, train_model, with_normalization

    recipe = grid.student_train.replace({"epochs": epochs})
    images, labels = data.train.images, data.train.labels
    seed_everything(12345)
    teacher = with_normalization(build_model(teacher_arch, data.num_classes, image_size=data.image_shape[1]), images)
    augmented = recipe.augment != "none"
    logits = None if augmented else predict_logits(teacher, images, device=device, precision="fp32")
    specs, kds, build = _students(grid, data)
    per_model = len(images) * epochs

    def one(spec, kd, *, naive: bool, recipe=recipe, imgs=images, lbls=labels, teacher_logits=logits):
        source = {} if kd is None else ({"teacher": teacher} if naive or augmented else {"teacher_logits": teacher_logits})
        train_model(build(spec), imgs, lbls, recipe, seed=spec.seed, device=device, progress=False,
                    precision="fp32", kd=kd, **source)

    def population(chosen, precision, recipe=recipe, imgs=images, lbls=labels, teacher_logits=logits):
        for chunk in chunks(chosen, population_size):
            members = [Member(s.seed, kd, **({} if kd is None else ({"teacher": teacher} if augmented else
                                                                    {"teacher_logits": teacher_logits})))
                       for s, kd in ((s, kds[specs.index(s)]) for s in chunk)]
            train_population([build(s) for s in chunk], members, imgs, lbls, recipe, device=device,
                             progress=False, precision=precision)

    # warm-up: kernels and their primitives are created on first use
    warm = recipe.replace({"epochs": 1})
    few = slice(0, min(len(images), 2 * recipe.batch_size))
    warm_logits = None if logits is None else logits[few]
    ds = next(i for i, kd in enumerate(kds) if kd is not None)
    one(specs[ds], kds[ds], naive=True, recipe=warm, imgs=images[few], lbls=labels[few], teacher_logits=warm_logits)
    one(specs[ds], kds[ds], naive=False, recipe=warm, imgs=images[few], lbls=labels[few], teacher_logits=warm_logits)
    for precision in ("auto", "fp32"):
        population(specs[:population_size], precision, recipe=warm, imgs=images[few], lbls=labels[few],
                   teacher_logits=warm_logits)

    picked = [i for i, kd in enumerate(kds) if kd is not None][:sample]  # DS: the teacher's cost counts
    rates = {}
    seconds = sum(_timed(lambda i=i: one(specs[i], kds[i], naive=True)) for i in picked)
    rates["naive"] = per_model * len(picked) / seconds
    if not augmented:  # with augmentation the package always ran the teacher per batch: (b) is (a)
        seconds = sum(_timed(lambda i=i: one(specs[i], kds[i], naive=False)) for i in picked)
        rates["one-at-a-time"] = per_model * len(picked) / seconds
    for name, precision in (("population", "auto"), ("population fp32", "fp32")):
        rates[name] = per_model * len(specs) / _timed(lambda p=precision: population(specs, p))
    base = rates.get("one-at-a-time", rates["naive"])
    print(f"\n{label}: {len(specs)} students ({grid.student}), teacher {teacher_arch}, {len(images)} images "
          f"{data.image_shape[1]}x{data.image_shape[2]}, {data.num_classes} classes, augment {recipe.augment}, "
          f"{epochs} epochs; naive/one-at-a-time timed on {len(picked)} DS")
    print(f"{'path':<18}{'model-img/s':>14}{'vs naive':>10}{'vs one-at-a-time':>18}")
    for name, rate in rates.items():
        print(f"{name:<18}{rate:>14,.0f}{rate / rates['naive']:>9.2f}x{rate / base:>17.2f}x")
    return rates


def _cifar100_slice(n: int, reduced: bool):
    """A CIFAR-100-shaped grid slice on synthetic images of the real shape."""
    from kdfair_utils.datasets import Dataset, Split
    from kdfair_utils.grid import GridConfig
    from kdfair_utils.train import TrainConfig

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 100, n)
    split = Split(images, labels, {})
    data = Dataset("cifar100-shaped", "fine", tuple(str(i) for i in range(100)), {}, split, split)
    grid = GridConfig(teacher="resnet8" if reduced else "resnet56", student="resnet8" if reduced else "resnet20",
                      student_train=TrainConfig(batch_size=64 if reduced else 128, augment="flip_translate"),
                      seeds=(0, 1), temperatures=(2, 4), teacher_seeds=(0,))
    return grid, data


def main() -> None:
    from kdfair_utils.checks import check_device
    from kdfair_utils.datasets import load_dataset
    from kdfair_utils.experiments import get_profile
    from kdfair_utils.grid import POPULATION_SIZE
    from kdfair_utils.train import resolve_precision

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2, help="epochs timed per model (default 2)")
    ap.add_argument("--sample", type=int, default=3, help="DS timed one at a time by (a) and (b) (default 3)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--population-size", type=int, default=POPULATION_SIZE)
    ap.add_argument("--data-dir", default=None, help="where the Trifeature data are cached")
    ap.add_argument("--reduced", action="store_true", help="tiny sizes (a smoke test, not a measurement)")
    a = ap.parse_args()
    device = str(check_device(a.device))
    profile = get_profile("quick")
    grid = profile.main
    if a.reduced:
        grid = grid.replace(**{"data_options.image_size": 16, "data_options.per_combination": 1, "seeds": (0, 1),
                               "data_options.test_per_combination": 0, "data_options.twins_per_combination": 0,
                               "temperatures": (2, 4), "student_train.batch_size": 64})
    data = load_dataset(grid.dataset, grid.label, data_dir=a.data_dir, **grid.data_options)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, population precision "
          f"{resolve_precision('auto', device)}, population size {a.population_size}")
    cgrid, cdata = _cifar100_slice(128 if a.reduced else 512, a.reduced)
    measure(cgrid, cdata, cgrid.teacher, epochs=1, sample=1, device=device, population_size=a.population_size,
            label="CIFAR-100-shaped slice")
    rates = measure(grid, data, grid.teacher, epochs=a.epochs, sample=a.sample, device=device,
                    population_size=a.population_size, label="quick grid")
    print(f"speed-up vs naive: {rates['population'] / rates['naive']:.1f}x, "
          f"vs one-at-a-time: {rates['population'] / rates['one-at-a-time']:.1f}x")


if __name__ == "__main__":
    main()
