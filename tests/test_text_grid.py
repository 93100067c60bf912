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
    ({"data_options.tokenizer": "bpe"}, "data_options.tokenizer must be one of wordpiece, bert-base-uncased"),
    ({"data_options.lowercase": True}, "unknown option data_options.lowercase for hatexplain"),
    ({"data_options": {"tokenizer": "bert-base-uncased", "vocab_size": 500}},
     "data_options.vocab_size applies to tokenizer='wordpiece' only"),
    ({"teacher": "bert-base-uncased"}, "teacher 'bert-base-uncased' reads bert-base-uncased token ids: set "
                                       "data_options.tokenizer='bert-base-uncased'"),
])
def test_text_grid_settings_are_checked_before_anything_runs(change, match):
    with pytest.raises(ValueError, match=match):
        TEXT_GRID.replace(**change).validate()


@pytest.mark.slow
def test_kdfair_run_executes_the_series_on_a_hatexplain_fixture(tmp_path):
    """`kdfair run --profile hatexplain_tiny` on posts in the official format: the lessons that apply
    to text (data, distillation, group fairness for gender and race, the claims) run through
    papermill; class bias (a binary label) and individual fairness (no pairs) say why they do not."""
    import json

    import nbformat

    from kdfair_utils.cli import main
    from kdfair_utils.paper import claims_for

    make_hatexplain(tmp_path / "data", *synthetic_posts())
    runs = tmp_path / "runs"
    args = ["run", "--profile", "hatexplain_tiny", "--runs-dir", str(runs), "--data-dir", str(tmp_path / "data"),
            "--quiet", "--seeds", "0", "1", "--temperatures", "1", "2", "40",
            "--set", "main.teacher_train.epochs=8", "--set", "student_train.epochs=8",
            "--set", "data_options.max_length=12", "--set", "data_options.vocab_size=100",
            "--set", "data_options.min_frequency=1", "--set", "analysis.reference_draws=5",
            "--set", "analysis.permutations=20", "--set", "analysis.bootstrap_draws=5"]
    assert main(args) == 0
    out = next(runs.glob("hatexplain_tiny+*"))
    assert sorted(p.name[:2] for p in (out / "results").glob("*.json")) == ["01", "02", "04", "06"]
    for skipped, why in (("03", "binary"), ("05", "no pairs for individual fairness")):
        cells = nbformat.read(next(out.glob(f"{skipped}_*.ipynb")), as_version=4).cells
        assert len(cells) == 1 and why in cells[0].source
    fairness = json.loads((out / "results" / "04_group_fairness.json").read_text())
    assert {(r["metric"], r["attribute"]) for r in fairness["records"]} >= {("eod", "gender"), ("dpd", "race")}
    claims = json.loads((out / "claims.json").read_text())
    assert [c["claim"] for c in claims] == [c.id for c in claims_for("hatexplain")]
    report = (out / "report.md").read_text()
    assert "hatexplain (toxic), bert-tiny teacher → distilbert-tiny students" in report
    assert "## Group fairness beside its zero-disparity reference (gender)" in report


def test_the_paper_models_load_from_local_pretrained_folders(tmp_path):
    """The hatexplain profile's path, offline: bert-base-uncased and distilbert-base-uncased (small
    stand-ins saved in save_pretrained's layout) and their tokenizer from
    <data>/hatexplain/pretrained/<name>/; without them, the error names the folder and --download."""
    import transformers

    from kdfair_utils import text_models as tm
    from kdfair_utils.datasets import load_dataset
    from kdfair_utils.hatexplain import load_hatexplain

    root = make_hatexplain(tmp_path / "data", *synthetic_posts())
    cfg = TEXT_GRID.replace(teacher="bert-base-uncased", student="distilbert-base-uncased", temperatures=(2,),
                            data_options={"tokenizer": "bert-base-uncased", "max_length": 12})
    with pytest.raises(FileNotFoundError, match=r"bert-base-uncased not found in .*pretrained/bert-base-uncased.*"
                                                r"--download"):
        run_grid(cfg, runs_dir=tmp_path / "runs", data_dir=tmp_path / "data", device="cpu", progress=False)
    assert not (tmp_path / "runs").exists()
    tokenizer = tm.train_wordpiece(load_hatexplain(tmp_path / "data")["train"].texts, 100, min_frequency=1)
    small = {"vocab_size": len(tokenizer), "max_position_embeddings": 16}
    import torch

    torch.manual_seed(5)
    bert = transformers.BertModel(transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                          intermediate_size=64, **small))
    distil = transformers.DistilBertModel(transformers.DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                                                                        **small))
    for name, model in (("bert-base-uncased", bert), ("distilbert-base-uncased", distil)):
        model.save_pretrained(root / "pretrained" / name)
    tokenizer.save_pretrained(root / "pretrained" / "bert-base-uncased")
    result = run_grid(cfg, runs_dir=tmp_path / "runs", data_dir=tmp_path / "data", device="cpu", progress=False)
    assert len(result.trained) == 2 + 2 + 2
    data = load_dataset("hatexplain", data_dir=tmp_path / "data", tokenizer="bert-base-uncased", max_length=12)
    assert np.array_equal(data.train.tokens, tm.encode(tokenizer, load_hatexplain(tmp_path / "data")["train"].texts,
                                                       12)[0])  # the saved tokenizer's ids
    assert (result.predictions(Population.teacher()) == data.test.labels).mean() > 0.5


def test_text_models_train_one_at_a_time_so_one_is_in_memory():
    """Models that cannot be packed come in chunks of one (70 DistilBERTs would not fit a GPU at once);
    packable image models keep their chunks."""
    from kdfair_utils.grid import chunks, model_specs

    specs = model_specs(TEXT_GRID, {"name": "hatexplain"})
    assert [len(c) for c in chunks(specs, 16)] == [1] * len(specs)
    image = model_specs(GridConfig(seeds=(0, 1, 2), temperatures=(2, 4)), {"name": "trifeature"})
    assert [len(c) for c in chunks(image, 16)] == [2, 9]
