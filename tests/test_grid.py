import shutil

import numpy as np
import pytest

from kdfair_utils.grid import GridConfig, model_specs, paired_teacher, run_grid
from kdfair_utils.group_fairness import UndefinedRateWarning, multiclass_fairness
from kdfair_utils.results import Population
from kdfair_utils.train import TrainConfig

TEACHER, NDS, DS = Population.teacher(), Population.nds(), Population.ds


def tiny(**changes):
    cfg = GridConfig(data_options={"image_size": 16, "per_combination": 1},
                     teacher="resnet8", student="lenet5",
                     teacher_train=TrainConfig(epochs=1, batch_size=64, lr=0.05),
                     student_train=TrainConfig(epochs=1, batch_size=64, lr=0.05, grad_clip=5.0),
                     teacher_seeds=(0,), seeds=(0, 1), temperatures=(2.0, 4.0))
    return cfg.replace(**changes) if changes else cfg


def test_tiny_grid_caches_resumes_and_is_deterministic(tmp_path, data_dir, capsys):
    runs = tmp_path / "runs"
    first = run_grid(tiny(), runs_dir=runs, data_dir=data_dir, progress=False)
    assert len(first.trained) == 1 + 2 + 4 and first.loaded == []  # teacher, 2 NDS, 2 seeds x 2 T
    assert first.populations() == [TEACHER, NDS, DS(2), DS(4)]
    assert first.logits(DS(2.0)).shape == (2, 200, 10)
    assert first.predictions(TEACHER, split="test_cf_color").shape == (1, 200)
    teacher = first.models(TEACHER)[0]
    record = first.evals[teacher.key]
    preds = first.predictions(TEACHER)[0]
    y = first.dataset.test.labels
    assert record["test_accuracy"] == pytest.approx((preds == y).mean())
    assert record["test_class_accuracy"][3] == pytest.approx((preds[y == 3] == 3).mean())

    second = run_grid(tiny(), runs_dir=runs, data_dir=data_dir, progress=True)
    assert second.trained == [] and len(second.loaded) == 7
    assert f"grid shape: 7 models — loaded 7 from {runs / 'models'}, trained 0" in capsys.readouterr().out
    for pop in first.populations():
        assert np.array_equal(first.logits(pop), second.logits(pop))

    # delete one distilled student: only it retrains, and identically (deterministic on CPU)
    victim = next(s for s in first.specs if s.population == DS(4) and s.seed == 1)
    before = first.logits(DS(4))
    for f in (runs / "models" / victim.dirname).iterdir():
        f.unlink()
    third = run_grid(tiny(), runs_dir=runs, data_dir=data_dir, progress=False)
    assert [s.key for s in third.trained] == [victim.key] and len(third.loaded) == 6
    assert np.array_equal(third.logits(DS(4)), before)

    # widening the temperature list trains only the new students
    fourth = run_grid(tiny(temperatures=(2.0, 4.0, 8.0)), runs_dir=runs, data_dir=data_dir, progress=False)
    assert [s.population for s in fourth.trained] == [DS(8), DS(8)]
    assert len(list((runs / "grids").glob("*.json"))) == 2


def test_interrupted_model_without_meta_is_retrained(tmp_path, data_dir):
    runs = tmp_path / "runs"
    result = run_grid(tiny(temperatures=(2.0,)), runs_dir=runs, data_dir=data_dir, progress=False)
    nds = result.models(NDS)[0]
    (runs / "models" / nds.dirname / "meta.json").unlink()  # as if killed before the last write
    again = run_grid(tiny(temperatures=(2.0,)), runs_dir=runs, data_dir=data_dir, progress=False)
    assert [s.key for s in again.trained] == [nds.key]
    assert not list(runs.rglob("*.tmp"))


def test_teacher_pairing_and_keys():
    cfg = tiny(teacher_seeds=(7, 8), seeds=(3, 4, 5))
    specs = model_specs(cfg)
    teachers = {s.seed: s.key for s in specs if s.role == "teacher"}
    ds = [s for s in specs if s.population == DS(2)]
    # by position in `seeds`: the i-th student seed pairs with teacher_seeds[i mod 2]
    assert [(d.seed, d.teacher_seed) for d in ds] == [(3, 7), (4, 8), (5, 7)]
    assert [d.teacher_key for d in ds] == [teachers[7], teachers[8], teachers[7]]
    assert [paired_teacher(cfg, i) for i in range(3)] == [0, 1, 0]
    first = model_specs(cfg.replace(teacher_pairing="first"))
    assert {s.teacher_seed for s in first if s.role == "ds"} == {7}
    assert len({s.key for s in specs}) == len(specs)
    assert ds[0].name == "DS@T=2 seed 3" and specs[0].name == "teacher seed 7"


def test_paired_teacher_predictions_and_tidy_table(tmp_path, data_dir):
    cfg = tiny(teacher_seeds=(0, 1), seeds=(0, 1, 2), temperatures=(2.0,))
    result = run_grid(cfg, runs_dir=tmp_path / "runs", data_dir=data_dir, progress=False)
    teach = result.predictions(TEACHER)
    assert np.array_equal(result.paired_teacher_predictions(DS(2)), teach[[0, 1, 0]])
    assert np.array_equal(result.paired_teacher_predictions(NDS), teach[[0, 1, 0]])
    with pytest.raises(ValueError, match="no paired teacher"):
        result.paired_teacher_predictions(TEACHER)
    with pytest.raises(ValueError, match="no DS@T=3 models"):
        result.predictions(DS(3))
    with pytest.raises(TypeError, match="Population"):
        result.predictions("ds@T=2")

    with pytest.warns(UndefinedRateWarning):
        table = result.table(attributes=("color",), twin_attributes=("texture",))
    assert len(table) == 2 + 3 + 3 and list(table["role"]) == ["teacher"] * 2 + ["nds"] * 3 + ["ds"] * 3
    assert table["T"].isna().sum() == 5 and (table.loc[table.role == "ds", "T"] == 2.0).all()
    assert list(table.loc[table.role == "ds", "teacher_seed"]) == [0, 1, 0]
    assert {"accuracy", "dpd_color", "eod_color", "lipschitz_texture", "flip_rate_texture"} <= set(table.columns)
    y, color = result.dataset.test.labels, result.dataset.test.attributes["color"]
    nds = result.predictions(NDS)
    assert np.allclose(table.loc[table.role == "nds", "accuracy"], 100 * (nds == y).mean(1), rtol=0, atol=1e-12)
    with pytest.warns(UndefinedRateWarning):  # tiny data: some (shape, color) cells have no test images
        eod = [multiclass_fairness(y, p, sensitive_features=color, metric="eod") for p in nds]
    assert np.allclose(table.loc[table.role == "nds", "eod_color"], 100 * np.array(eod), rtol=0, atol=1e-12)
    twins = result.predictions(NDS, split="test_cf_texture")
    assert np.allclose(table.loc[table.role == "nds", "flip_rate_texture"], 100 * (nds != twins).mean(1))
    assert result.table(attributes=("color",), twin_attributes=("texture",)) is table  # computed once
    assert np.array_equal(result.dataset.extra["test_cf_texture"].source, np.arange(len(y)))  # every test image
    with pytest.raises(ValueError, match="unknown attribute 'size'"):
        result.table(attributes=("size",))


@pytest.mark.parametrize("changes,match", [
    ({"dataset": "mnist"}, "dataset must be one of .*got 'mnist'"),
    ({"teacher": "vgg"}, "teacher must be one of .*got 'vgg'"),
    ({"temperatures": (0.0,)}, r"temperatures\[0\] must be >= 0.01"),
    ({"temperatures": (-2.0,)}, r"temperatures\[0\] must be >= 0.01"),
    ({"temperatures": (float("inf"),)}, r"temperatures\[0\] must be finite"),
    ({"temperatures": (2, 2.0)}, "temperatures has duplicates"),
    ({"seeds": (1, 1)}, "seeds has duplicates"),
    ({"seeds": (0.5,)}, r"seeds\[0\] must be an integer"),
    ({"alpha": 1.2}, "alpha must be <= 1"),
    ({"seeds": ()}, "seeds must be a non-empty list"),
    ({"label": "size"}, "label must be one of .*got 'size'"),
    ({"data_options.image_size": 12}, "too small for lenet5"),
    ({"teacher_pairing": "random"}, "teacher_pairing"),
    ({"student_train.schedule": "linear"}, "schedule"),
])
def test_bad_grid_config_raises_before_anything_is_written(changes, match, tmp_path, data_dir):
    with pytest.raises(ValueError, match=match):
        run_grid(tiny(**changes), runs_dir=tmp_path / "runs", data_dir=tmp_path / "data", progress=False)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_grid_replace_reaches_into_recipes_and_options():
    cfg = tiny(**{"student_train.epochs": 3, "seeds": [5, 6], "temperatures": 4, "data_options.image_size": 24})
    assert cfg.student_train.epochs == 3 and cfg.seeds == (5, 6) and cfg.temperatures == (4,)
    assert cfg.data_options == {"image_size": 24, "per_combination": 1}
    with pytest.raises(ValueError, match="unknown grid field 'epochs'"):
        tiny(epochs=3)
    with pytest.raises(ValueError, match="unknown field student_train.epoch; known: student_train.epochs"):
        tiny(**{"student_train.epoch": 3})


def test_a_larger_evaluation_set_retrains_nothing(tmp_path, data_dir):
    """Issue 10: the evaluation data are not in a model's key. Growing the separate evaluation
    split (or its twins) re-evaluates the cached models from their weights and trains none; the
    logits computed from saved weights equal those computed right after training."""
    small = tiny(seeds=(0,), temperatures=(2.0,), **{"data_options.test_per_combination": 1,
                                                     "data_options.twins_per_combination": 1})
    runs = tmp_path / "runs"
    first = run_grid(small, runs_dir=runs, data_dir=data_dir, progress=False)
    assert len(first.trained) == 3 and first.evaluated == {} and len(first.dataset.train) == 1000
    larger = small.replace(**{"data_options.test_per_combination": 2, "data_options.twins_per_combination": 2})
    second = run_grid(larger, runs_dir=runs, data_dir=data_dir, progress=False)
    assert second.trained == [] and {s.key for s in second.loaded} == {s.key for s in first.specs}
    assert set(second.evaluated) == {s.key for s in first.specs} and set(second.evaluated.values()) == {None}
    assert len(second.dataset.test) == 2000 and len(first.dataset.test) == 1000
    assert np.array_equal(second.dataset.train.images, first.dataset.train.images)
    assert second.eval_dir != first.eval_dir
    shutil.rmtree(first.eval_dir)  # evaluate the first set again, from the saved weights
    again = run_grid(small, runs_dir=runs, data_dir=data_dir, progress=False)
    assert again.trained == [] and len(again.evaluated) == 3
    for pop in first.populations():
        for split in first.dataset.eval_splits():
            assert np.array_equal(again.logits(pop, split), first.logits(pop, split))


def test_table_pairs_a_twin_subset_with_its_sources(tmp_path, data_dir):
    """With twins for a stratified subset of the test split, each twin meets its own original."""
    from kdfair_utils.individual_fairness import lipschitz_ratio, softmax

    cfg = tiny(seeds=(0,), temperatures=(2.0,), **{"data_options.per_combination": 3,
                                                   "data_options.test_per_combination": 2,
                                                   "data_options.twins_per_combination": 1})
    result = run_grid(cfg, runs_dir=tmp_path / "runs", data_dir=data_dir, progress=False)
    table = result.table(twin_attributes=("color",))
    twins = result.dataset.extra["test_cf_color"]
    src = twins.source
    assert len(src) == 1000 and len(result.dataset.test) == 2000
    logits, twin_logits = result.logits(NDS)[0], result.logits(NDS, split="test_cf_color")[0]
    want = lipschitz_ratio(softmax(logits)[src], softmax(twin_logits), result.dataset.test.images[src] / 255.0,
                           twins.images / 255.0)
    assert table.loc[table.role == "nds", "lipschitz_color"].iloc[0] == pytest.approx(float(want), rel=1e-12)
    flips = 100 * (logits.argmax(-1)[src] != twin_logits.argmax(-1)).mean()
    assert table.loc[table.role == "nds", "flip_rate_color"].iloc[0] == pytest.approx(flips, rel=1e-12)
