"""One dataset interface for every dataset of the series.

A :class:`Dataset` holds a train and a test :class:`Split` (uint8 images ``[N, C, H, W]``,
integer labels, and a table of integer-coded protected attributes per example), plus optional
extra evaluation splits such as Trifeature's counterfactual twins.

Available here: ``trifeature`` (generated offline, the default), ``cifar10``, ``cifar100``
and ``svhn`` (read from the files torchvision downloads; ``download=True`` fetches them).
CelebA and HateXplain are planned to join through the same interface.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import trifeature as tf
from .cache import config_key, load_npz, save_npz
from .paths import default_data_dir
from .results import DatasetSummary


@dataclass(frozen=True)
class Split:
    """Images (uint8 ``[N, C, H, W]``), labels (int64 ``[N]``) and protected attributes."""

    images: np.ndarray
    labels: np.ndarray
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.images.ndim != 4 or len(self.images) != n:
            raise ValueError(f"images must be [N, C, H, W] with N={n}, got shape {self.images.shape}")
        for name, values in self.attributes.items():
            if len(values) != n:
                raise ValueError(f"attribute {name!r} has {len(values)} values for {n} examples")

    def __len__(self) -> int:
        return len(self.labels)

    def attribute_table(self, value_names: dict[str, tuple[str, ...]] | None = None):
        """The protected attributes as a pandas DataFrame (names instead of codes if given)."""
        import pandas as pd

        table = pd.DataFrame({k: np.asarray(v) for k, v in self.attributes.items()})
        for col, names in (value_names or {}).items():
            if col in table:
                table[col] = pd.Categorical.from_codes(table[col], categories=list(names))
        return table


@dataclass(frozen=True)
class Dataset:
    name: str
    label: str
    class_names: tuple[str, ...]
    attribute_values: dict[str, tuple[str, ...]]
    train: Split
    test: Split
    extra: dict[str, Split] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    def eval_splits(self) -> dict[str, Split]:
        """Every split models are evaluated on: ``test`` first, then the extras."""
        return {"test": self.test, **self.extra}


DATASETS = ("trifeature", "cifar10", "cifar100", "svhn")
TRIFEATURE_LABELS = ("shape", "texture", "color", "shape_color", "shape_texture")


def dataset_config(name: str = "trifeature", label: str | None = None, **options: Any) -> dict[str, Any]:
    """The config that identifies a dataset (part of every model's cache key), without loading it."""
    if name == "trifeature":
        known = set(tf.TrifeatureSpec.__dataclass_fields__)
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown Trifeature option(s) {sorted(unknown)}; known: {sorted(known)}")
        return {"name": "trifeature", "label": label or "shape", **tf.TrifeatureSpec(**options).to_dict()}
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return {"name": name, "label": "class"}


def load_dataset(name: str = "trifeature", label: str | None = None, *, data_dir: str | Path | None = None,
                 download: bool = False, **options: Any) -> Dataset:
    """Load a dataset by name. ``options`` are dataset-specific (Trifeature: the fields of
    :class:`~kdfair_utils.trifeature.TrifeatureSpec`). Raises ``ValueError`` on unknown names."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    if name == "trifeature":
        return load_trifeature(label or "shape", data_dir=data_dir, **options)
    if options:
        raise ValueError(f"dataset {name!r} takes no options, got {sorted(options)}")
    if name in ("cifar10", "cifar100"):
        return load_cifar(name, label=label, data_dir=data_dir, download=download)
    if name == "svhn":
        return load_svhn(label=label, data_dir=data_dir, download=download)
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def dataset_summary(data: Dataset, attributes: tuple[str, ...] | list[str] = ()) -> DatasetSummary:
    """What the series ran on, and for each protected attribute the DPD (%) of a perfect
    classifier on the test split — the floor that base-rate differences alone impose on DPD."""
    from .group_fairness import multiclass_fairness

    for a in attributes:
        if a not in data.test.attributes:
            raise ValueError(f"unknown attribute {a!r}; {data.name} has: {', '.join(data.test.attributes) or 'none'}")
    floor = {a: 100 * float(multiclass_fairness(data.test.labels, data.test.labels, metric="dpd",
                                                sensitive_features=data.test.attributes[a], n_classes=data.num_classes))
             for a in attributes}
    return DatasetSummary(name=data.name, task=data.label, n_train=len(data.train), n_test=len(data.test),
                          n_classes=data.num_classes, base_rate_dpd=floor)


# ----------------------------------------------------------------------------- Trifeature
def trifeature_arrays(spec: tf.TrifeatureSpec, data_dir: Path) -> dict[str, np.ndarray]:
    """Generated images, factors and counterfactual twins, cached in ``data_dir`` by spec."""
    spec.validate()
    path = data_dir / "trifeature" / f"trifeature-{config_key(spec.to_dict())}.npz"
    if path.exists():
        return load_npz(path)
    params = tf.sample_params(spec)
    train_idx, test_idx = tf.split_indices(len(params["shape"]), spec.test_fraction, spec.seed)
    test_params = {k: v[test_idx] for k, v in params.items()}
    arrays = {
        "images": tf.render(params, spec),
        "train_idx": train_idx,
        "test_idx": test_idx,
        **{f"factor_{k}": params[k] for k in tf.ATTRIBUTES},
    }
    for attr in ("color", "texture"):
        twin = tf.counterfactual_params(test_params, attr, spec.seed)
        arrays[f"cf_{attr}_images"] = tf.render(twin, spec)
        arrays[f"cf_{attr}_values"] = twin[attr]
    save_npz(path, **arrays)
    return arrays


def _trifeature_labels(label: str, factors: dict[str, np.ndarray]) -> tuple[np.ndarray, tuple[str, ...]]:
    if label in tf.ATTRIBUTES:
        return factors[label], tf.ATTRIBUTES[label]
    first, second = label.split("_")
    names = tuple(f"{a}/{b}" for a in tf.ATTRIBUTES[first] for b in tf.ATTRIBUTES[second])
    return factors[first] * 10 + factors[second], names


def load_trifeature(label: str = "shape", *, data_dir: str | Path | None = None, **spec_options: Any) -> Dataset:
    """Trifeature with ``label`` in :data:`TRIFEATURE_LABELS`; attributes shape/texture/colour.

    Extra splits ``test_cf_color`` / ``test_cf_texture`` are the test images' counterfactual
    twins (same geometry and texture phase; colour or texture changed), with the twin's
    attribute values; their labels are recomputed, so for ``label="shape"`` they equal the
    originals' labels.
    """
    if label not in TRIFEATURE_LABELS:
        raise ValueError(f"unknown Trifeature label {label!r}; known: {', '.join(TRIFEATURE_LABELS)}")
    config = dataset_config("trifeature", label, **spec_options)
    spec = tf.TrifeatureSpec(**spec_options)
    arrays = trifeature_arrays(spec, Path(data_dir) if data_dir is not None else default_data_dir())
    factors = {k: arrays[f"factor_{k}"].astype(np.int64) for k in tf.ATTRIBUTES}

    def make_split(idx: np.ndarray, images: np.ndarray, overrides: dict[str, np.ndarray] | None = None) -> Split:
        f = {k: v[idx] for k, v in factors.items()}
        f.update(overrides or {})
        labels, _ = _trifeature_labels(label, f)
        return Split(images, labels.astype(np.int64), f)

    train_idx, test_idx = arrays["train_idx"], arrays["test_idx"]
    _, class_names = _trifeature_labels(label, factors)
    extra = {
        f"test_cf_{attr}": make_split(test_idx, arrays[f"cf_{attr}_images"],
                                      {attr: arrays[f"cf_{attr}_values"].astype(np.int64)})
        for attr in ("color", "texture")
    }
    return Dataset(
        name="trifeature", label=label, class_names=class_names, attribute_values=dict(tf.ATTRIBUTES),
        train=make_split(train_idx, arrays["images"][train_idx]),
        test=make_split(test_idx, arrays["images"][test_idx]),
        extra=extra, config=config,
    )


# ----------------------------------------------------------------------------- CIFAR / SVHN
_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels"),
}


def load_cifar(name: str, *, label: str | None = None, data_dir: str | Path | None = None,
               download: bool = False) -> Dataset:
    """CIFAR-10/100 from the python-pickle files (``<data_dir>/cifar-10-batches-py/...``).

    ``download=True`` asks torchvision to fetch them first. CIFAR-100 carries its 20 coarse
    superclasses as the attribute ``superclass`` (the paper uses no protected attribute here).
    """
    folder, train_files, test_files, label_key = _CIFAR[name]
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if label not in (None, "class"):
        raise ValueError(f"{name} has one label, 'class'; got label={label!r}")
    if download and not (root / folder).exists():
        import torchvision

        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        cls(str(root), train=True, download=True)
    if not (root / folder).exists():
        raise FileNotFoundError(f"{root / folder} not found; pass download=True (needs internet)")

    def read(files: list[str]) -> Split:
        images, labels, coarse = [], [], []
        for fname in files:
            with open(root / folder / fname, "rb") as fh:
                batch = pickle.load(fh, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[label_key], dtype=np.int64))
            if b"coarse_labels" in batch:
                coarse.append(np.asarray(batch[b"coarse_labels"], dtype=np.int64))
        attrs = {"superclass": np.concatenate(coarse)} if coarse else {}
        return Split(np.concatenate(images), np.concatenate(labels), attrs)

    meta_file = "batches.meta" if name == "cifar10" else "meta"
    with open(root / folder / meta_file, "rb") as fh:
        meta = pickle.load(fh, encoding="bytes")
    key = b"label_names" if name == "cifar10" else b"fine_label_names"
    class_names = tuple(s.decode() for s in meta[key])
    attr_values = {}
    if name == "cifar100":
        attr_values["superclass"] = tuple(s.decode() for s in meta[b"coarse_label_names"])
    return Dataset(name, "class", class_names, attr_values, read(train_files), read(test_files),
                   config=dataset_config(name))


def load_svhn(*, label: str | None = None, data_dir: str | Path | None = None, download: bool = False) -> Dataset:
    """SVHN (cropped digits) from ``<data_dir>/svhn/{train,test}_32x32.mat``; digit '0' is stored as 10."""
    from scipy.io import loadmat

    if label not in (None, "class"):
        raise ValueError(f"svhn has one label, 'class'; got label={label!r}")
    root = (Path(data_dir) if data_dir is not None else default_data_dir()) / "svhn"
    if download:
        import torchvision

        for split in ("train", "test"):
            if not (root / f"{split}_32x32.mat").exists():
                torchvision.datasets.SVHN(str(root), split=split, download=True)

    def read(split: str) -> Split:
        path = root / f"{split}_32x32.mat"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; pass download=True (needs internet)")
        mat = loadmat(path)
        images = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1))).astype(np.uint8)
        labels = mat["y"].astype(np.int64).ravel() % 10
        return Split(images, labels)

    return Dataset("svhn", "class", tuple(str(d) for d in range(10)), {}, read("train"), read("test"),
                   config=dataset_config("svhn"))
