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
                "imagenet": ("imagenet", "resnet50", "resnet18"), "celeba": ("celeba", "resnet50", "resnet18"),
                "hatexplain": ("hatexplain", "bert-base-uncased", "distilbert-base-uncased"),
                "hatexplain_tiny": ("hatexplain", "bert-tiny", "distilbert-tiny")}
    for name in REAL_DATA_PROFILES:
        profile = get_profile(name)
        main_grid = profile.main
        assert (main_grid.dataset, main_grid.teacher, main_grid.student) == expected[name]
        if name == "hatexplain_tiny":  # the offline CPU version: fewer models
            assert main_grid.data_options["tokenizer"] == "wordpiece" and profile.experiments == ("main",)
            continue
        assert main_grid.seeds == main_grid.teacher_seeds == (0, 1, 2, 3, 4)
        if name == "hatexplain":
            assert profile.experiments == ("main",) and main_grid.label == "toxic"
            assert main_grid.temperatures == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30, 40)
            assert profile.analysis.attributes == ("gender", "race")
        elif name == "celeba":
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
                                       ("celeba", "download=True"),
                                       ("hatexplain", "lacks dataset.json, post_id_divisions.json")])
def test_grid_without_the_data_says_where_to_get_it_and_writes_nothing(name, hint, tmp_path, capsys):
    runs, data = tmp_path / "runs", tmp_path / "data"
    data.mkdir()
    with pytest.raises(SystemExit) as exit_:
        main(["grid", "--profile", name, "--runs-dir", str(runs), "--data-dir", str(data), "--quiet"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "FileNotFoundError" in err and hint in err and ("download" in err or "Get it" in err)
    assert not runs.exists() and list(data.iterdir()) == []


@pytest.mark.parametrize("notebook,profile,overrides,why", [
    ("03_class_bias", "celeba", None, r"has no class-bias experiment: its label \(smiling\) is binary"),
    ("04_group_fairness", "cifar100", None, r"names no protected attributes \(analysis.attributes is empty; cifar100 carries none"),
    ("05_individual_fairness", "imagenet", {"analysis.neighbour_pairs": 0}, "has no pairs for individual fairness")])
def test_a_lesson_without_its_subject_is_refused_alone_and_writes_nothing(notebook, profile, overrides, why, tmp_path):
    from kdfair_utils.lesson import NotApplicable, not_applicable, setup

    with pytest.raises(NotApplicable, match=why):
        setup(notebook, profile, overrides, runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()
    assert not_applicable(notebook, get_profile("quick")) is None  # Trifeature has every subject
    assert not_applicable("02_knowledge_distillation", get_profile(profile, overrides)) is None


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


def _overrides(args: list[str]) -> dict:
    """The analysis overrides of a `kdfair run` argument list, parsed as the CLI parses them."""
    from kdfair_utils.cli import parse_overrides

    return parse_overrides([args[i + 1] for i, a in enumerate(args) if a == "--set" and args[i + 1].startswith("analysis.")])


def make_celeba_series(root) -> None:
    """CelebA with enough faces for every lesson: 40, both Smiling values in each split and group."""
    smiling = tuple(1 if (i * 7) % 5 < 3 else -1 for i in range(40))
    make_celeba(root, n=40, smiling=smiling, partition=tuple([0] * 24 + [1] * 4 + [2] * 12))


# every lesson's analysis, made small: a few shuffles, orderings, resamples and pairs
SERIES = ["--teacher", "resnet8", "--student", "lenet5", "--seeds", "0", "1", "--temperatures", "2", "4",
          "--set", "teacher_seeds=[0, 1]", "--set", "main.teacher_train.epochs=1", "--set", "student_train.epochs=1",
          "--set", "analysis.neighbour_pairs=4",
          "--set", "analysis.reference_draws=5", "--set", "analysis.permutations=20", "--set", "analysis.bootstrap_draws=5",
          "--set", "analysis.null_splits=6", "--set", "analysis.normalization=difference"]
APPLIES = {"cifar100": ("01", "02", "03", "05", "06"), "tinyimagenet": ("01", "02", "03", "05", "06"),
           "imagenet": ("01", "02", "03", "05", "06"), "celeba": ("01", "02", "04", "05", "06")}


@pytest.mark.slow
@pytest.mark.parametrize("name,make", [("cifar100", make_cifar100), ("tinyimagenet", make_tiny),
                                       ("imagenet", make_imagenet), ("celeba", make_celeba_series)])
def test_kdfair_run_executes_the_whole_series_on_each_fixture(name, make, tmp_path, capsys):
    """`kdfair run --profile NAME` on a fixture in the real format: every lesson that applies runs
    through papermill and records; the others are one cell saying why, with nothing recorded."""
    import json

    import nbformat

    data, runs = tmp_path / "data", tmp_path / "runs"
    make(data)
    args = ["run", "--profile", name, "--runs-dir", str(runs), "--data-dir", str(data), "--quiet", *SERIES]
    if name != "cifar100":
        args += ["--set", "data_options.image_size=16"]
    if name != "celeba":  # the class-bias grid stays the main grid
        args += ["--set", "class_bias.teacher_train.epochs=1"]
    assert main(args) == 0
    out = next(runs.glob(f"{name}+*"))
    recorded = sorted(p.name[:2] for p in (out / "results").glob("*.json"))
    assert tuple(recorded) == APPLIES[name]
    for nb in sorted(out.glob("0*.ipynb")):
        cells = nbformat.read(nb, as_version=4).cells
        if nb.name[:2] in APPLIES[name]:
            assert any(c.cell_type == "code" and c.get("outputs") for c in cells), nb.name
        else:
            assert len(cells) == 1 and "does not apply to this run" in cells[0].source, nb.name
    run = json.loads((out / "run.json").read_text())
    assert sorted(run["not_applicable"]) == sorted(n.name for n in out.glob("0*.ipynb") if n.name[:2] not in APPLIES[name])
    report = (out / "report.md").read_text()
    assert f"profile `{name}`" in report and "| claim | paper | kdfair |" in report
    claims = json.loads((out / "claims.json").read_text())
    from kdfair_utils.paper import claims_for

    assert [c["claim"] for c in claims] == [c.id for c in claims_for(get_profile(name).main.dataset)]
    from kdfair_utils.report import write_report

    (out / "report.md").unlink()  # rewritten by hand, it finds the data set and setup in run.json
    assert write_report(out, get_profile(name, _overrides(args)).analysis).read_text() == report
    assert run["dataset"] == get_profile(name).main.dataset and "resnet8 teacher → lenet5 students" in report
