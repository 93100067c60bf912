"""One dataset interface for every dataset of the series.

A :class:`Dataset` holds a train and a test :class:`Split` (uint8 images ``[N, C, H, W]``,
integer labels, and a table of integer-coded protected attributes per example), plus optional
extra evaluation splits such as Trifeature's counterfactual twins.

Available here: ``trifeature`` (generated offline, the default), ``cifar10``, ``cifar100``
and ``svhn`` (read from the files torchvision downloads; ``download=True`` fetches them), and
``tinyimagenet``, ``imagenet`` and ``celeba`` (read from their own folder layouts by
:mod:`kdfair_utils.image_folders`; ``download=True`` fetches CelebA, the others say where to get
them), and ``hatexplain`` (text: token ids and attention masks instead of images,
:mod:`kdfair_utils.hatexplain`; ``download=True`` reads the Hub's copy).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import hatexplain as hx
from . import image_folders as imf
from . import trifeature as tf
from .cache import cached_npz, config_key
from .validation import check_choice, check_dir_path, check_mapping
from .paths import default_data_dir
from .results import DatasetSummary


@dataclass(frozen=True)
class Split:
    """Images (uint8 ``[N, C, H, W]``) or, for text, token ids and their attention mask (int64
    ``[N, L]`` each, ``images`` None), labels (int64 ``[N]``) and protected attributes."""

    images: np.ndarray | None
    labels: np.ndarray
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    source: np.ndarray | None = None  # a twin split: the test image each row is the twin of
    tokens: np.ndarray | None = None
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        if (self.images is None) == (self.tokens is None) or (self.tokens is None) != (self.mask is None):
            raise ValueError("a split holds images, or tokens with their mask, not both")
        if self.tokens is not None:
            if self.tokens.ndim != 2 or len(self.tokens) != n or self.mask.shape != self.tokens.shape:
                raise ValueError(f"tokens and mask must be [N, L] with N={n}, got {self.tokens.shape} and "
                                 f"{self.mask.shape}")
        elif self.images.ndim != 4 or len(self.images) != n:
            raise ValueError(f"images must be [N, C, H, W] with N={n}, got shape {self.images.shape}")
        for name, values in self.attributes.items():
            if len(values) != n:
                raise ValueError(f"attribute {name!r} has {len(values)} values for {n} examples")
        if self.source is not None and (len(self.source) != n or self.source.dtype.kind not in "iu"
                                        or (n and self.source.min() < 0)):
            raise ValueError(f"source must hold {n} non-negative integer indices, got {self.source.dtype} "
                             f"{self.source.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        """What a model reads: ``{"images": ...}`` or ``{"tokens": ..., "mask": ...}``."""
        return {"images": self.images} if self.tokens is None else {"tokens": self.tokens, "mask": self.mask}

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
    def kind(self) -> str:
        """``"image"`` or ``"text"`` (token ids and attention masks)."""
        return "image" if self.train.tokens is None else "text"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        if self.train.images is None:
            raise ValueError(f"{self.name} is text: it has token ids of length {self.train.tokens.shape[1]}, "
                             "not images")
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    def eval_splits(self) -> dict[str, Split]:
        """Every split models are evaluated on: ``test`` first, then the extras."""
        return {"test": self.test, **self.extra}


DATASETS = ("trifeature", "cifar10", "cifar100", "svhn", *imf.IMAGE_FOLDER_DATASETS, "hatexplain")
TEXT_DATASETS = ("hatexplain",)
TRIFEATURE_LABELS = ("shape", "texture", "color", "shape_color", "shape_texture")
# Protected attributes each dataset carries by default, and those with counterfactual twins (known
# before loading); CelebA carries the attributes its data_options name (dataset_attributes).
ATTRIBUTES: dict[str, tuple[str, ...]] = {"trifeature": tuple(tf.ATTRIBUTES), "cifar10": (),
                                          "cifar100": ("superclass",), "svhn": (), "tinyimagenet": (),
                                          "imagenet": (), "celeba": ("young", "male"),
                                          "hatexplain": ("gender", "race", *hx.GROUPS)}
TWIN_ATTRIBUTES: dict[str, tuple[str, ...]] = {"trifeature": ("color", "texture")}


def dataset_attributes(name: str, options: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The protected attributes ``load_dataset(name, **options)`` will carry, known before loading."""
    check_choice(name, "dataset", DATASETS)
    if name == "celeba" and options and "attributes" in options:
        return tuple(imf.image_dataset_config("celeba", **options)["attributes"])
    return ATTRIBUTES[name]


def dataset_config(name: str = "trifeature", label: str | None = None, **options: Any) -> dict[str, Any]:
    """The config that identifies a dataset (part of every model's cache key), without loading it."""
    check_choice(name, "dataset", DATASETS)
    if name == "trifeature":
        if label is not None:
            check_choice(label, "label", TRIFEATURE_LABELS)
        return {"name": "trifeature", "label": label or "shape", **trifeature_spec(options).to_dict()}
    if name in imf.IMAGE_FOLDER_DATASETS:
        return imf.image_dataset_config(name, label, **options)
    if name == "hatexplain":
        return hx.hatexplain_config(label, **options)
    if label not in (None, "class"):
        raise ValueError(f"label {label!r}: {name} has one label, 'class'")
    if options:
        raise ValueError(f"data_options: dataset {name!r} takes no options, got {sorted(options)}")
    return {"name": name, "label": "class"}


def trifeature_spec(options: Any) -> tf.TrifeatureSpec:
    """The validated :class:`~kdfair_utils.trifeature.TrifeatureSpec` of ``data_options``."""
    check_mapping(options, "data_options")
    known = tf.TrifeatureSpec.__dataclass_fields__
    for key in options:
        if key not in known:
            raise ValueError(f"unknown option data_options.{key} for trifeature; known: "
                             f"{', '.join('data_options.' + k for k in known)}")
    spec = tf.TrifeatureSpec(**options)
    spec.validate(prefix="data_options.")
    return spec


def load_dataset(name: str = "trifeature", label: str | None = None, *, data_dir: str | Path | None = None,
                 download: bool = False, **options: Any) -> Dataset:
    """Load a dataset by name. ``options`` are dataset-specific (Trifeature: the fields of
    :class:`~kdfair_utils.trifeature.TrifeatureSpec`). Raises ``ValueError`` on unknown names."""
    data_dir = check_dir_path(data_dir if data_dir is not None else default_data_dir(), "data_dir")
    dataset_config(name, label, **options)  # every argument checked before anything is read or written
    if name == "trifeature":
        return load_trifeature(label or "shape", data_dir=data_dir, **options)
    if name == "hatexplain":
        return hx.load_hatexplain_dataset(data_dir, label, download=download, **options)
    if options and name not in imf.IMAGE_FOLDER_DATASETS:
        raise ValueError(f"dataset {name!r} takes no options, got {sorted(options)}")
    if name in ("cifar10", "cifar100"):
        return load_cifar(name, label=label, data_dir=data_dir, download=download)
    if name == "svhn":
        return load_svhn(label=label, data_dir=data_dir, download=download)
    if name in imf.IMAGE_FOLDER_DATASETS:
        return load_image_folder(name, label, data_dir=data_dir, download=download, **options)
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def load_image_folder(name: str, label: str | None = None, *, data_dir: Path, download: bool = False,
                      progress: bool = True, **options: Any) -> Dataset:
    """Tiny ImageNet, ImageNet or CelebA (:mod:`kdfair_utils.image_folders`). With ``download``
    CelebA is fetched by torchvision; the others have no public automatic download, so a missing
    folder is a ``FileNotFoundError`` that says where to get it and which layout to put it in,
    raised before anything is written."""
    if download and name == "celeba":
        imf.download_celeba(data_dir)
    imf.check_present(name, data_dir)
    if name == "celeba":
        return imf.load_celeba(data_dir, label=label or "smiling", progress=progress, **options)
    loader = imf.load_tinyimagenet if name == "tinyimagenet" else imf.load_imagenet
    return loader(data_dir, progress=progress, **options)


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
def training_config(name: str = "trifeature", label: str | None = None, **options: Any) -> dict[str, Any]:
    """The part of :func:`dataset_config` that determines the training split: what a model's
    cache key holds. Evaluation-only options (Trifeature's twins, and the size of a separate
    evaluation split) are left out, so a model is not retrained when the evaluation data change."""
    config = dataset_config(name, label, **options)
    if name == "trifeature":
        return {"name": "trifeature", "label": config["label"], **trifeature_spec(options).training_fields()}
    if name == "celeba":  # the attribute table is evaluation data
        return {k: v for k, v in config.items() if k != "attributes"}
    return config


def _hash_arrays(h: Any, name: str, arrays: dict[str, np.ndarray]) -> None:
    for key in sorted(arrays):
        if isinstance(arrays[key], np.memmap) and isinstance(arrays[key].base, mmap.mmap) and arrays[key].filename:
            # a whole prepared file (not a slice), too large to read on every run (ImageNet): its
            # name holds the hash of its sources
            h.update(f"{name}/{key}:memmap:{Path(arrays[key].filename).name}:{arrays[key].shape}".encode())
            continue
        arr = np.ascontiguousarray(arrays[key])
        h.update(f"{name}/{key}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(arr.data)


def train_sha256(data: Dataset) -> str:
    """sha256 over what training sees (class names, training images and labels): what a cached
    model records as the data it was trained on."""
    h = hashlib.sha256(json.dumps({"classes": data.class_names}).encode())
    _hash_arrays(h, "train", {**data.train.inputs, "labels": data.train.labels})
    return h.hexdigest()


def eval_sha256(data: Dataset) -> str:
    """sha256 over every evaluation split (images, labels, attributes, twins' sources), the class
    names and the attribute values: what cached evaluation logits record."""
    h = hashlib.sha256(json.dumps({"classes": data.class_names, "attributes": data.attribute_values},
                                  sort_keys=True).encode())
    for name, split in data.eval_splits().items():
        _hash_arrays(h, name, {**split.inputs, "labels": split.labels,
                               **{f"attr_{k}": v for k, v in split.attributes.items()},
                               **({"source": split.source} if split.source is not None else {})})
    return h.hexdigest()


TRIFEATURE_ARRAYS = ("images", "train_idx", "test_idx", "factor_shape", "factor_color", "factor_texture",
                     "cf_source", "cf_color_images", "cf_color_values", "cf_texture_images", "cf_texture_values")


def trifeature_arrays(spec: tf.TrifeatureSpec, data_dir: Path) -> dict[str, np.ndarray]:
    """Generated images, factors and counterfactual twins, cached in ``data_dir`` by spec.

    The cache file embeds its spec (:func:`~kdfair_utils.cache.cached_npz`); a file that cannot
    be read, lacks an array, or holds another spec's data (a replaced file) is regenerated, with a
    message naming it. Generation holds a lock, so concurrent runners generate a file once.
    """
    spec.validate()
    path = data_dir / "trifeature" / f"trifeature-{config_key(spec.to_dict())}.npz"

    def make() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        params, train_idx, test_idx, source = tf.sample_splits(spec)
        test_params = {k: v[test_idx[source]] for k, v in params.items()}
        arrays = {
            "images": tf.render(params, spec),
            "train_idx": train_idx,
            "test_idx": test_idx,
            "cf_source": source,
            **{f"factor_{k}": params[k] for k in tf.ATTRIBUTES},
        }
        for attr in ("color", "texture"):
            twin = tf.counterfactual_params(test_params, attr, spec.seed)
            arrays[f"cf_{attr}_images"] = tf.render(twin, spec)
            arrays[f"cf_{attr}_values"] = twin[attr]
        return arrays, arrays

    return cached_npz(path, spec.to_dict(), lambda arrays: _check_trifeature(arrays, spec), make, root=data_dir,
                      root_name="data_dir", what="Trifeature data cache")


def _check_trifeature(arrays: dict[str, np.ndarray],
                      spec: tf.TrifeatureSpec) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """``(arrays, None)`` if a cache file's arrays are complete and fit together; ``(None, problem)``."""
    missing = [k for k in TRIFEATURE_ARRAYS if k not in arrays]
    if missing:
        return None, f"it lacks {', '.join(missing)}"
    n, n_test = len(arrays["images"]), len(arrays["test_idx"])
    size = (spec.image_size, spec.image_size)
    consistent = (arrays["images"].shape[2:] == size and arrays["images"].dtype == np.uint8
                  and all(len(arrays[f"factor_{k}"]) == n for k in tf.ATTRIBUTES)
                  and len(arrays["train_idx"]) + n_test == n
                  and all(0 <= arrays[k].min() and arrays[k].max() < n for k in ("train_idx", "test_idx"))
                  and len(arrays["cf_source"]) and 0 <= arrays["cf_source"].min()
                  and arrays["cf_source"].max() < n_test
                  and all(len(arrays[f"cf_{a}_{part}"]) == len(arrays["cf_source"]) for a in ("color", "texture")
                          for part in ("images", "values")))
    return (arrays, None) if consistent else (None, "its arrays do not fit together")


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
    originals' labels. Row i is the twin of test image ``source[i]`` (all test images in order,
    unless ``twins_per_combination`` chose a stratified subset).
    """
    if label not in TRIFEATURE_LABELS:
        raise ValueError(f"unknown Trifeature label {label!r}; known: {', '.join(TRIFEATURE_LABELS)}")
    config = dataset_config("trifeature", label, **spec_options)
    spec = tf.TrifeatureSpec(**spec_options)
    arrays = trifeature_arrays(spec, Path(data_dir) if data_dir is not None else default_data_dir())
    factors = {k: arrays[f"factor_{k}"].astype(np.int64) for k in tf.ATTRIBUTES}

    def make_split(idx: np.ndarray, images: np.ndarray, overrides: dict[str, np.ndarray] | None = None,
                   source: np.ndarray | None = None) -> Split:
        f = {k: v[idx] for k, v in factors.items()}
        f.update(overrides or {})
        labels, _ = _trifeature_labels(label, f)
        return Split(images, labels.astype(np.int64), f, source)

    train_idx, test_idx = arrays["train_idx"], arrays["test_idx"]
    source = arrays["cf_source"].astype(np.int64)
    _, class_names = _trifeature_labels(label, factors)
    extra = {
        f"test_cf_{attr}": make_split(test_idx[source], arrays[f"cf_{attr}_images"],
                                      {attr: arrays[f"cf_{attr}_values"].astype(np.int64)}, source)
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


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers, strings, numbers and numpy arrays, and nothing else: a pickle
    that names any other global (``os.system``, ``builtins.eval``, ...) is refused before it can
    run. CIFAR's files need only these."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"), ("copy_reg", "_reconstructor"),
               ("copyreg", "_reconstructor"), ("__builtin__", "object"), ("builtins", "object")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only arrays and plain data are allowed")


def read_cifar_pickle(path: Path) -> Any:
    """One CIFAR python-pickle file, read with :class:`_ArraysOnlyUnpickler` (no code runs);
    ``ValueError`` naming the file if it is not such a file."""
    try:
        with open(path, "rb") as fh:
            return _ArraysOnlyUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise ValueError(f"{path}: not a CIFAR data file ({type(exc).__name__}: {exc})") from None


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
        raise FileNotFoundError(f"{root / folder} not found (the python version torchvision downloads, unpacked "
                                f"there); pass download=True (`kdfair grid --download`; needs internet)")

    def read(files: list[str]) -> Split:
        images, labels, coarse = [], [], []
        for fname in files:
            batch = read_cifar_pickle(root / folder / fname)
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[label_key], dtype=np.int64))
            if b"coarse_labels" in batch:
                coarse.append(np.asarray(batch[b"coarse_labels"], dtype=np.int64))
        attrs = {"superclass": np.concatenate(coarse)} if coarse else {}
        return Split(np.concatenate(images), np.concatenate(labels), attrs)

    meta_file = "batches.meta" if name == "cifar10" else "meta"
    meta = read_cifar_pickle(root / folder / meta_file)
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
            raise FileNotFoundError(f"{path} not found (the .mat files torchvision downloads); pass download=True "
                                    f"(`kdfair grid --download`; needs internet)")
        mat = loadmat(path)
        images = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1))).astype(np.uint8)
        labels = mat["y"].astype(np.int64).ravel() % 10
        return Split(images, labels)

    return Dataset("svhn", "class", tuple(str(d) for d in range(10)), {}, read("train"), read("test"),
                   config=dataset_config("svhn"))
