"""The paper's real-data profiles (CIFAR-100, Tiny ImageNet, ImageNet, CelebA): what they name,
their refusal without data, and a tiny grid through `kdfair grid` on fixtures in the real formats."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from kdfair_utils.cli import main
from kdfair_utils.experiments import REAL_DATA_PROFILES, get_profile
from test_image_folders import make_celeba, make_imagenet, make_tiny

# a fixture-sized grid: small models, one epoch, two seeds, one temperature
TINY = ["--teacher", "resnet8", "--student", "lenet5", "--seeds", "0", "1", "--temperatures", "2",
        "--set", "teacher_seeds=0", "--set", "main.teacher_train.epochs=1", "--set", "student_train.epochs=1"]


def make_cifar100(root) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", 20), ("test", 10)):
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": [i % 100 for i in range(n)], b"coarse_labels": [i % 20 for i in range(n)]}, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}, fh)


def test_the_real_data_profiles_name_the_papers_set_ups():
    expected = {"cifar100": ("cifar100", "resnet56", "resnet20"),
                "tinyimagenet": ("tinyimagenet", "resnet50", "resnet18"),
                "imagenet": ("imagenet", "resnet50", "resnet18"), "celeba": ("celeba", "resnet50", "resnet18")}
    for name in REAL_DATA_PROFILES:
        profile = get_profile(name)
        main_grid = profile.main
        assert (main_grid.dataset, main_grid.teacher, main_grid.student) == expected[name]
        assert main_grid.seeds == main_grid.teacher_seeds == (0, 1, 2, 3, 4)
        if name == "celeba":
            assert profile.experiments == ("main",) and main_grid.label == "smiling"
            assert main_grid.temperatures == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30, 40)
            assert profile.analysis.attributes == ("young", "male")
            with pytest.raises(ValueError, match="profile 'celeba' has no class_bias experiment"):
                get_profile(name, {"class_bias.seeds": [0]})
        else:
            assert profile.class_bias == main_grid  # one grid for both experiments: trained once
            assert main_grid.temperatures == (2, 3, 4, 5, 6, 7, 8, 9, 10)
            assert profile.analysis.attributes == ()


@pytest.mark.parametrize("name,hint", [("cifar100", "cifar-100-python not found"),
                                       ("tinyimagenet", "tiny-imagenet-200"), ("imagenet", "image-net.org"),
                                       ("celeba", "download=True")])
def test_grid_without_the_data_says_where_to_get_it_and_writes_nothing(name, hint, tmp_path, capsys):
    runs, data = tmp_path / "runs", tmp_path / "data"
    data.mkdir()
    with pytest.raises(SystemExit) as exit_:
        main(["grid", "--profile", name, "--runs-dir", str(runs), "--data-dir", str(data), "--quiet"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "FileNotFoundError" in err and hint in err and ("download" in err or "Get it" in err)
    assert not runs.exists() and list(data.iterdir()) == []


def test_the_series_refuses_a_real_data_profile_before_anything_runs(tmp_path, capsys):
    from kdfair_utils.lesson import setup

    with pytest.raises(SystemExit) as exit_:
        main(["run", "--profile", "cifar100", "--runs-dir", str(tmp_path / "runs"), "--quiet"])
    assert exit_.value.code == 2
    assert "runs on Trifeature profiles only so far" in capsys.readouterr().err
    with pytest.raises(ValueError, match="runs on Trifeature profiles only so far"):  # a notebook run alone
        setup("04_group_fairness", "celeba", runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("name,make", [("cifar100", make_cifar100), ("tinyimagenet", make_tiny),
                                       ("imagenet", make_imagenet), ("celeba", make_celeba)])
def test_a_tiny_grid_trains_on_each_fixture_through_the_cli(name, make, tmp_path, capsys):
    data = tmp_path / "data"
    make(data)
    args = ["grid", "--profile", name, "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(data), "--quiet", *TINY]
    if name != "cifar100":  # CIFAR is 32 px and has no image-size option
        args += ["--set", "data_options.image_size=16"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"experiment main: {name}/" in out and "5 models (loaded 0, trained 5" in out
    assert main(args) == 0
    assert "5 models (loaded 5, trained 0" in capsys.readouterr().out
