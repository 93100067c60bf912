"""Profiles: every experiment named, one override vocabulary, unknown names refused."""

import pytest

from kdfair_utils.experiments import EXPERIMENTS, PROFILES, get_profile
from kdfair_utils.paper import CLASS_BIAS_WINDOW, FAIRNESS_WINDOW, VERY_HIGH_WINDOW


def test_quick_profile_names_both_experiments():
    quick = get_profile("quick")
    assert quick.main.label == "shape" and quick.class_bias.label == "shape_color"
    assert quick.class_bias.temperatures == (2, 4, 6, 8, 10)  # the main grid's T within the class-bias window
    assert quick.class_bias.teacher_train.epochs == 2 * quick.main.teacher_train.epochs
    assert quick.class_bias.teacher_train.batch_size == 64
    assert quick.class_bias.student_train == quick.main.student_train and quick.class_bias.seeds == quick.main.seeds


def test_paper_profile_has_paper_scale_everywhere():
    paper, quick = get_profile("paper"), get_profile("quick")
    for name in EXPERIMENTS:
        grid = paper.experiment(name)
        assert len(grid.seeds) == 5 and len(grid.teacher_seeds) == 5
        assert grid.student_train.epochs > quick.experiment(name).student_train.epochs
        assert grid.teacher_train.epochs > quick.experiment(name).teacher_train.epochs
    assert paper.main.temperatures == tuple(range(1, 11)) + (20, 30, 40)
    assert paper.class_bias.temperatures == tuple(range(2, 11))
    assert all(CLASS_BIAS_WINDOW[0] <= t <= CLASS_BIAS_WINDOW[1] for t in paper.class_bias.temperatures)
    assert {t for t in paper.main.temperatures if FAIRNESS_WINDOW[0] <= t <= FAIRNESS_WINDOW[1]} == set(range(1, 11))
    assert {t for t in paper.main.temperatures if t >= VERY_HIGH_WINDOW[0]} == {20, 30, 40}
    assert paper.analysis.null_splits >= 252  # 5 + 5 models: the exhaustive null


def test_bare_fields_change_every_grid_and_prefixed_fields_one():
    p = get_profile("quick", {"seeds": [0, 1, 2, 3, 4], "student_train.epochs": 5,
                              "class_bias.seeds": [7, 8], "analysis.significance": 0.01,
                              "temperatures": [1, 2, 10, 40]})
    assert p.main.seeds == (0, 1, 2, 3, 4) and p.class_bias.seeds == (7, 8)  # the prefixed value wins
    assert p.main.student_train.epochs == p.class_bias.student_train.epochs == 5
    assert p.main.temperatures == (1, 2, 10, 40) and p.class_bias.temperatures == (2, 10)  # kept in its window
    assert p.analysis.significance == 0.01
    explicit = get_profile("quick", {"class_bias.temperatures": [1, 20]})
    assert explicit.class_bias.temperatures == (1, 20)  # an explicit per-experiment value is taken as given
    assert p.key != get_profile("quick").key and get_profile("quick").key == PROFILES["quick"].key


@pytest.mark.parametrize("overrides,match", [
    ({"epochs": 3}, r"unknown override 'epochs'; known: .*student_train\.epochs.*analysis\.significance"),
    ({"student_train.epoch": 3}, r"unknown override 'student_train.epoch'; student_train fields: .*epochs"),
    ({"class_bias.seed": [1]}, r"unknown override 'class_bias.seed'"),
    ({"analysis.alpha": 0.1}, r"unknown override 'analysis.alpha'; analysis fields: analysis.significance"),
    ({"seeds.first": 1}, "has no sub-fields"),
    ({"analysis.significance": 1.5}, "analysis.significance must be < 1, got 1.5"),
    ({"analysis.normalization": "z"}, "analysis.normalization must be one of"),
    ({"class_bias.alpha": 2.0}, "class_bias: alpha must be <= 1"),
    ({"temperatures": [40]}, "none of the temperatures .* class_bias window 2..10"),
])
def test_bad_overrides_name_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        get_profile("quick", overrides)


def test_prefixed_values_win_and_per_experiment_fields_are_refused_bare():
    p = get_profile("quick", {"temperatures": [1], "class_bias.temperatures": [2, 4]})
    assert p.main.temperatures == (1,) and p.class_bias.temperatures == (2, 4)
    for key in ("label", "dataset", "teacher_train.epochs"):
        with pytest.raises(ValueError, match=f"'{key}' differs per experiment: set main.{key} or class_bias.{key}"):
            get_profile("quick", {key: 1})
    q = get_profile("quick", {"main.teacher_train.epochs": 3})
    assert q.main.teacher_train.epochs == 3 and q.class_bias.teacher_train.epochs == 20  # its own recipe


def test_analysis_tuples_take_a_single_name_and_need_color():
    assert get_profile("quick", {"analysis.attributes": "color"}).analysis.attributes == ("color",)
    with pytest.raises(ValueError, match="analysis.twin_attributes must include 'color'"):
        get_profile("quick", {"analysis.twin_attributes": ["texture"]})


def test_run_name_follows_the_resolved_profile():
    assert get_profile("quick").run_name == "quick"
    assert get_profile("quick", {"seeds": [0, 1, 2, 3, 4]}).run_name == "quick"  # no change: the default run
    a = get_profile("quick", {"seeds": [0, 1, 2, 3, 4, 5]})
    b = get_profile("quick", {"main.seeds": [0, 1, 2, 3, 4, 5], "class_bias.seeds": [0, 1, 2, 3, 4, 5]})
    assert a.run_name == b.run_name == f"quick+{a.key[:8]}"


def test_unknown_profile():
    with pytest.raises(ValueError, match="profile must be one of quick, classroom, paper, cifar100, .*; got 'huge'"):
        get_profile("huge")
