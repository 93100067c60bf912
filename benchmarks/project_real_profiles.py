"""An upper bound on the GPU hours of the real-data profiles, from one measured H100 rate.

No GPU has run the ResNet-50/18 profiles yet (``gpu_check.py`` section 4 measures them when one
is lent). Until then this script bounds their cost: it counts each model's multiply-accumulates
per image (torch's FLOP counter, forward pass at the profile's image size) and assumes a
training step costs 3 forward passes, a distilled student's step adds one teacher forward
(the teacher runs on every augmented batch), and the GPU sustains the MAC rate measured for
population-trained ResNet-56 teachers (``--reference-rate`` model-img/s, default the README's
H100 measurement of 2026-11-26). Large convolutions use a GPU better than ResNet-56's narrow
ones, so real runs should be faster: the CIFAR-100 row shows how pessimistic the bound is
beside the 3.0 h that measured rates give (README, *GPU check*).

Usage: python benchmarks/project_real_profiles.py [--reference-rate 14993]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import REAL_TRAIN_IMAGES  # noqa: E402

from kdfair_utils.experiments import get_profile  # noqa: E402
from kdfair_utils.models import build_model  # noqa: E402

TRAIN_IMAGES = {"cifar100": 50_000, **REAL_TRAIN_IMAGES}
CLASSES = {"cifar100": 100, "tinyimagenet": 200, "imagenet": 1000, "celeba": 2}
H100_RESNET56_RATE = 14_993  # model-img/s, 5 ResNet-56 teachers as a population, bf16 (README, 2026-11-26)


def macs(arch: str, classes: int, size: int) -> float:
    """Multiply-accumulates of one forward pass of one image."""
    model = build_model(arch, classes, image_size=size).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 2


def project(reference_rate: float = H100_RESNET56_RATE) -> dict[str, dict[str, float]]:
    """Per profile: the models' MACs and the bound in hours (teachers, students, total)."""
    mac_rate = reference_rate * 3 * macs("resnet56", 100, 32)  # training MACs per second
    out = {}
    for name, images in TRAIN_IMAGES.items():
        grid = get_profile(name).main
        size = grid.data_options.get("image_size", 32)
        teacher, student = macs(grid.teacher, CLASSES[name], size), macs(grid.student, CLASSES[name], size)
        teachers = len(grid.teacher_seeds) * grid.teacher_train.epochs * images * 3 * teacher
        students = len(grid.seeds) * grid.student_train.epochs * images * (
            3 * student + len(grid.temperatures) * (3 * student + teacher))
        out[name] = {"teacher_gmac": teacher / 1e9, "student_gmac": student / 1e9,
                     "teacher_hours": teachers / mac_rate / 3600, "hours": (teachers + students) / mac_rate / 3600}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-rate", type=float, default=H100_RESNET56_RATE,
                        help="measured ResNet-56 (CIFAR, 32 px) training model-img/s on the GPU")
    args = parser.parse_args()
    if not args.reference_rate > 0:
        parser.error(f"--reference-rate must be > 0, got {args.reference_rate}")
    print(f"upper bound at {args.reference_rate:,.0f} ResNet-56 img/s (the same MACs per second for every model)")
    print(f"{'profile':14}{'teacher GMAC':>13}{'student GMAC':>13}{'teachers h':>12}{'grid h':>9}")
    for name, row in project(args.reference_rate).items():
        print(f"{name:14}{row['teacher_gmac']:13.3f}{row['student_gmac']:13.3f}{row['teacher_hours']:12.1f}"
              f"{row['hours']:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
