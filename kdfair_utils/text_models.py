"""Text models and tokenisation for HateXplain (the ``text`` extra: ``transformers``, ``tokenizers``).

The paper distils a BERT-Base teacher into a DistilBERT student. ``bert-base-uncased`` and
``distilbert-base-uncased`` share one 30,522-token vocabulary, so one tokenisation serves both.
Their pretrained weights load from a local folder (``save_pretrained``'s layout) or, online, from
the Hub. For offline tests and quick CPU runs there are small, randomly initialised
configurations (``bert-tiny``, ``distilbert-tiny``) and a WordPiece tokenizer trained on the
training posts (:func:`train_wordpiece`; deterministic: the same texts give the same vocabulary).

Every model here is wrapped so that ``model(input_ids, attention_mask)`` returns the logits
``[batch, labels]``, the same contract as the image models' ``model(images)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .validation import check_int

PRETRAINED = ("bert-base-uncased", "distilbert-base-uncased")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4 of a trained vocabulary
# The small configurations: 2-layer BERT teacher, 1-layer DistilBERT student, width 64.
TINY: dict[str, dict[str, Any]] = {
    "bert-tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128},
    "distilbert-tiny": {"dim": 64, "n_layers": 1, "n_heads": 2, "hidden_dim": 128},
}
TEXT_ARCHS = (*PRETRAINED, *TINY)


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ImportError("text models need the `text` extra: pip install -e '.[text]'") from None
    return transformers


def train_wordpiece(texts: Sequence[str], vocab_size: int = 8000, *, min_frequency: int = 2):
    """A lower-casing BERT WordPiece tokenizer for ``texts`` (a ``PreTrainedTokenizerFast`` with
    :data:`SPECIAL_TOKENS` at ids 0..4 and BERT's ``[CLS] text [SEP]`` template).

    Its vocabulary is built deterministically (the ``tokenizers`` WordPiece trainer breaks ties in
    a different order on every run, so the same posts could give other token ids): the special
    tokens, every character seen (alone and as a ``##`` continuation), then whole words seen at
    least ``min_frequency`` times, most frequent first (ties alphabetically), up to ``vocab_size``
    entries. A word is cut into the longest pieces of the vocabulary (``womensmen`` → ``women ##s
    ##m ##e ##n``); a word with a character never seen in the training posts (an emoji first met in
    the test split) becomes ``[UNK]``.
    """
    from collections import Counter

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a non-empty list of strings")
    check_int(min_frequency, "min_frequency", minimum=1)
    normalizer, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter(w for t in texts for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(t)))
    chars = sorted({c for w in counts for c in w})
    base = [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars)]
    check_int(vocab_size, "vocab_size", minimum=len(base))
    words = sorted((w for w, n in counts.items() if n >= min_frequency and len(w) > 1), key=lambda w: (-counts[w], w))
    vocab = {token: i for i, token in enumerate(base + words[: vocab_size - len(base)])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return _transformers().PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]")


def load_tokenizer(name_or_path: str | Path, *, online: bool = False):
    """A pretrained tokenizer from a local folder, or (``online``) by Hub name."""
    return _transformers().AutoTokenizer.from_pretrained(str(name_or_path), local_files_only=not online)


def encode(tokenizer: Any, texts: Sequence[str], max_length: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)``, int64 ``[N, max_length]``: truncated to ``max_length`` tokens
    (special tokens included) and padded to it, so every batch has one shape."""
    check_int(max_length, "max_length", minimum=3)
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding="max_length",
                    return_attention_mask=True)
    return np.asarray(enc["input_ids"], dtype=np.int64), np.asarray(enc["attention_mask"], dtype=np.int64)


class TextClassifier(nn.Module):
    """``forward(input_ids, attention_mask) -> logits``: a Hugging Face sequence classifier."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits


def build_text_model(arch: str, num_labels: int, *, vocab_size: int | None = None, max_length: int = 128,
                     pretrained: str | Path | None = None, online: bool = False):
    """A sequence classifier returning logits from ``(input_ids, attention_mask)``.

    ``bert-tiny``/``distilbert-tiny``: randomly initialised (seed torch first), for a vocabulary of
    ``vocab_size`` and sequences up to ``max_length``. ``bert-base-uncased``/``distilbert-base-uncased``:
    pretrained weights from the folder ``pretrained`` (or, ``online``, from the Hub by name) with a
    new, randomly initialised classification head of ``num_labels``.
    """
    tf = _transformers()
    if arch not in TEXT_ARCHS:
        raise ValueError(f"unknown text architecture {arch!r}; known: {', '.join(TEXT_ARCHS)}")
    check_int(num_labels, "num_labels", minimum=2)
    if arch in TINY:
        if vocab_size is None:
            raise ValueError(f"{arch} needs vocab_size (the tokenizer's len())")
        check_int(vocab_size, "vocab_size", minimum=len(SPECIAL_TOKENS) + 1)
        check_int(max_length, "max_length", minimum=3)
        if arch == "bert-tiny":
            config = tf.BertConfig(vocab_size=vocab_size, max_position_embeddings=max_length, num_labels=num_labels,
                                   **TINY[arch])
            return TextClassifier(tf.BertForSequenceClassification(config))
        config = tf.DistilBertConfig(vocab_size=vocab_size, max_position_embeddings=max_length, num_labels=num_labels,
                                     **TINY[arch])
        return TextClassifier(tf.DistilBertForSequenceClassification(config))
    source = str(pretrained) if pretrained is not None else arch
    if pretrained is None and not online:
        raise ValueError(f"{arch}: pass pretrained=<folder with its save_pretrained files>, or online=True to "
                         "download it from the Hub")
    model = tf.AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_labels, dtype=torch.float32,
                                                                  local_files_only=not online)
    return TextClassifier(model)


def _check_tokens(input_ids: Any, attention_mask: Any, labels: Any | None = None) -> tuple[np.ndarray, ...]:
    ids, mask = np.asarray(input_ids), np.asarray(attention_mask)
    if ids.ndim != 2 or ids.dtype.kind not in "iu" or len(ids) == 0 or (ids < 0).any():
        raise ValueError(f"input_ids must be non-empty non-negative integers [N, L], got {ids.dtype} {ids.shape}")
    if mask.shape != ids.shape or not np.isin(mask, (0, 1)).all():
        raise ValueError(f"attention_mask must be 0/1 of the shape of input_ids {ids.shape}, got {mask.shape}")
    if labels is None:
        return ids, mask
    y = np.asarray(labels)
    if y.shape != (len(ids),) or y.dtype.kind not in "iu" or (y < 0).any():
        raise ValueError(f"labels must be {len(ids)} non-negative integers, got {y.dtype} {y.shape}")
    return ids, mask, y


def train_text_model(model: nn.Module, input_ids: Any, attention_mask: Any, labels: Any, cfg: Any, *, seed: int,
                     device: str | torch.device = "auto", teacher_logits: Any = None, kd: Any = None,
                     progress: bool = True, desc: str = "train", precision: str = "auto") -> dict[str, list[float]]:
    """Train a text ``model`` in place on token batches, by the image models' loop
    (:func:`kdfair_utils.train.train_model`: the same recipe, schedule, gradient cap, and the same
    loss: cross-entropy, or ``kd`` (a :class:`~kdfair_utils.distill.KDLoss`) against the teacher's
    cached ``teacher_logits`` of the training posts). Text has no augmentation. Returns the
    per-epoch mean loss."""
    from .validation import SEED_RANGE
    from .distill import KDLoss
    from .train import fit, resolve_device, resolve_precision, seed_everything

    cfg.validate()
    if cfg.augment != "none":
        raise ValueError(f"text has no augmentation: set augment='none', got {cfg.augment!r}")
    if (teacher_logits is None) != (kd is None) or (kd is not None and not isinstance(kd, KDLoss)):
        raise ValueError("distillation needs both teacher_logits and kd=KDLoss(temperature, alpha); "
                         "training from scratch needs neither")
    check_int(seed, "seed", minimum=SEED_RANGE[0], maximum=SEED_RANGE[1])
    ids, mask, y = _check_tokens(input_ids, attention_mask, labels)
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(dev).train()
    ids_t, mask_t = torch.as_tensor(ids, device=dev), torch.as_tensor(mask, device=dev)
    y_t = torch.as_tensor(y, dtype=torch.long, device=dev)
    t_all = None if teacher_logits is None else torch.as_tensor(np.asarray(teacher_logits), dtype=torch.float32,
                                                                   device=dev)
    if t_all is not None and t_all.shape[0] != len(y):
        raise ValueError(f"teacher_logits has {t_all.shape[0]} rows for {len(y)} posts")
    return fit(model, cfg, lambda idx: (ids_t[idx], mask_t[idx]), y_t, t_all, None, kd, gen, dev, precision, desc,
               progress)


@torch.no_grad()
def predict_text_logits(model: nn.Module, input_ids: Any, attention_mask: Any, *,
                        device: str | torch.device = "auto", batch_size: int = 256,
                        precision: str = "auto") -> np.ndarray:
    """Eval-mode logits (float32 ``[N, labels]``) of token batches."""
    from .train import _autocast, exact_fp32, resolve_device, resolve_precision

    ids, mask = _check_tokens(input_ids, attention_mask)
    check_int(batch_size, "batch_size", minimum=1)
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    model.to(dev).eval()
    outs = []
    for start in range(0, len(ids), batch_size):
        chunk = slice(start, start + batch_size)
        with _autocast(dev, precision), exact_fp32(dev, precision):
            outs.append(model(torch.as_tensor(ids[chunk], device=dev),
                              torch.as_tensor(mask[chunk], device=dev)).float().cpu())
    return torch.cat(outs).numpy()
