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
(images × epochs × models / seconds) of training, each path after an untimed warm-up and with
its models built (seeded, as the grid builds them) before its clock starts; (a) and (b) are
timed on a sample of the distilled students (their cost is linear in the number of models), (c)
on all of them, in the grid's chunks.
The weights are random: speed does not depend on them.

The last line, for the quick grid's students, reads
``speed-up vs naive: <N>x, vs one-at-a-time: <M>x``.

Usage: python benchmarks/bench_grid.py [--epochs 4] [--sample 3] [--device auto] [--reduced]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def measure(grid, data, teacher_arch: str, *, epochs: int, sample: int, device: str, population_size: int,
            label: str) -> dict[str, float]:
    """Model-images per second of each path for ``grid``'s students on ``data``; every model is
    built (seeded initial weights, as the grid builds them) before its path's clock starts."""
    from kdfair_utils.distill import KDLoss
    from kdfair_utils.grid import _initial_model, chunks, model_specs
    from kdfair_utils.models import build_model
    from kdfair_utils.population import Member, train_population
    from kdfair_utils.train import channel_stats, predict_logits, seed_everything, train_model, with_normalization

    recipe = grid.student_train.replace({"epochs": epochs})
    images, labels = data.train.images, data.train.labels
    stats = channel_stats(images)
    seed_everything(12345)
    teacher = with_normalization(build_model(teacher_arch, data.num_classes, image_size=data.image_shape[1]), images)
    augmented = recipe.augment != "none"
    logits = None if augmented else predict_logits(teacher, images, device=device, precision="fp32")
    specs = [s for s in model_specs(grid) if s.role != "teacher"]
    kds = [None if s.temperature is None else KDLoss(s.temperature, grid.alpha, grid.t2_scaling) for s in specs]

    def source(i, naive):
        if kds[i] is None:
            return {}
        return {"teacher": teacher} if naive or augmented else {"teacher_logits": logits}

    def one_at_a_time(chosen, naive, recipe=recipe, few=slice(None)):
        models = [_initial_model(specs[i], data, stats) for i in chosen]
        start = time.perf_counter()
        for i, model in zip(chosen, models):
            extra = source(i, naive)
            if "teacher_logits" in extra:
                extra["teacher_logits"] = extra["teacher_logits"][few]
            train_model(model, images[few], labels[few], recipe, seed=specs[i].seed, device=device, progress=False,
                        precision="fp32", kd=kds[i], **extra)
        return time.perf_counter() - start

    def population(chosen, precision, recipe=recipe, few=slice(None)):
        parts = chunks([specs[i] for i in chosen], population_size)
        built = [[_initial_model(s, data, stats) for s in part] for part in parts]
        start = time.perf_counter()
        for part, models in zip(parts, built):
            members = []
            for s in part:
                extra = source(specs.index(s), False)
                if "teacher_logits" in extra:
                    extra["teacher_logits"] = extra["teacher_logits"][few]
                members.append(Member(s.seed, kds[specs.index(s)], **extra))
            train_population(models, members, images[few], labels[few], recipe, device=device, progress=False,
                             precision=precision)
        return time.perf_counter() - start

    # warm-up: kernels and their primitives are created on first use
    warm, few = recipe.replace({"epochs": 1}), slice(0, min(len(images), 2 * recipe.batch_size))
    ds = [i for i, kd in enumerate(kds) if kd is not None]
    one_at_a_time(ds[:1], True, warm, few)
    one_at_a_time(ds[:1], False, warm, few)
    for precision in ("auto", "fp32"):
        population(list(range(min(len(specs), population_size))), precision, warm, few)

    picked = ds[:sample]  # DS: the teacher's cost counts
    per_model = len(images) * epochs
    rates = {"naive": per_model * len(picked) / one_at_a_time(picked, True)}
    if not augmented:  # with augmentation the package always ran the teacher per batch: (b) is (a)
        rates["one-at-a-time"] = per_model * len(picked) / one_at_a_time(picked, False)
    everyone = list(range(len(specs)))
    for name, precision in (("population", "auto"), ("population fp32", "fp32")):
        rates[name] = per_model * len(specs) / population(everyone, precision)
    base = rates.get("one-at-a-time", rates["naive"])
    print(f"\n{label}: {len(specs)} students ({grid.student}), teacher {teacher_arch}, {len(images)} images "
          f"{data.image_shape[1]}x{data.image_shape[2]}, {data.num_classes} classes, augment {recipe.augment}, "
          f"{epochs} epoch(s); naive/one-at-a-time timed on {len(picked)} DS; chunks of <= {population_size}")
    both = "one-at-a-time" in rates  # with augmentation (b) is (a): one column
    print(f"{'path':<18}{'model-img/s':>14}{'vs naive':>10}" + (f"{'vs one-at-a-time':>18}" if both else ""))
    for name, rate in rates.items():
        print(f"{name:<18}{rate:>14,.0f}{rate / rates['naive']:>9.2f}x" + (f"{rate / base:>17.2f}x" if both else ""))
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
    from kdfair_utils.validation import check_device
    from kdfair_utils.datasets import load_dataset
    from kdfair_utils.experiments import get_profile
    from kdfair_utils.grid import default_population_size
    from kdfair_utils.train import resolve_precision

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4, help="epochs timed per model (default 4)")
    ap.add_argument("--sample", type=int, default=3, help="DS timed one at a time by (a) and (b) (default 3)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--population-size", type=int, default=None, help="default: the grid's for this device")
    ap.add_argument("--data-dir", default=None, help="where the Trifeature data are cached")
    ap.add_argument("--reduced", action="store_true", help="tiny sizes (a smoke test, not a measurement)")
    a = ap.parse_args()
    device = str(check_device(a.device))
    size = a.population_size or default_population_size(device)
    profile = get_profile("quick")
    grid = profile.main
    if a.reduced:
        grid = grid.replace(**{"data_options.image_size": 16, "data_options.per_combination": 1, "seeds": (0, 1),
                               "data_options.test_per_combination": 0, "data_options.twins_per_combination": 0,
                               "temperatures": (2, 4), "student_train.batch_size": 64})
    data = load_dataset(grid.dataset, grid.label, data_dir=a.data_dir, **grid.data_options)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, population precision "
          f"{resolve_precision('auto', device)}, population size {size}")
    cgrid, cdata = _cifar100_slice(128 if a.reduced else 512, a.reduced)
    measure(cgrid, cdata, cgrid.teacher, epochs=1, sample=1, device=device, population_size=size,
            label="CIFAR-100-shaped slice")
    rates = measure(grid, data, grid.teacher, epochs=a.epochs, sample=a.sample, device=device,
                    population_size=size, label="quick grid")
    print(f"speed-up vs naive: {rates['population'] / rates['naive']:.1f}x, "
          f"vs one-at-a-time: {rates['population'] / rates['one-at-a-time']:.1f}x")


if __name__ == "__main__":
    main()
