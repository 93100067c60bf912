"""Evaluation logits of cached models, cached apart from the models.

A model's cache key holds only what determines its training
(:func:`~kdfair_utils.datasets.training_config`), so the evaluation data can grow without
retraining anything: inference is cheap, training is not. A model's logits on every evaluation
split of one evaluation set live in ``<runs_dir>/evals/<eval key>/<role>-<key>.npz``, where the
eval key is the first 16 hex digits of :func:`~kdfair_utils.datasets.eval_sha256`. Beside it,
``<role>-<key>.json`` (sealed with a checksum) records the npz file's sha256 and size, the full
evaluation sha256, the sha256 of the ``model.pt`` the logits came from, the logits' shapes, the
test accuracy (overall and per class) and the numerics they were computed with (device type,
precision, threads: those of the model's key).

:func:`ensure_evaluated` verifies every record and computes what is missing or does not match
(damaged, another evaluation set, a retrained model, other numerics) from the model's verified
``model.pt``, saying which and why. A freshly trained model is evaluated by the same function
(:func:`evaluate_and_save`) straight from memory; under the same numerics that gives the same
floats as evaluating its saved weights (a test checks this on the CPU). Writers hold a lock per
model and evaluation set, so concurrent runners never interleave one model's files.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .cache import check_file, file_record, load_json, remove_stale_tmp, save_json, save_npz, seal, unseal
from .class_bias import per_class_accuracy
from .datasets import Dataset

if TYPE_CHECKING:  # grid imports this module
    import torch.nn as nn

    from .grid import ModelSpec

EVAL_FORMAT = 1


def eval_folder(runs_dir: Path, eval_sha256: str) -> Path:
    """Where the evaluation logits of one evaluation set live."""
    return Path(runs_dir) / "evals" / eval_sha256[:16]


def _shapes(data: Dataset) -> dict[str, list[int]]:
    return {name: [len(split), data.num_classes] for name, split in data.eval_splits().items()}


def _lock(runs_dir: Path, eval_sha256: str, spec: ModelSpec) -> Path:
    return Path(runs_dir) / ".locks" / f"eval-{eval_sha256[:16]}-{spec.dirname}.lock"


def verify_eval(folder: Path, spec: ModelSpec, model_meta: dict[str, Any], eval_sha256: str, data: Dataset,
                expected_numerics: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """``(record, None)`` for intact logits of ``spec`` on this evaluation set computed from its
    current weights with ``expected_numerics``; ``(None, reason)`` otherwise (``reason`` None:
    never computed)."""
    path = folder / f"{spec.dirname}.json"
    if not path.exists():
        return None, None
    try:
        record = unseal(load_json(path))
    except (ValueError, OSError) as exc:
        return None, f"{path.name} is unreadable or {exc}"
    if record.get("format") != EVAL_FORMAT or record.get("key") != spec.key:
        return None, f"{path.name} describes other logits"
    if record.get("eval_sha256") != eval_sha256:
        return None, f"{path.name} was computed on another evaluation set"
    if record.get("model_sha256") != model_meta["files"]["model.pt"]["sha256"]:
        return None, f"{path.name} was computed from other weights (the model was retrained)"
    if record.get("numerics") != expected_numerics:
        return None, f"{path.name} was computed with other numerics ({record.get('numerics')})"
    if record.get("shapes") != _shapes(data):
        return None, f"its logits have shapes {record.get('shapes')}, the data needs {_shapes(data)}"
    try:
        check_file(folder / f"{spec.dirname}.npz", record["file"])
    except (ValueError, OSError) as exc:
        return None, str(exc)
    return record, None


def evaluate_and_save(spec: ModelSpec, model: nn.Module | None, model_meta: dict[str, Any], data: Dataset,
                      eval_sha256: str, runs_dir: Path, *, device: str,
                      precision: str) -> tuple[dict[str, Any], bool]:
    """``(record, computed)``: the logits of ``model`` (``None``: loaded from its verified
    ``model.pt``) on every evaluation split, written atomically with their sealed record. Holds
    the model's evaluation lock; an intact record another runner wrote meanwhile is returned as it
    is (``computed`` False)."""
    from .cache import file_lock
    from .train import numerics

    folder = eval_folder(runs_dir, eval_sha256)
    found = numerics(device, precision)
    with file_lock(_lock(runs_dir, eval_sha256, spec)):
        record, _ = verify_eval(folder, spec, model_meta, eval_sha256, data, found)
        if record is not None:
            return record, False
        if folder.is_dir():  # leftovers of a killed writer of this model's files
            remove_stale_tmp(folder, f"{spec.dirname}.npz")
            remove_stale_tmp(folder, f"{spec.dirname}.json")
        if model is None:
            model = load_net(spec.arch, Path(runs_dir) / "models" / spec.dirname, model_meta, data)
        logits = {name: predict_split(model, split, device=device, precision=precision)
                  for name, split in data.eval_splits().items()}
        folder.mkdir(parents=True, exist_ok=True)
        npz = save_npz(folder / f"{spec.dirname}.npz", **logits)
        class_acc, overall = per_class_accuracy(data.test.labels, logits["test"].argmax(1)[None], data.num_classes)
        record = {"format": EVAL_FORMAT, "key": spec.key, "eval_sha256": eval_sha256,
                  "model_sha256": model_meta["files"]["model.pt"]["sha256"], "file": file_record(npz),
                  "shapes": {name: list(v.shape) for name, v in logits.items()},
                  "test_accuracy": float(overall[0]), "test_class_accuracy": class_acc[0].tolist(), "numerics": found}
        save_json(folder / f"{spec.dirname}.json", seal(record))
    return record, True


def load_net(arch: str, model_folder: Path, model_meta: dict[str, Any], data: Dataset) -> nn.Module:
    """The model saved in ``model_folder`` (its ``model.pt`` checked against ``model_meta`` and
    read with ``weights_only=True``), with the input normalisation of ``data``'s training set."""
    from .models import load_state_dict

    path = model_folder / "model.pt"
    try:
        blob = check_file(path, model_meta["files"]["model.pt"])
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}; run the grid again to retrain it") from None
    net = new_model(arch, data)
    net.load_state_dict(load_state_dict(blob, path))
    return net


def new_model(arch: str, data: Dataset, stats: tuple[Any, Any] | None = None) -> nn.Module:
    """A freshly initialised ``arch`` for ``data`` (seed torch first): an image model with the
    input normalisation of the training set's channel ``stats`` (computed if None), or a text
    model (:mod:`kdfair_utils.text_models`) for the data set's vocabulary and sequence length."""
    from .models import build_model
    from .train import with_normalization

    if data.kind == "text":
        from .hatexplain import load_pretrained
        from .text_models import PRETRAINED, build_text_model

        if arch in PRETRAINED:  # pretrained encoder, new classification head (seeded)
            return load_pretrained(lambda where, online: build_text_model(arch, data.num_classes, pretrained=where,
                                                                          online=online),
                                   Path(data.config["pretrained"]), arch, data.config["online"])
        return build_text_model(arch, data.num_classes, vocab_size=data.config["vocab"],
                                max_length=data.train.tokens.shape[1])
    net = build_model(arch, data.num_classes, in_channels=data.image_shape[0], image_size=data.image_shape[1])
    return with_normalization(net, data.train.images, stats)


def predict_split(model: nn.Module, split: Any, *, device: str, precision: str) -> Any:
    """Eval-mode float32 logits ``[N, classes]`` of every example of ``split`` (images or tokens)."""
    if split.tokens is not None:
        from .text_models import predict_text_logits

        return predict_text_logits(model, split.tokens, split.mask, device=device, precision=precision)
    from .train import predict_logits

    return predict_logits(model, split.images, device=device, precision=precision)


def ensure_evaluated(specs: Sequence[ModelSpec], metas: dict[str, dict[str, Any]], data: Dataset, eval_sha256: str,
                     runs_dir: Path, *, device: str, precision: str, expected_numerics: dict[str, Any],
                     progress: bool) -> tuple[dict[str, dict[str, Any]], dict[str, str | None]]:
    """``(records, computed)``: the verified evaluation record of every model (by key), computing
    the missing ones from their weights; ``computed`` maps the key of each model evaluated here to
    why (None: it never was). ``expected_numerics`` are the numerics of the models' keys: a model
    keyed by other numerics than this process has (a cache trained elsewhere) is never evaluated
    here (``RuntimeError``), nor is anything in a read-only runs folder (``ValueError``)."""
    from tqdm.auto import tqdm

    from .validation import is_writable_dir
    from .train import numerics

    folder = eval_folder(runs_dir, eval_sha256)
    records: dict[str, dict[str, Any]] = {}
    todo: list[tuple[ModelSpec, str | None]] = []
    for spec in specs:
        record, reason = verify_eval(folder, spec, metas[spec.key], eval_sha256, data, expected_numerics)
        if record is not None:
            records[spec.key] = record
        else:
            todo.append((spec, reason))
    if todo:
        spec, reason = todo[0]
        where = f"{folder / spec.dirname}.npz: {reason or 'missing'}"
        if numerics(device, precision) != expected_numerics:
            raise RuntimeError(f"{where}; {len(todo)} model(s) keyed by {expected_numerics} have no evaluation "
                               f"logits for this evaluation set, and this process has other numerics: evaluate "
                               f"them where they were trained (run the workers again)")
        if not (is_writable_dir(folder) and is_writable_dir(Path(runs_dir) / ".locks")):
            raise ValueError(f"{where}, and runs_dir {str(runs_dir)!r} is not writable to evaluate {len(todo)} "
                             f"model(s) on this evaluation set")
    computed: dict[str, str | None] = {}
    for spec, reason in tqdm(todo, desc=f"evaluating {len(todo)} cached model(s) on this evaluation set",
                             disable=not progress or not todo):
        records[spec.key], fresh = evaluate_and_save(spec, None, metas[spec.key], data, eval_sha256, runs_dir,
                                                     device=device, precision=precision)
        if fresh:
            if reason is not None:
                tqdm.write(f"re-evaluating {spec.name} ({spec.dirname}): {reason}", file=sys.stderr)
            computed[spec.key] = reason
    return records, computed
