"""HateXplain (Mathew et al., AAAI 2021): its posts, and the official label and target rules.

Read from ``D/hatexplain/dataset.json`` and ``D/hatexplain/post_id_divisions.json`` (the official
repository's ``Data/`` files, in a folder renamed ``hatexplain``), or, with ``download=True``,
from the Hub's parquet conversion of ``Hate-speech-CNERG/hatexplain`` through ``datasets`` (the
Hub's loading script no longer runs on ``datasets`` 4). Both give the same posts.

The rules (the official preprocessing's):

* **label**: the majority of the three annotators' labels (hatespeech, offensive, normal). A post
  whose labels are all different is *undecided* and dropped (the official divisions leave those
  919 posts out; a post in the divisions that is undecided is an error). Hatespeech and offensive
  are **toxic** (1), normal is **non-toxic** (0): a hatespeech/offensive/normal split is
  undecided, not toxic;
* **target groups**: a community counts for a post when at least 2 of its 3 annotators name it.
  One 0/1 column per group: ``women``, ``men`` (gender) and ``african``, ``arab``, ``asian``,
  ``caucasian``, ``hispanic`` (race);
* **combined attributes** for the group-fairness metrics, one group per post (ours, the paper is
  silent): ``gender`` is ``none``, ``women``, ``men`` or ``several`` (a post targeting both), and
  ``race`` is ``none``, one of the five, or ``several``. A post in two groups of one attribute is
  counted once, in ``several``, never in both.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .validation import check_dir_path
from .paths import default_data_dir

FOLDER = "hatexplain"
FILES = ("dataset.json", "post_id_divisions.json")
HUB_REPO = "Hate-speech-CNERG/hatexplain"
LABELS = ("hatespeech", "offensive", "normal")
HUB_LABELS = ("hatespeech", "normal", "offensive")  # the Hub's ClassLabel order
TOXIC = ("hatespeech", "offensive")
GENDER = ("women", "men")
RACE = ("african", "arab", "asian", "caucasian", "hispanic")
GROUPS = GENDER + RACE
COMBINED = {"gender": GENDER, "race": RACE}
SPLITS = ("train", "val", "test")
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}
MIN_VOTES = 2  # annotators who must name a community for it to count
ANNOTATORS = 3


@dataclass(frozen=True)
class Posts:
    """One split: post ids (the divisions' order), tokens, labels (1 = toxic) and 0/1 group columns
    plus the combined ``gender`` and ``race`` codes (values in :func:`combined_values`)."""

    ids: tuple[str, ...]
    tokens: tuple[tuple[str, ...], ...]
    labels: np.ndarray
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(self.tokens) != n or len(self.labels) != n or any(len(v) != n for v in self.attributes.values()):
            raise ValueError(f"a split needs one token list, label and attribute value per post ({n} posts)")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def texts(self) -> list[str]:
        """Each post's tokens joined by spaces (what a tokenizer reads)."""
        return [" ".join(t) for t in self.tokens]


def combined_values(attribute: str) -> tuple[str, ...]:
    """The names of the codes of ``gender`` or ``race``: ``none``, each group, ``several``."""
    return ("none", *COMBINED[attribute], "several")


def _error(post_id: str, field_name: str, message: str) -> ValueError:
    return ValueError(f"HateXplain post {post_id!r}, field {field_name!r}: {message}")


def majority_label(labels: Iterable[str], post_id: str = "?") -> str | None:
    """The label most annotators gave, or None when every annotator gave a different one."""
    labels = list(labels)
    if len(labels) != ANNOTATORS:
        raise _error(post_id, "annotators", f"expected {ANNOTATORS} annotators, got {len(labels)}")
    for label in labels:
        if label not in LABELS:
            raise _error(post_id, "label", f"unknown label {label!r}; known: {', '.join(LABELS)}")
    label, count = Counter(labels).most_common(1)[0]
    return label if count > 1 else None


def target_groups(targets: Iterable[Iterable[str]], post_id: str = "?") -> set[str]:
    """The groups of :data:`GROUPS` that at least :data:`MIN_VOTES` annotators name (each
    annotator counted once per group; ``None``, ``Other`` and other communities are ignored)."""
    votes: Counter[str] = Counter()
    for named in targets:
        if isinstance(named, str) or not all(isinstance(t, str) for t in named):
            raise _error(post_id, "target", f"each annotator's target must be a list of names, got {named!r}")
        votes.update({t.lower() for t in named})
    return {g for g in GROUPS if votes[g] >= MIN_VOTES}


def _post(post_id: str, labels: list[str], targets: list[list[str]], rationales: list[list[int]],
          tokens: list[str]) -> tuple[int, set[str]] | None:
    """``(label, groups)`` of one post after checking it, None when it is undecided."""
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise _error(post_id, "post_tokens", "must be a list of strings")
    for i, r in enumerate(rationales):
        if len(r) != len(tokens):
            raise _error(post_id, "rationales", f"rationale {i} has {len(r)} entries for {len(tokens)} tokens")
    label = majority_label(labels, post_id)
    if len(targets) != ANNOTATORS:
        raise _error(post_id, "annotators", f"expected {ANNOTATORS} targets, got {len(targets)}")
    groups = target_groups(targets, post_id)
    return None if label is None else (int(label in TOXIC), groups)


def _split(ids: list[str], posts: Mapping[str, tuple[tuple[str, ...], int, set[str]]]) -> Posts:
    labels = np.array([posts[i][1] for i in ids], dtype=np.int64)
    columns = {g: np.array([g in posts[i][2] for i in ids], dtype=np.int64) for g in GROUPS}
    for name, groups in COMBINED.items():
        member = np.stack([columns[g] for g in groups], axis=1) if ids else np.zeros((0, len(groups)), np.int64)
        codes = np.where(member.sum(1) == 0, 0, np.where(member.sum(1) > 1, len(groups) + 1, member.argmax(1) + 1))
        columns[name] = codes.astype(np.int64)
    return Posts(tuple(ids), tuple(posts[i][0] for i in ids), labels, columns)


def _assemble(divisions: Mapping[str, list[str]], posts: Mapping[str, tuple[tuple[str, ...], int, set[str]] | None],
              where: str) -> dict[str, Posts]:
    """The three splits in the divisions' order; every listed post must exist and be decided."""
    out: dict[str, Posts] = {}
    seen: dict[str, str] = {}
    for split in SPLITS:
        ids = divisions.get(split)
        if not isinstance(ids, list):
            raise ValueError(f"{where}: no {split!r} list of post ids")
        for post_id in ids:
            if post_id in seen:
                raise _error(post_id, split, f"listed twice in the divisions ({seen[post_id]} and {split})")
            seen[post_id] = split
            if post_id not in posts:
                raise _error(post_id, split, f"listed in the {split} division but not in the data")
            if posts[post_id] is None:
                raise _error(post_id, "annotators", f"in the {split} division but undecided (three different labels)")
        out[split] = _split(ids, posts)  # type: ignore[arg-type]
    return out


def read_official(folder: str | Path) -> dict[str, Posts]:
    """``train``/``val``/``test`` from the official ``dataset.json`` and ``post_id_divisions.json``."""
    root = Path(folder)
    missing = [f for f in FILES if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"HateXplain not found: {root} lacks {', '.join(missing)}. Put the official repository's "
            f"Data/dataset.json and Data/post_id_divisions.json (github.com/hate-alert/HateXplain) in {root}, "
            f"or pass download=True (kdfair grid --download) to read the Hub's parquet conversion ({HUB_REPO}) "
            "through `datasets`")
    data = json.loads((root / FILES[0]).read_text(encoding="utf-8"))
    divisions = json.loads((root / FILES[1]).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(divisions, dict):
        raise ValueError(f"{root}: {FILES[0]} and {FILES[1]} must each hold a JSON object")
    posts: dict[str, Any] = {}
    for post_id, entry in data.items():
        for key in ("annotators", "rationales", "post_tokens"):
            if key not in entry:
                raise _error(post_id, key, "missing")
        annotators = entry["annotators"]
        for a in annotators:
            for key in ("label", "target"):
                if key not in a:
                    raise _error(post_id, key, "missing from an annotator")
        decided = _post(post_id, [a["label"] for a in annotators], [a["target"] for a in annotators],
                        entry["rationales"], entry["post_tokens"])
        posts[post_id] = None if decided is None else (tuple(entry["post_tokens"]), *decided)
    return _assemble(divisions, posts, str(root))


def read_hub(dataset_dict: Mapping[str, Iterable[Mapping[str, Any]]]) -> dict[str, Posts]:
    """The splits from the Hub's conversion (rows with ``id``, ``annotators`` = ``{label: [ClassLabel
    ints], annotator_id: [...], target: [[...], ...]}``, ``rationales``, ``post_tokens``), keyed
    ``train``/``validation``/``test`` as the Hub names them. The Hub keeps only decided posts."""
    posts: dict[str, Any] = {}
    divisions: dict[str, list[str]] = {}
    for split, hub_split in HUB_SPLITS.items():
        if hub_split not in dataset_dict:
            raise ValueError(f"the Hub data has no {hub_split!r} split; it has: {', '.join(dataset_dict)}")
        divisions[split] = []
        for row in dataset_dict[hub_split]:
            post_id, annotators = row["id"], row["annotators"]
            codes = annotators["label"]
            if any(not 0 <= c < len(HUB_LABELS) for c in codes):
                raise _error(post_id, "label", f"unknown class code in {codes}; the Hub's: {HUB_LABELS}")
            decided = _post(post_id, [HUB_LABELS[c] for c in codes], annotators["target"], row["rationales"],
                            row["post_tokens"])
            posts[post_id] = None if decided is None else (tuple(row["post_tokens"]), *decided)
            divisions[split].append(post_id)
    return _assemble(divisions, posts, HUB_REPO)


def load_hatexplain(data_dir: str | Path | None = None, *, download: bool = False) -> dict[str, Posts]:
    """HateXplain's ``train``, ``val`` and ``test`` splits: the official files in
    ``<data_dir>/hatexplain/`` when present, else (``download=True``) the Hub's parquet conversion."""
    root = check_dir_path(data_dir if data_dir is not None else default_data_dir(), "data_dir") / FOLDER
    if all((root / f).is_file() for f in FILES) or not download:
        return read_official(root)
    from datasets import load_dataset  # the `text` extra; reads the Hub's parquet conversion

    return read_hub(load_dataset(HUB_REPO, revision="refs/convert/parquet"))


# ----------------------------------------------------------------------------- as a Dataset
# tokenisation (the defaults): a WordPiece vocabulary built on the training posts, or a pretrained one
OPTIONS = {"tokenizer": "wordpiece", "max_length": 128, "vocab_size": 8000, "min_frequency": 2}
TOKENIZERS = ("wordpiece", "bert-base-uncased")  # bert-base-uncased: also DistilBERT's vocabulary
PRETRAINED_FOLDER = "pretrained"  # <data_dir>/hatexplain/pretrained/<name>/: save_pretrained files
CLASS_NAMES = ("non-toxic", "toxic")


def hatexplain_config(label: str | None = None, **options: Any) -> dict[str, Any]:
    """The validated config of ``load_dataset("hatexplain", label, **options)``: the label
    (``toxic``) and the tokenisation options :data:`OPTIONS`: ``tokenizer`` ``wordpiece`` (a
    vocabulary of ``vocab_size`` built on the training posts, :func:`kdfair_utils.text_models.train_wordpiece`)
    or ``bert-base-uncased`` (the pretrained models' own); sequences cut and padded to
    ``max_length`` tokens."""
    from .validation import check_choice, check_int

    if label not in (None, "toxic"):
        raise ValueError(f"label {label!r}: hatexplain has one label, 'toxic'")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option data_options.{unknown[0]} for hatexplain; known: "
                         f"{', '.join('data_options.' + k for k in OPTIONS)}")
    config = {**OPTIONS, **options}
    check_choice(config["tokenizer"], "data_options.tokenizer", TOKENIZERS)
    check_int(config["max_length"], "data_options.max_length", minimum=3, maximum=512)
    check_int(config["vocab_size"], "data_options.vocab_size", minimum=100)
    check_int(config["min_frequency"], "data_options.min_frequency", minimum=1)
    if config["tokenizer"] != "wordpiece":  # its vocabulary is the pretrained one: these would key nothing
        for key in ("vocab_size", "min_frequency"):
            if key in options:
                raise ValueError(f"data_options.{key} applies to tokenizer='wordpiece' only")
            del config[key]
    return {"name": "hatexplain", "label": "toxic", **config}


def attribute_values() -> dict[str, tuple[str, ...]]:
    """The names of every attribute's codes: ``gender``/``race`` (:func:`combined_values`), and
    each group's 0/1 column (``no``/``yes``)."""
    return {**{name: combined_values(name) for name in COMBINED}, **{g: ("no", "yes") for g in GROUPS}}


def load_hatexplain_dataset(data_dir: str | Path | None = None, label: str | None = None, *,
                            download: bool = False, **options: Any):
    """HateXplain as a text :class:`~kdfair_utils.datasets.Dataset`: ``train``, ``test`` and
    ``extra["val"]`` with token ids and masks from a WordPiece vocabulary built on the training
    posts (the same posts give the same ids), labels 1 = toxic, and the attributes of
    :func:`attribute_values`. ``config["vocab"]`` is the vocabulary's size (the models' input)."""
    from .datasets import Dataset, Split
    from .text_models import encode, load_tokenizer, train_wordpiece

    config = hatexplain_config(label, **options)
    splits = load_hatexplain(data_dir, download=download)
    pretrained = check_dir_path(data_dir if data_dir is not None else default_data_dir(), "data_dir") / FOLDER \
        / PRETRAINED_FOLDER
    if config["tokenizer"] == "wordpiece":
        tokenizer = train_wordpiece(splits["train"].texts, config["vocab_size"], min_frequency=config["min_frequency"])
    else:
        tokenizer = load_pretrained(lambda where, online: load_tokenizer(where, online=online), pretrained,
                                    config["tokenizer"], download)

    def split(posts: Posts) -> Split:
        tokens, mask = encode(tokenizer, posts.texts, config["max_length"])
        return Split(None, posts.labels, dict(posts.attributes), tokens=tokens, mask=mask)

    return Dataset("hatexplain", "toxic", CLASS_NAMES, attribute_values(), split(splits["train"]),
                   split(splits["test"]), {"val": split(splits["val"])},
                   config={**config, "vocab": len(tokenizer), "pretrained": str(pretrained), "online": download})


def pretrained_source(folder: Path, name: str, online: bool) -> tuple[str, bool]:
    """``(where, online)`` for a pretrained tokenizer or model ``name``: ``folder/name`` when it holds
    ``save_pretrained`` files, else the Hub by name (``online``: downloading; otherwise only what
    an earlier download left in the Hugging Face cache, see :func:`load_pretrained`)."""
    local = Path(folder) / name
    if (local / "config.json").is_file() or (local / "tokenizer_config.json").is_file():
        return str(local), False
    return name, online


def load_pretrained(load: Any, folder: Path, name: str, online: bool) -> Any:
    """``load(where, online)`` for ``name`` (:func:`pretrained_source`); a ``FileNotFoundError``
    naming the folder and the download option when it is neither there nor in the cache."""
    where, online = pretrained_source(folder, name, online)
    try:
        return load(where, online)
    except OSError:
        if online:
            raise
        raise FileNotFoundError(f"{name} not found in {Path(folder) / name} (save_pretrained files: config.json, "
                                "weights, tokenizer files) nor in the Hugging Face cache; put them there, or pass "
                                "download=True (kdfair grid --download) to fetch them from the Hub") from None
