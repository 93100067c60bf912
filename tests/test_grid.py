import numpy as np
import pytest

import kdfair_utils.grid as grid_mod
from kdfair_utils.grid import GridConfig, get_profile, run_grid
from kdfair_utils.train import TrainConfig


def tiny(**changes):
    cfg = GridConfig(data_options={"image_size": 16, "per_combination": 1},
                     teacher="resnet8", student="lenet5",
                     teacher_train=TrainConfig(epochs=1, batch_size=64, lr=0.05),
                     student_train=TrainConfig(epochs=1, batch_size=64, lr=0.05, grad_clip=5.0),
                     teacher_seeds=(0,), seeds=(0, 1), temperatures=(2.0, 4.0))
    return cfg.replace(**changes) if changes else cfg


@pytest.fixture
def count_training(monkeypatch):
    calls = []
    real = grid_mod._train_one

    def counting(spec, *args, **kwargs):
        calls.append(spec)
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(grid_mod, "_train_one", counting)
    return calls


def test_tiny_grid_caches_resumes_and_is_deterministic(tmp_path, data_dir, count_training):
    runs = tmp_path / "runs"
    first = run_grid(tiny(), runs_dir=runs, data_dir=data_dir, progress=False)
    assert len(count_training) == 1 + 2 + 4  # teacher, 2 NDS, 2 seeds x 2 T
    table = first.accuracy_table()
    assert list(table["model"]) == ["teacher", "nds", "ds@T=2", "ds@T=4"]
    assert first.logits("ds", 2.0).shape == (2, 200, 10)
    assert first.predictions("teacher", split="test_cf_color").shape == (1, 200)
    assert set(first.populations()) == {"teacher", "nds", "ds@T=2", "ds@T=4"}
    teacher = next(s for s in first.specs if s.role == "teacher")
    meta = first.meta[teacher.key]
    preds = first.predictions("teacher")[0]
    y = first.dataset.test.labels
    assert meta["test_accuracy"] == pytest.approx((preds == y).mean())
    assert meta["test_class_accuracy"][3] == pytest.approx((preds[y == 3] == 3).mean())

    count_training.clear()
    second = run_grid(tiny(), runs_dir=runs, data_dir=data_dir, progress=False)
    assert count_training == []
    for role, t in (("teacher", None), ("nds", None), ("ds", 2.0), ("ds", 4.0)):
        assert np.array_equal(first.logits(role, t), second.logits(role, t))

    # delete one distilled student: only it retrains, and identically (deterministic on CPU)
    victim = next(s for s in first.specs if s.role == "ds" and s.temperature == 4.0 and s.seed == 1)
    before = first.logits("ds", 4.0)
    for f in (runs / "models" / victim.dirname).iterdir():
        f.unlink()
    third = run_grid(tiny(), runs_dir=runs, data_dir=data_dir, progress=False)
    assert [s.key for s in count_training] == [victim.key]
    assert np.array_equal(third.logits("ds", 4.0), before)

    # widening the temperature list trains only the new students
    count_training.clear()
    run_grid(tiny(temperatures=(2.0, 4.0, 8.0)), runs_dir=runs, data_dir=data_dir, progress=False)
    assert [(s.role, s.temperature) for s in count_training] == [("ds", 8.0), ("ds", 8.0)]
    assert len(list((runs / "grids").glob("*.json"))) == 2


def test_interrupted_model_without_meta_is_retrained(tmp_path, data_dir, count_training):
    runs = tmp_path / "runs"
    result = run_grid(tiny(temperatures=(2.0,)), runs_dir=runs, data_dir=data_dir, progress=False)
    nds = next(s for s in result.specs if s.role == "nds")
    (runs / "models" / nds.dirname / "meta.json").unlink()  # as if killed before the last write
    count_training.clear()
    run_grid(tiny(temperatures=(2.0,)), runs_dir=runs, data_dir=data_dir, progress=False)
    assert [s.key for s in count_training] == [nds.key]
    assert not list(runs.rglob("*.tmp"))


def test_teacher_pairing_and_keys():
    from kdfair_utils.grid import model_specs

    cfg = tiny(teacher_seeds=(0, 1), seeds=(0, 1, 2))
    specs = model_specs(cfg, {"name": "x"})
    teachers = [s.key for s in specs if s.role == "teacher"]
    ds = [s for s in specs if s.role == "ds" and s.temperature == 2.0]
    assert [d.teacher_key for d in ds] == [teachers[0], teachers[1], teachers[0]]
    first = model_specs(cfg.replace(teacher_pairing="first"), {"name": "x"})
    assert {s.teacher_key for s in first if s.role == "ds"} == {teachers[0]}
    assert len({s.key for s in specs}) == len(specs)


@pytest.mark.parametrize("changes,match", [
    ({"dataset": "mnist"}, "unknown dataset 'mnist'"),
    ({"teacher": "vgg"}, "unknown model 'vgg'"),
    ({"temperatures": (0.0,)}, "temperature must be > 0"),
    ({"temperatures": (-2.0,)}, "temperature must be > 0"),
    ({"alpha": 1.2}, "alpha must be in"),
    ({"seeds": ()}, "seeds must not be empty"),
    ({"label": "size"}, "unknown label 'size'"),
    ({"data_options.image_size": 12}, "too small for lenet5"),
    ({"teacher_pairing": "random"}, "teacher_pairing"),
    ({"student_train.schedule": "linear"}, "schedule"),
])
def test_bad_grid_config_raises_before_anything_is_written(changes, match, tmp_path, data_dir):
    with pytest.raises(ValueError, match=match):
        run_grid(tiny(**changes), runs_dir=tmp_path / "runs", data_dir=tmp_path / "data", progress=False)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_profiles_and_overrides():
    assert get_profile("paper").temperatures[-3:] == (20, 30, 40)
    assert len(get_profile("paper").seeds) == 5
    cfg = get_profile("quick", **{"student_train.epochs": 3, "seeds": [5, 6]})
    assert cfg.student_train.epochs == 3 and cfg.seeds == (5, 6)
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("huge")
    with pytest.raises(ValueError, match="unknown grid field"):
        get_profile("quick", epochs=3)
    with pytest.raises(ValueError, match="unknown student_train field"):
        get_profile("quick", **{"student_train.epoch": 3})
