"""Text models and tokenisation (the `text` extra), offline: a WordPiece tokenizer trained on the
fixture posts, the small BERT/DistilBERT configurations, pretrained weights from a local folder
in save_pretrained's layout, and training by the image models' loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from kdfair_utils import text_models as tm  # noqa: E402
from kdfair_utils.distill import KDLoss  # noqa: E402
from kdfair_utils.train import TrainConfig  # noqa: E402
from test_hatexplain import POSTS  # noqa: E402

TEXTS = [" ".join(v[2]) for v in POSTS.values()]
LABELS = np.array([int(sum(lab != "normal" for lab in v[0]) >= 2) for v in POSTS.values()])
RECIPE = TrainConfig(epochs=15, batch_size=4, optimizer="adamw", lr=3e-3, weight_decay=0.01)


@pytest.fixture(scope="module")
def tokenizer():
    return tm.train_wordpiece(TEXTS * 3, vocab_size=120)


def test_wordpiece_is_deterministic_with_bert_conventions(tokenizer):
    for _ in range(3):  # the tokenizers trainer would break frequency ties differently each time
        assert tm.train_wordpiece(TEXTS * 3, vocab_size=120).get_vocab() == tokenizer.get_vocab()
    vocab = tokenizer.get_vocab()
    chars = sorted({c for t in TEXTS for c in t.lower() if c != " "})
    assert [vocab[c] for c in chars] == list(range(5, 5 + len(chars)))  # characters after the special tokens
    assert vocab["what"] < vocab["women"]  # equally frequent whole words: alphabetical
    ranked = tm.train_wordpiece(["cc", "aa aa", "bb bb bb"], vocab_size=20, min_frequency=1).get_vocab()
    assert [w for w, _ in sorted(ranked.items(), key=lambda kv: kv[1])][-3:] == ["bb", "aa", "cc"]  # by frequency
    assert tokenizer.convert_ids_to_tokens(list(range(5))) == list(tm.SPECIAL_TOKENS)
    ids, mask = tm.encode(tokenizer, ["What a DAY", " ".join(["word"] * 40)], max_length=8)
    assert ids.shape == mask.shape == (2, 8) and ids.dtype == mask.dtype == np.int64
    words = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    assert words[:5] == ["[CLS]", "what", "a", "day", "[SEP]"] and set(words[5:]) == {"[PAD]"}  # lower-cased, padded
    assert mask[0].tolist() == [1] * 5 + [0] * 3
    assert ids[1, 0] == 2 and ids[1, -1] == 3 and mask[1].all()  # truncated to 8, [SEP] kept last
    with pytest.raises(ValueError, match="max_length must be >= 3"):
        tm.encode(tokenizer, TEXTS, max_length=2)
    with pytest.raises(ValueError, match="texts must be a non-empty list of strings"):
        tm.train_wordpiece([])
    with pytest.raises(ValueError, match="vocab_size must be >="):
        tm.train_wordpiece(TEXTS, vocab_size=10)
    small = tm.train_wordpiece(TEXTS, vocab_size=5 + 2 * len(chars))  # characters only: words are spelt out
    assert small.convert_ids_to_tokens(small("women")["input_ids"]) == ["[CLS]", "w", "##o", "##m", "##e", "##n",
                                                                       "[SEP]"]


def test_small_models_share_one_tokenisation_and_return_logits(tokenizer):
    ids, mask = tm.encode(tokenizer, TEXTS, max_length=12)
    ids16, mask16 = tm.encode(tokenizer, TEXTS, max_length=16)
    for arch in ("bert-tiny", "distilbert-tiny"):
        torch.manual_seed(0)
        model = tm.build_text_model(arch, 2, vocab_size=len(tokenizer), max_length=16)
        logits = tm.predict_text_logits(model, ids, mask, batch_size=3, precision="fp32")
        assert logits.shape == (len(TEXTS), 2) and logits.dtype == np.float32 and np.isfinite(logits).all()
        # padding is masked out: four more [PAD] positions leave every post's logits as they were
        padded = tm.predict_text_logits(model, ids16, mask16, batch_size=3, precision="fp32")
        assert np.allclose(padded, logits, atol=1e-5)
    with pytest.raises(ValueError, match="bert-tiny needs vocab_size"):
        tm.build_text_model("bert-tiny", 2)
    with pytest.raises(ValueError, match="unknown text architecture 'gpt2'"):
        tm.build_text_model("gpt2", 2, vocab_size=10)


def test_pretrained_weights_and_tokenizer_load_from_a_local_folder(tokenizer, tmp_path):
    """bert-base-uncased from a folder in save_pretrained's layout (here a small BERT stands in for
    it): the encoder's weights are the saved ones, the classification head is new."""
    import transformers

    torch.manual_seed(3)
    config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=16)
    saved = transformers.BertModel(config)
    saved.save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    model = tm.build_text_model("bert-base-uncased", 2, pretrained=tmp_path / "bert")
    mine = model.inner.bert.state_dict()
    assert all(torch.equal(v, mine[k]) for k, v in saved.state_dict().items())
    loaded = tm.load_tokenizer(tmp_path / "bert")
    assert np.array_equal(tm.encode(loaded, TEXTS, 12)[0], tm.encode(tokenizer, TEXTS, 12)[0])
    with pytest.raises(ValueError, match="pass pretrained=<folder"):
        tm.build_text_model("distilbert-base-uncased", 2)


def test_teacher_and_distilled_student_train_by_the_shared_loop(tokenizer):
    ids, mask = tm.encode(tokenizer, TEXTS, max_length=12)
    runs = []
    for _ in range(2):  # seeded: the same weights twice
        torch.manual_seed(0)
        teacher = tm.build_text_model("bert-tiny", 2, vocab_size=len(tokenizer), max_length=12)
        history = tm.train_text_model(teacher, ids, mask, LABELS, RECIPE, seed=0, progress=False, precision="fp32")
        runs.append((history["loss"], tm.predict_text_logits(teacher, ids, mask, precision="fp32")))
    assert runs[0][0] == runs[1][0] and np.array_equal(runs[0][1], runs[1][1])
    loss, teacher_logits = runs[0]
    assert loss[-1] < 0.2 * loss[0] and (teacher_logits.argmax(1) == LABELS).all()  # it learns the posts
    torch.manual_seed(1)
    student = tm.build_text_model("distilbert-tiny", 2, vocab_size=len(tokenizer), max_length=12)
    kd = KDLoss(4.0, alpha=0.9)
    history = tm.train_text_model(student, ids, mask, LABELS, RECIPE, seed=1, teacher_logits=teacher_logits, kd=kd,
                                  progress=False, precision="fp32")
    assert history["loss"][-1] < history["loss"][0]
    student_logits = tm.predict_text_logits(student, ids, mask, precision="fp32")
    final = kd(torch.as_tensor(student_logits), torch.as_tensor(teacher_logits), torch.as_tensor(LABELS)).item()
    assert final < history["loss"][0]  # the distillation loss fell, on the same batch as computed here


@pytest.mark.parametrize("change, match", [
    ({"cfg": TrainConfig(augment="flip")}, "text has no augmentation"),
    ({"teacher_logits": np.zeros((10, 2))}, "distillation needs both teacher_logits and kd"),
    ({"kd": KDLoss(2.0)}, "distillation needs both teacher_logits and kd"),
    ({"teacher_logits": np.zeros((3, 2)), "kd": KDLoss(2.0)}, "teacher_logits has 3 rows for 10 posts"),
    ({"attention_mask": np.full((10, 12), 2)}, "attention_mask must be 0/1"),
    ({"labels": -LABELS - 1}, "labels must be 10 non-negative integers"),
])
def test_bad_training_inputs_are_refused_before_training(tokenizer, change, match):
    ids, mask = tm.encode(tokenizer, TEXTS, max_length=12)
    model = tm.build_text_model("distilbert-tiny", 2, vocab_size=len(tokenizer), max_length=12)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = {"input_ids": ids, "attention_mask": mask, "labels": LABELS, "cfg": RECIPE, **change}
    with pytest.raises(ValueError, match=match):
        tm.train_text_model(model, args["input_ids"], args["attention_mask"], args["labels"], args["cfg"], seed=0,
                            teacher_logits=args.get("teacher_logits"), kd=args.get("kd"), progress=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
