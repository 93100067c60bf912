"""A tiny text grid on a HateXplain fixture in the official format: BERT-tiny teachers, an NDS and
distilled DistilBERT-tiny students train on the CPU through the same grid as the image models,
cache, reload without retraining, and reach the per-model table with gender/race fairness."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")

from kdfair_utils import group_fairness as gf  # noqa: E402
from kdfair_utils.grid import GridConfig, run_grid  # noqa: E402
from kdfair_utils.results import Population  # noqa: E402
from kdfair_utils.train import TrainConfig  # noqa: E402
from test_hatexplain import make_hatexplain, synthetic_posts  # noqa: E402

RECIPE = TrainConfig(epochs=12, batch_size=8, optimizer="adamw", lr=3e-3, weight_decay=0.01)
TEXT_GRID = GridConfig(dataset="hatexplain", label="toxic",
                       data_options={"max_length": 12, "vocab_size": 100, "min_frequency": 1},
                       teacher="bert-tiny", student="distilbert-tiny", teacher_train=RECIPE, student_train=RECIPE,
                       teacher_seeds=(0, 1), seeds=(0, 1), temperatures=(2, 4))


def test_a_text_grid_trains_caches_and_reloads(tmp_path):
    make_hatexplain(tmp_path / "data", *synthetic_posts())
    first = run_grid(TEXT_GRID, runs_dir=tmp_path / "runs", data_dir=tmp_path / "data", device="cpu", progress=False)
    assert (len(first.trained), len(first.loaded)) == (8, 0)
    again = run_grid(TEXT_GRID, runs_dir=tmp_path / "runs", data_dir=tmp_path / "data", device="cpu", progress=False)
    assert (len(again.trained), len(again.loaded)) == (0, 8)
    for pop in first.populations():  # reloaded logits are the ones computed right after training
        assert np.array_equal(first.logits(pop), again.logits(pop)) and np.array_equal(
            first.logits(pop, "val"), again.logits(pop, "val"))
    data = first.dataset
    assert data.kind == "text" and data.train.tokens.shape == (36, 12)
    teacher_acc = (first.predictions(Population.teacher()) == data.test.labels).mean(1)
    assert teacher_acc.min() >= 0.9  # the words carry the label: the teachers learn it
    table = first.table(attributes=["gender", "race"])
    pred = first.predictions(Population.nds())[0]
    for attr in ("gender", "race"):
        expected = 100 * gf.demographic_parity_difference(data.test.labels, pred,
                                                          sensitive_features=data.test.attributes[attr])
        assert table.query("role == 'nds'")[f"dpd_{attr}"].iloc[0] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("change, match", [
    ({"teacher": "resnet20"}, "teacher must be one of bert-base-uncased"),
    ({"dataset": "trifeature", "label": "shape", "data_options": {}}, "teacher must be one of resnet8"),
    ({"student_train.augment": "flip"}, "student_train.augment must be 'none': text has no augmentation"),
    ({"data_options.max_length": 2}, "data_options.max_length must be >= 3"),
    ({"data_options.tokenizer": "bpe"}, "unknown option data_options.tokenizer for hatexplain"),
])
def test_text_grid_settings_are_checked_before_anything_runs(change, match):
    with pytest.raises(ValueError, match=match):
        TEXT_GRID.replace(**change).validate()
