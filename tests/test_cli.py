import pytest

from kdfair_utils.cli import main, parse_overrides
from kdfair_utils.experiments import get_profile
from kdfair_utils.grid import model_specs

TINY = ["--teacher", "resnet8", "--seeds", "0", "1", "--temperatures", "2", "--set", "teacher_seeds=0",
        "--set", "main.teacher_train.epochs=1", "--set", "class_bias.teacher_train.epochs=1",
        "--set", "student_train.epochs=1", "--set", "data_options.per_combination=1",
        "--set", "data_options.test_per_combination=0", "--set", "data_options.twins_per_combination=0",
        "--set", "data_options.image_size=16"]


def test_parse_overrides():
    assert parse_overrides(["student_train.epochs=5", "seeds=0,1,2", "temperatures=4", "label=shape_color",
                            "student_train.grad_clip=null", "analysis.attributes=color"]) == {
        "student_train.epochs": 5, "seeds": [0, 1, 2], "temperatures": 4, "label": "shape_color",
        "student_train.grad_clip": None, "analysis.attributes": "color"}
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        parse_overrides(["epochs"])
    with pytest.raises(ValueError, match="'seeds' is given twice"):
        parse_overrides(["seeds=1", "seeds=2"])


def test_grid_command_prints_what_it_loaded_and_trained(tmp_path, data_dir, capsys):
    args = ["grid", "--profile", "quick", "--runs-dir", str(tmp_path), "--data-dir", str(data_dir), "--quiet", *TINY]
    assert main(args) == 0
    out = capsys.readouterr().out
    from kdfair_utils.train import resolve_precision

    assert ("experiment main: trifeature/shape, resnet8 -> lenet5, 5 models (loaded 0, trained 5; engine population, "
            f"precision {resolve_precision('auto', 'cpu')})") in out
    assert "DS@T=2" in out and "ci_low" in out
    assert main(args) == 0
    assert "5 models (loaded 5, trained 0; engine population" in capsys.readouterr().out


def test_grid_command_rebuilds_exactly_the_class_bias_experiment(tmp_path, data_dir, capsys):
    """`kdfair grid --experiment class_bias` trains the models notebook 03 loads: the same cache keys."""
    overrides = {"class_bias.teacher": "resnet8", "class_bias.seeds": [0, 1], "class_bias.temperatures": [2],
                 "teacher_seeds": [0], "class_bias.teacher_train.epochs": 1, "student_train.epochs": 1,
                 "data_options.per_combination": 1, "data_options.image_size": 16,
                 "data_options.test_per_combination": 0, "data_options.twins_per_combination": 0}
    args = ["grid", "--runs-dir", str(tmp_path), "--data-dir", str(data_dir), "--quiet", "--experiment", "class_bias",
            *TINY]
    assert main(args) == 0
    assert "experiment class_bias: trifeature/shape_color" in capsys.readouterr().out
    expected = {s.dirname for s in model_specs(get_profile("quick", overrides).class_bias)}
    assert {p.name for p in (tmp_path / "models").iterdir()} == expected


@pytest.mark.parametrize("argv,message", [
    (["grid", "--set", "alpha=3"], "alpha must be <= 1"),
    (["grid", "--set", "epochs=3"], "unknown override 'epochs'; known:"),
    (["grid", "--seeds", "1", "--set", "main.seeds=2"], "'main.seeds' is given twice"),
    (["run", "--label", "color"], "'label' differs per experiment: set main.label or class_bias.label"),
    (["run", "--temperatures", "1"], "none of the temperatures [1.0] lies in the class_bias window 2..10"),
    (["run", "--set", "analysis.significance=2"], "analysis.significance must be < 1, got 2"),
])
def test_bad_cli_input_names_the_argument(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--runs-dir", str(tmp_path)])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
