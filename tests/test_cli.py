import pytest

from kdfair_utils.cli import main, parse_overrides


def test_parse_overrides():
    assert parse_overrides(["student_train.epochs=5", "seeds=0,1,2", "temperatures=4", "label=shape_color",
                            "student_train.grad_clip=null"]) == {
        "student_train.epochs": 5, "seeds": [0, 1, 2], "temperatures": [4], "label": "shape_color",
        "student_train.grad_clip": None}
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        parse_overrides(["epochs"])


def test_grid_command_prints_accuracy_table(tmp_path, data_dir, capsys):
    args = ["grid", "--profile", "quick", "--runs-dir", str(tmp_path), "--data-dir", str(data_dir), "--quiet",
            "--teacher", "resnet8", "--seeds", "0", "1", "--temperatures", "2",
            "--set", "teacher_seeds=0", "--set", "teacher_train.epochs=1", "--set", "student_train.epochs=1",
            "--set", "data_options.per_combination=1", "--set", "data_options.image_size=16"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "resnet8 -> lenet5" in out and "ds@T=2" in out and "acc_mean" in out


def test_bad_cli_input_names_the_argument(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["grid", "--set", "alpha=3"])
    assert exc.value.code == 2
    assert "alpha must be in [0, 1]" in capsys.readouterr().err
