"""The benchmark scripts run (reduced sizes), so they cannot rot."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script, *args):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)


def test_bench_grid_reduced_prints_a_checkable_last_line(data_dir):
    proc = run("bench_grid.py", "--reduced", "--epochs", "1", "--sample", "1", "--data-dir", str(data_dir))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    match = re.fullmatch(r"speed-up vs naive: ([0-9.]+)x, vs one-at-a-time: ([0-9.]+)x", lines[-1])
    assert match and float(match[1]) > 0 and float(match[2]) > 0
    assert any(line.startswith("population fp32") for line in lines)
    assert "CIFAR-100-shaped slice" in proc.stdout


def test_gpu_check_reduced_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    proc = run("gpu_check.py", "--reduced", "--device", "cpu", "--out", str(out))
    summary = json.loads(out.read_text())
    assert proc.returncode == (0 if summary["agreement"]["passed"] else 1), proc.stderr
    assert summary["agreement"]["one_step_max_weight_diff"] == 0.0  # CPU vs CPU: the same floats
    assert {"lenet5", "resnet20", "resnet56", "resnet20_kd"} <= set(summary["throughput"])
    hours = summary["projection"]
    assert hours["total_hours"] == pytest.approx(hours["teachers_hours"] + hours["students_hours"])
    assert hours["teachers_hours"] > 0
    real = summary["real_profiles"]
    assert set(real["profiles"]) == {"tinyimagenet", "imagenet", "celeba"}
    assert all(row["hours"] > 0 for row in real["profiles"].values())
    assert real["profiles"]["celeba"]["models"] == 5 + 5 * 14  # 5 teachers, 5 NDS, 13 T x 5 DS
    # hours scale with the training-set size at the same recipe: ImageNet's grid / Tiny ImageNet's
    from kdfair_utils.experiments import get_profile

    ratio = (1_281_167 * get_profile("imagenet").main.student_train.epochs) / (
        100_000 * get_profile("tinyimagenet").main.student_train.epochs)
    assert real["profiles"]["imagenet"]["hours"] / real["profiles"]["tinyimagenet"]["hours"] == pytest.approx(
        ratio, rel=0.05)
    assert f"gpu check {'passed' if summary['agreement']['passed'] else 'FAILED'}" in proc.stdout


@pytest.mark.slow
def test_bench_compile_reduced_on_cpu():
    proc = run("bench_compile.py", "--reduced", "--device", "cpu", "--members", "2", "--images", "256",
               "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    row = proc.stdout.strip().splitlines()[-1].split()
    assert row[0] == "lenet5" and row[-1].endswith("x") and float(row[-1][:-1]) > 0


def test_real_profile_bound_scales_the_measured_rate_by_counted_macs():
    """The bound's arithmetic, by hand: the CIFAR-100 teachers at the reference ResNet-56 rate
    take exactly images / rate, and a CelebA grid adds a teacher forward to every DS step."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import project_real_profiles as prp

    rows = prp.project(10_000)
    assert rows["cifar100"]["teacher_hours"] == pytest.approx(5 * 240 * 50_000 / 10_000 / 3600, rel=1e-12)
    r56, r50, r18 = prp.macs("resnet56", 100, 32), prp.macs("resnet50", 2, 64), prp.macs("resnet18", 2, 64)
    images = 20 * prp.TRAIN_IMAGES["celeba"]
    work = 5 * images * 3 * r50 + 5 * images * 3 * r18 + 5 * 13 * images * (3 * r18 + r50)
    assert rows["celeba"]["hours"] == pytest.approx(work / (10_000 * 3 * r56) / 3600, rel=1e-12)
    assert rows["celeba"]["student_gmac"] == pytest.approx(r18 / 1e9)
    proc = run("project_real_profiles.py", "--reference-rate", "0")
    assert proc.returncode == 2 and "--reference-rate must be > 0" in proc.stderr


def test_bench_decode_reduced_prints_a_rate_and_a_projection_per_data_set():
    proc = run("bench_decode.py", "--images", "4")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[2:]}
    assert set(rows) == {"imagenet", "tinyimagenet", "celeba"}
    for cols in rows.values():
        threaded, single, ratio = float(cols[3]), float(cols[4]), float(cols[5].rstrip("x"))
        assert threaded > 0 and single > 0 and ratio == pytest.approx(threaded / single, abs=0.006)
    assert run("bench_decode.py", "--images", "0").returncode == 2


def test_bench_text_reduced_prints_rates_and_a_projection():
    pytest.importorskip("transformers")
    proc = run("bench_text.py", "--posts", "16")
    assert proc.returncode == 0, proc.stderr
    rates = dict(re.findall(r"(teacher|nds|ds) ([0-9]+)", proc.stdout.splitlines()[0]))
    assert set(rates) == {"teacher", "nds", "ds"} and all(float(v) > 0 for v in rates.values())
    assert re.search(r"hatexplain_tiny grid \(23 models, 15,383 posts\): projected [0-9.]+ min", proc.stdout)
    assert run("bench_text.py", "--posts", "1").returncode == 2
