"""Does ``torch.compile`` pay for population training? Eager against compiled, measured in one run.

Packed populations of LeNet-5 (10 classes, no augmentation) and ResNet-20 (100 classes,
flip + translate), synthetic 32×32 images, the default precision of the device. Each path is
timed after a warm-up epoch (which, compiled, includes the compilation: printed separately).

Usage: python benchmarks/bench_compile.py [--device auto] [--members 8] [--images 3000] [--reduced]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def rate(arch: str, classes: int, augment: str, *, members: int, images: int, epochs: int, device: str,
         compiled: bool) -> tuple[float, float]:
    """(seconds of the warm-up epoch, timed model-images/s)."""
    from kdfair_utils.models import build_model
    from kdfair_utils.population import Member, train_population
    from kdfair_utils.train import TrainConfig, seed_everything, with_normalization

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (images, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, classes, images)

    def run(n_epochs: int) -> float:
        models = []
        for i in range(members):
            seed_everything(i)
            models.append(with_normalization(build_model(arch, classes), x))
        cfg = TrainConfig(epochs=n_epochs, batch_size=128, augment=augment, grad_clip=20.0)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        train_population(models, [Member(i) for i in range(members)], x, y, cfg, device=device, progress=False,
                         compile=compiled)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    warm = run(1)
    return warm, members * images * epochs / run(epochs)


def main() -> None:
    from kdfair_utils.validation import check_device
    from kdfair_utils.train import resolve_precision

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--reduced", action="store_true", help="LeNet-5 only, tiny sizes (a smoke test)")
    a = ap.parse_args()
    device = str(check_device(a.device))
    print(f"device {device}, torch {torch.__version__}, precision {resolve_precision('auto', device)}, "
          f"{a.members} models per population, {a.images} images, {a.epochs} timed epochs")
    cases = [("lenet5", 10, "none")] + ([] if a.reduced else [("resnet20", 100, "flip_translate")])
    print(f"{'population':<12}{'eager img/s':>14}{'compiled img/s':>16}{'compile s':>11}{'compiled/eager':>16}")
    for arch, classes, augment in cases:
        common = {"members": a.members, "images": a.images, "epochs": a.epochs, "device": device}
        _, eager = rate(arch, classes, augment, compiled=False, **common)
        warm, compiled = rate(arch, classes, augment, compiled=True, **common)
        print(f"{arch:<12}{eager:>14,.0f}{compiled:>16,.0f}{warm:>11.1f}{compiled / eager:>15.2f}x")


if __name__ == "__main__":
    main()
