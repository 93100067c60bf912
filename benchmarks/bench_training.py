"""Training and inference throughput (images/s) of each model on this machine.

Usage: python benchmarks/bench_training.py [--models resnet20 lenet5 ...] [--image-size 32] [--device auto]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.nn import functional as F


def bench(name: str, size: int, batch: int, steps: int, device: torch.device) -> tuple[float, float, int]:
    from kdfair_utils.models import build_model, count_parameters

    model = build_model(name, 10, image_size=size).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    model.train()
    times = []
    for i in range(steps + 2):
        sync()
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    train = batch / float(np.median(times))
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(steps + 2):
            sync()
            t0 = time.perf_counter()
            model(x)
            sync()
            if i >= 2:
                times.append(time.perf_counter() - t0)
    return train, batch / float(np.median(times)), count_parameters(model)


def main() -> None:
    from kdfair_utils.train import resolve_device

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", nargs="+", default=["lenet5", "resnet8", "resnet20", "resnet56", "resnet18"])
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    device = resolve_device(a.device)
    print(f"device {device}, {torch.get_num_threads()} threads, {a.image_size}x{a.image_size}, batch {a.batch_size}, "
          f"median of {a.steps} steps")
    print(f"{'model':<12}{'params':>12}{'train img/s':>14}{'infer img/s':>14}")
    for name in a.models:
        train, infer, params = bench(name, a.image_size, a.batch_size, a.steps, device)
        print(f"{name:<12}{params:>12,}{train:>14,.0f}{infer:>14,.0f}")


if __name__ == "__main__":
    main()
