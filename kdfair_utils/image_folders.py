"""Offline readers for Tiny ImageNet, ImageNet (ILSVRC-2012) and CelebA in their distributed layouts.

Each loader returns a :class:`~kdfair_utils.datasets.Dataset`; :func:`layout_help` says which
files it reads and where to get them. Nothing in the data set folders is ever moved or written.

Conventions, the same for all three:

* Decoding: PIL, converted to RGB (grayscale and CMYK JPEGs get 3 channels), cropped to the
  largest central square, resized to ``image_size`` x ``image_size`` with ``Image.BILINEAR``
  (anti-aliased when shrinking); an image already of that size is kept as it is. For ImageNet
  this is "resize the shorter side, then center crop" (the same region, cropped first); for
  CelebA's 178x218 faces it is rows 20..197 (178x178), then the resize.
* Classes: Tiny ImageNet and ImageNet label an image by the index of its wnid in the sorted
  wnids, and ``class_names`` are the sorted wnids; :func:`class_words` gives their
  human-readable names (kept out of ``Dataset.config``, which identifies the data in model
  cache keys and must be computable before loading: :func:`image_dataset_config`).
* Cache: decoded images live in ``cache_dir``, by default ``<data_dir>/kdfair-cache/<name>/``
  (beside the data set's folder, never inside it; pass ``cache_dir`` when ``data_dir`` is
  read-only). A cache file's key is its data set, image size, crop convention and the ordered
  list of image files with their byte sizes: adding, removing, renaming or resizing an image
  gives a new file (an image rewritten in place at the same size does not: delete the cache
  then). Labels and attributes are parsed from the text files on every load, so they are never
  stale, and CelebA's undersampling is applied after the cache (a new seed decodes nothing).
  Files are written atomically under a lock and checked when read; one that fails the check is
  regenerated, with a message naming it.
* Errors: a missing data set raises ``FileNotFoundError`` (with :func:`layout_help`) before
  anything is read or written; a malformed annotation file raises ``ValueError`` naming the
  file and line; an image that is listed but absent raises ``FileNotFoundError`` naming both.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from .cache import cached_npz, config_key, file_lock, load_json, save_json, seal, unseal
from .paths import usable_cores
from .validation import SEED_RANGE, check_bool, check_choice, check_dir_path, check_int, check_writable_dir

if TYPE_CHECKING:  # imported where used: datasets.py may import this module in turn
    from .datasets import Dataset

IMAGE_FOLDER_DATASETS = ("tinyimagenet", "imagenet", "celeba")
FOLDERS = {"tinyimagenet": "tiny-imagenet-200", "imagenet": "imagenet", "celeba": "celeba"}
CACHE_DIRNAME = "kdfair-cache"
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
TRANSFORM = "rgb/center-square/bilinear"  # in every cache key: change it when the decoding changes
CHUNK_ROWS = 1024  # images decoded per step; for ImageNet also the unit of resumption
DECODE_THREADS = usable_cores(8)  # PIL releases the GIL while decoding and resizing

CELEBA_ATTRIBUTES = (
    "5_o_clock_shadow", "arched_eyebrows", "attractive", "bags_under_eyes", "bald", "bangs", "big_lips",
    "big_nose", "black_hair", "blond_hair", "blurry", "brown_hair", "bushy_eyebrows", "chubby", "double_chin",
    "eyeglasses", "goatee", "gray_hair", "heavy_makeup", "high_cheekbones", "male", "mouth_slightly_open",
    "mustache", "narrow_eyes", "no_beard", "oval_face", "pale_skin", "pointy_nose", "receding_hairline",
    "rosy_cheeks", "sideburns", "smiling", "straight_hair", "wavy_hair", "wearing_earrings", "wearing_hat",
    "wearing_lipstick", "wearing_necklace", "wearing_necktie", "young",
)  # list_attr_celeba.txt's header, lower-cased, in its order
CELEBA_FILES = ("list_attr_celeba.txt", "list_eval_partition.txt", "identity_CelebA.txt",
                "list_bbox_celeba.txt", "list_landmarks_align_celeba.txt")
CELEBA_PARTITIONS = {"0": "train", "1": "valid", "2": "test"}
_REQUIRED = {  # a trailing "/" marks a folder
    "tinyimagenet": ("wnids.txt", "words.txt", "train/", "val/images/", "val/val_annotations.txt"),
    "imagenet": ("train/", "val/"),
    "celeba": ("img_align_celeba/", *CELEBA_FILES),
}
_OPTIONS = {"tinyimagenet": ("image_size",), "imagenet": ("image_size",),
            "celeba": ("attributes", "image_size", "seed", "undersample")}
_PLUS_MINUS_ONE = frozenset(("1", "-1"))

_LAYOUTS = {
    "tinyimagenet": """\
Tiny ImageNet (200 classes, 64x64): <data_dir>/tiny-imagenet-200/
  wnids.txt                              the 200 wnids, one per line
  words.txt                              wnid<TAB>names (class_words reads it)
  train/<wnid>/images/<wnid>_<k>.JPEG    500 per class (train/<wnid>/<wnid>_boxes.txt is not read)
  val/images/val_<k>.JPEG                10,000 images: the test split
  val/val_annotations.txt                file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1
  test/                                  unlabelled, not read
Get it: download http://cs231n.stanford.edu/tiny-imagenet-200.zip (about 240 MB) and unzip it in <data_dir>.""",
    "imagenet": """\
ImageNet (ILSVRC-2012, 1000 classes): <data_dir>/imagenet/
  train/<wnid>/*.JPEG    1,281,167 images in 1000 wnid folders
  val/<wnid>/*.JPEG      50,000 images sorted into the same wnid folders: the test split
  meta.bin               optional (torchvision writes it): the class names for class_words
Get it: register at https://image-net.org/download.php, download ILSVRC2012_img_train.tar,
ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz into <data_dir>/imagenet/, then run
torchvision.datasets.ImageNet(root="<data_dir>/imagenet", split="train") and split="val" once:
it unpacks them into this layout and writes meta.bin.""",
    "celeba": """\
CelebA (202,599 aligned faces, 178x218): <data_dir>/celeba/ (torchvision's layout)
  img_align_celeba/000001.jpg ... 202599.jpg
  list_attr_celeba.txt          count, the 40 attribute names, then 'file  -1  1 ...' per image
  list_eval_partition.txt       'file 0|1|2' (train, valid, test)
  identity_CelebA.txt, list_bbox_celeba.txt, list_landmarks_align_celeba.txt (present, not read)
Get it: download=True, i.e. kdfair_utils.image_folders.download_celeba(<data_dir>), which runs
torchvision.datasets.CelebA(root=<data_dir>, split="all", download=True) (needs internet; Google
Drive refuses when its daily quota is spent: retry later), or download the files by hand from
https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html into that folder.""",
}


# ----------------------------------------------------------------------------- layout and presence
def layout_help(name: str) -> str:
    """The folder layout ``name``'s loader expects and where to get the data."""
    check_choice(name, "dataset", IMAGE_FOLDER_DATASETS)
    return _LAYOUTS[name]


def check_present(name: str, data_dir: Path | str) -> None:
    """``FileNotFoundError`` naming what ``<data_dir>/<folder>/`` lacks, with :func:`layout_help`;
    reads no file and writes nothing."""
    check_choice(name, "dataset", IMAGE_FOLDER_DATASETS)
    root = Path(data_dir) / FOLDERS[name]
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: {root} not found.\n{layout_help(name)}")
    missing = [r for r in _REQUIRED[name] if not ((root / r).is_dir() if r.endswith("/") else (root / r).is_file())]
    if missing:
        raise FileNotFoundError(f"{name}: {root} lacks {', '.join(missing)}.\n{layout_help(name)}")


def download_celeba(data_dir: Path | str) -> None:
    """Fetch CelebA into ``<data_dir>/celeba/`` with torchvision (needs internet), unless its
    files are already there: then nothing is downloaded or checked against md5 sums."""
    data_dir = check_dir_path(data_dir, "data_dir")
    try:
        check_present("celeba", data_dir)
        return
    except FileNotFoundError:
        pass
    import torchvision

    torchvision.datasets.CelebA(root=str(data_dir), split="all", download=True)
    check_present("celeba", data_dir)


def image_dataset_config(name: str, label: str | None = None, **options: Any) -> dict[str, Any]:
    """The validated config identifying an image-folder data set (``Dataset.config``), computed
    without reading anything. CelebA's ``seed`` is recorded only with ``undersample=True``."""
    check_choice(name, "dataset", IMAGE_FOLDER_DATASETS)
    unknown = sorted(set(options) - set(_OPTIONS[name]))
    if unknown:
        raise ValueError(f"data_options: {name} takes {', '.join(_OPTIONS[name])}; got {', '.join(unknown)}")
    image_size = check_int(options.get("image_size", 64), "image_size", minimum=1, maximum=4096)
    if name != "celeba":
        if label not in (None, "class"):
            raise ValueError(f"label {label!r}: {name} has one label, 'class'")
        return {"name": name, "label": "class", "image_size": image_size}
    label = _celeba_name(label if label is not None else "smiling", "label")
    attributes = _celeba_attributes(options.get("attributes", ("young", "male")))
    undersample = check_bool(options.get("undersample", True), "undersample")
    config = {"name": "celeba", "label": label, "image_size": image_size, "attributes": list(attributes),
              "undersample": undersample}
    if undersample:
        config["seed"] = check_int(options.get("seed", 0), "seed", minimum=SEED_RANGE[0], maximum=SEED_RANGE[1])
    return config


def _celeba_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or value not in CELEBA_ATTRIBUTES:
        raise ValueError(f"{what} {value!r} is not a CelebA attribute; known (lower-case): "
                         f"{', '.join(CELEBA_ATTRIBUTES)}")
    return value


def _celeba_attributes(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(f"attributes must be a tuple of CelebA attribute names, got {value!r}")
    names = tuple(_celeba_name(v, "attribute") for v in value)
    if len(set(names)) != len(names):
        raise ValueError(f"attributes has duplicates: {list(names)}")
    return names


# ----------------------------------------------------------------------------- Tiny ImageNet
def load_tinyimagenet(data_dir: Path | str, *, image_size: int = 64, cache_dir: Path | str | None = None,
                      progress: bool = False) -> Dataset:
    """Tiny ImageNet from ``<data_dir>/tiny-imagenet-200/``: train (100,000 images) and, as the
    test split, val (10,000, in the order of ``val_annotations.txt``); train images in sorted
    wnid, then file-name order. No protected attributes. The decoded images stay in memory
    (1.35 GB at 64 px) and are cached as one ``.npz`` of that size."""
    from .datasets import Dataset, Split

    config = image_dataset_config("tinyimagenet", image_size=image_size)
    data_dir, cache_root = _dirs(data_dir, cache_dir, progress)
    check_present("tinyimagenet", data_dir)
    root = data_dir / FOLDERS["tinyimagenet"]
    wnids = _read_wnids(root / "wnids.txt")
    train_files, train_labels = _tiny_train(root, wnids)
    val_files, val_labels = _tiny_val(root, {w: k for k, w in enumerate(wnids)})
    images = _cached_images(cache_root, "tinyimagenet", root, train_files + val_files, image_size, progress)
    n = len(train_files)
    return Dataset("tinyimagenet", "class", tuple(wnids), {}, Split(images[:n], train_labels),
                   Split(images[n:], val_labels), config=config)


def _read_wnids(path: Path) -> list[str]:
    """The sorted wnids of ``wnids.txt`` (one per line; blank lines skipped)."""
    seen: dict[str, int] = {}
    for i, line in _lines(path):
        parts = line.split()
        if len(parts) != 1:
            raise _bad(path, i, f"expected one wnid, got {line!r}")
        if parts[0] in seen:
            raise _bad(path, i, f"wnid {parts[0]} repeats line {seen[parts[0]]}")
        seen[parts[0]] = i
    if not seen:
        raise ValueError(f"{path}: lists no wnid")
    return sorted(seen)


def _tiny_train(root: Path, wnids: list[str]) -> tuple[list[Path], np.ndarray]:
    train = root / "train"
    stray = sorted({d.name for d in train.iterdir() if d.is_dir() and not d.name.startswith(".")} - set(wnids))
    if stray:
        raise ValueError(f"{train}: folders {', '.join(stray[:5])} are not in {root / 'wnids.txt'}")
    files: list[Path] = []
    labels: list[int] = []
    for k, wnid in enumerate(wnids):
        folder = train / wnid / "images"
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found ({root / 'wnids.txt'} lists {wnid})")
        found = _image_files(folder)
        if not found:
            raise ValueError(f"{folder}: no images")
        files += found
        labels += [k] * len(found)
    return files, np.asarray(labels, dtype=np.int64)


def _tiny_val(root: Path, index: dict[str, int]) -> tuple[list[Path], np.ndarray]:
    """Val images and labels in the order of ``val_annotations.txt``; every image annotated once."""
    path, folder = root / "val" / "val_annotations.txt", root / "val" / "images"
    present = {p.name for p in _image_files(folder)}
    seen: dict[str, int] = {}
    files, labels = [], []
    for i, line in _lines(path):
        parts = line.split()
        if len(parts) != 6:
            raise _bad(path, i, f"expected 6 tab-separated values (file, wnid, x0, y0, x1, y1), got {len(parts)}")
        name, wnid, *box = parts
        if wnid not in index:
            raise _bad(path, i, f"wnid {wnid} is not in {root / 'wnids.txt'}")
        if not all(b.lstrip("-").isdigit() for b in box):
            raise _bad(path, i, f"the box {' '.join(box)} is not 4 integers")
        if name in seen:
            raise _bad(path, i, f"{name} is already annotated on line {seen[name]}")
        if name not in present:
            raise FileNotFoundError(f"{path}, line {i}: {folder / name} not found")
        seen[name] = i
        files.append(folder / name)
        labels.append(index[wnid])
    if not files:
        raise ValueError(f"{path}: annotates no image")
    unlisted = sorted(present - set(seen))
    if unlisted:
        raise ValueError(f"{folder}: {len(unlisted)} images have no line in {path}, e.g. {unlisted[0]}")
    return files, np.asarray(labels, dtype=np.int64)


# ----------------------------------------------------------------------------- ImageNet
def load_imagenet(data_dir: Path | str, *, image_size: int = 64, cache_dir: Path | str | None = None,
                  progress: bool = False) -> Dataset:
    """ImageNet from ``<data_dir>/imagenet/{train,val}/<wnid>/*.JPEG``; val is the test split.

    The images are too large for memory: each split is prepared once into a uint8 ``.npy``
    ``[N, 3, s, s]`` in ``cache_dir`` and returned as a read-only ``np.memmap``. Disk cost:
    N x 3 x s x s bytes, at 64 px 1.28M x 12,288 B = 15.7 GB for train and 0.6 GB for val (4x at
    128 px); preparation checks the free space first. It commits every :data:`CHUNK_ROWS` images
    (a sealed ``.json`` beside the ``.npy`` records how many rows are done), so an interrupted
    preparation resumes where it stopped. Rows follow sorted wnids, then sorted file names.
    No protected attributes.
    """
    from .datasets import Dataset, Split

    config = image_dataset_config("imagenet", image_size=image_size)
    data_dir, cache_root = _dirs(data_dir, cache_dir, progress)
    check_present("imagenet", data_dir)
    root = data_dir / FOLDERS["imagenet"]
    train_files, train_labels, wnids = _imagenet_split(root, "train", None)
    val_files, val_labels, _ = _imagenet_split(root, "val", wnids)
    splits = [Split(_memmap_images(cache_root, split, root, files, image_size, progress), labels)
              for split, files, labels in (("train", train_files, train_labels), ("val", val_files, val_labels))]
    return Dataset("imagenet", "class", tuple(wnids), {}, splits[0], splits[1], config=config)


def _imagenet_split(root: Path, split: str, wnids: list[str] | None) -> tuple[list[Path], np.ndarray, list[str]]:
    """Files and labels of ``root/split/<wnid>/``; the wnids are train's folders (sorted)."""
    folder = root / split
    entries = sorted(os.scandir(folder), key=lambda e: e.name)
    loose = [e.name for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)]
    if loose:
        raise ValueError(f"{folder} holds images directly ({loose[0]}, ...); they must be sorted into "
                         f"{folder}/<wnid>/ folders, as torchvision.datasets.ImageNet(root, split={split!r}) "
                         f"does with the devkit.\n{layout_help('imagenet')}")
    dirs = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
    if wnids is None:
        wnids = dirs
    stray = sorted(set(dirs) - set(wnids))
    if stray:
        raise ValueError(f"{folder}: folders {', '.join(stray[:5])} have no class folder in {root / 'train'}")
    index = {w: k for k, w in enumerate(wnids)}
    files: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        found = _image_files(folder / d)
        if not found and split == "train":
            raise ValueError(f"{folder / d}: no images")
        files += found
        labels += [index[d]] * len(found)
    if not files:
        raise ValueError(f"{folder}: no images")
    return files, np.asarray(labels, dtype=np.int64), wnids


def class_words(name: str, data_dir: Path | str) -> tuple[str, ...]:
    """Human-readable names aligned with ``class_names`` (the sorted wnids): Tiny ImageNet's from
    ``words.txt``; ImageNet's from torchvision's ``meta.bin`` if it is there and loads with
    ``torch.load(weights_only=True)``, else the wnids themselves."""
    check_choice(name, "dataset", ("tinyimagenet", "imagenet"))
    check_present(name, data_dir)
    root = Path(data_dir) / FOLDERS[name]
    if name == "tinyimagenet":
        wnids = _read_wnids(root / "wnids.txt")
        words = _read_words(root / "words.txt")
        missing = [w for w in wnids if w not in words]
        if missing:
            raise ValueError(f"{root / 'words.txt'}: no line for wnid {', '.join(missing[:5])}")
    else:
        wnids = sorted(e.name for e in os.scandir(root / "train") if e.is_dir() and not e.name.startswith("."))
        words = _imagenet_meta_words(root / "meta.bin")
    return tuple(words.get(w, w) for w in wnids)


def _read_words(path: Path) -> dict[str, str]:
    words = {}
    for i, line in _lines(path):
        wnid, tab, text = line.partition("\t")
        if not tab or len(wnid.split()) != 1:
            raise _bad(path, i, "expected 'wnid<TAB>names'")
        words[wnid.strip()] = text.strip()
    return words


def _imagenet_meta_words(path: Path) -> dict[str, str]:
    """wnid -> "name, name, ..." from torchvision's ``meta.bin`` (``(wnid_to_classes, val_wnids)``);
    empty if it is absent or anything but that (with a message)."""
    if not path.is_file():
        return {}
    try:
        import torch

        with warnings.catch_warnings():  # torch warns about odd pickles; a failure is reported below
            warnings.simplefilter("ignore")
            wnid_to_classes, _ = torch.load(path, weights_only=True)
        return {str(w): ", ".join(map(str, names)) for w, names in dict(wnid_to_classes).items()}
    except Exception as exc:  # an unpickling refusal, a truncated file, another structure, ...
        print(f"ignoring {path}: not torchvision's ImageNet meta.bin ({type(exc).__name__}: {exc})", file=sys.stderr)
        return {}


# ----------------------------------------------------------------------------- CelebA
def load_celeba(data_dir: Path | str, *, label: str = "smiling", attributes: tuple[str, ...] = ("young", "male"),
                image_size: int = 64, undersample: bool = True, seed: int = 0, cache_dir: Path | str | None = None,
                progress: bool = False) -> Dataset:
    """CelebA from ``<data_dir>/celeba/`` (torchvision's layout), parsed without torchvision
    (whose md5 checks refuse anything but the original files).

    ``label`` and ``attributes`` are lower-cased CelebA attribute names (:data:`CELEBA_ATTRIBUTES`),
    coded 1 = present, 0 = absent (the file's 1 / -1); class names and attribute values are
    ``("not <name>", "<name>")``. Splits follow ``list_eval_partition.txt``: train, ``test`` (2),
    and ``extra["valid"]`` (1), each in the order of ``list_attr_celeba.txt``.
    ``undersample=True`` balances the label in train only, keeping every example of the rarer
    class and as many of the other drawn with ``numpy.random.default_rng(seed)``; valid and
    test keep their natural rates. The decoded images stay in memory (2.5 GB at 64 px).
    """
    from .datasets import Dataset, Split

    config = image_dataset_config("celeba", label, attributes=attributes, image_size=image_size,
                                  undersample=undersample, seed=seed)
    data_dir, cache_root = _dirs(data_dir, cache_dir, progress)
    check_present("celeba", data_dir)
    root = data_dir / FOLDERS["celeba"]
    table = _read_celeba_attrs(root / "list_attr_celeba.txt", tuple(dict.fromkeys((label, *attributes))))
    part = _read_celeba_partition(root / "list_eval_partition.txt", table.files)
    images = _cached_images(cache_root, "celeba", root, _celeba_images(root, table), image_size, progress)

    def split(idx: np.ndarray) -> Split:
        return Split(_take(images, idx), table.columns[label][idx], {a: table.columns[a][idx] for a in attributes})

    train = np.flatnonzero(part == 0)
    if undersample:
        train = train[undersample_indices(table.columns[label][train], seed)]
    return Dataset("celeba", label, (f"not {label}", label), {a: (f"not {a}", a) for a in attributes},
                   split(train), split(np.flatnonzero(part == 2)), {"valid": split(np.flatnonzero(part == 1))}, config)


@dataclass(frozen=True)
class _AttrTable:
    files: list[str]  # image file names, in file order
    lines: list[int]  # the line each is on
    columns: dict[str, np.ndarray]  # requested attribute -> int64 0/1


def _read_celeba_attrs(path: Path, wanted: Sequence[str]) -> _AttrTable:
    """``list_attr_celeba.txt``: a count line, the attribute names, then ``file v1 ... v40``
    with values 1 / -1 separated by runs of spaces. Columns are found by name, not position."""
    lines = list(_lines(path, skip_blank=False))
    if len(lines) < 2:
        raise ValueError(f"{path}: expected a count line and a line of attribute names")
    count = lines[0][1].strip()
    if not count.isdigit():
        raise _bad(path, 1, f"expected the number of images, got {lines[0][1]!r}")
    names = [n.lower() for n in lines[1][1].split()]
    missing = [w for w in wanted if w not in names]
    if missing or len(set(names)) != len(names):
        raise _bad(path, 2, f"the attribute names lack {', '.join(missing)}" if missing
                   else "an attribute name repeats")
    cols = [names.index(w) for w in wanted]
    files: list[str] = []
    at: list[int] = []
    rows: list[list[bool]] = []
    for i, line in lines[2:]:
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise _bad(path, i, f"expected a file name and {len(names)} values, got {len(parts)} fields")
        values = parts[1:]
        if not _PLUS_MINUS_ONE.issuperset(values):
            j = next(j for j, v in enumerate(values) if v not in _PLUS_MINUS_ONE)
            raise _bad(path, i, f"{names[j]} is {values[j]!r}; values must be 1 or -1")
        files.append(parts[0])
        at.append(i)
        rows.append([values[c] == "1" for c in cols])
    if len(files) != int(count):
        raise _bad(path, 1, f"the count says {count} images, the file lists {len(files)}")
    if len(set(files)) != len(files):
        first = {}
        for name, i in zip(files, at):
            if name in first:
                raise _bad(path, i, f"{name} is already listed on line {first[name]}")
            first[name] = i
    table = np.asarray(rows, dtype=np.int64).reshape(len(files), len(cols))
    return _AttrTable(files, at, {w: table[:, j].copy() for j, w in enumerate(wanted)})


def _read_celeba_partition(path: Path, files: list[str]) -> np.ndarray:
    """The partition (0 train, 1 valid, 2 test) of each of ``files``, from ``file partition`` lines."""
    index = {f: k for k, f in enumerate(files)}
    part = np.full(len(files), -1, dtype=np.int64)
    for i, line in _lines(path):
        parts = line.split()
        if len(parts) != 2:
            raise _bad(path, i, f"expected 'file partition', got {len(parts)} fields")
        name, p = parts
        if p not in CELEBA_PARTITIONS:
            raise _bad(path, i, f"partition {p!r} is not 0 (train), 1 (valid) or 2 (test)")
        k = index.get(name)
        if k is None:
            raise _bad(path, i, f"{name} is not in list_attr_celeba.txt")
        if part[k] >= 0:
            raise _bad(path, i, f"{name} is listed twice")
        part[k] = int(p)
    unassigned = np.flatnonzero(part < 0)
    if len(unassigned):
        raise ValueError(f"{path}: no line for {files[unassigned[0]]} ({len(unassigned)} images lack a partition)")
    return part


def _celeba_images(root: Path, table: _AttrTable) -> list[Path]:
    folder = root / "img_align_celeba"
    present = set(os.listdir(folder))
    for name, i in zip(table.files, table.lines):
        if name not in present:
            raise FileNotFoundError(f"{folder / name} not found (listed in {root / 'list_attr_celeba.txt'}, line {i})")
    return [folder / name for name in table.files]


def undersample_indices(labels: np.ndarray, seed: int) -> np.ndarray:
    """Sorted positions keeping every example of the rarest label and as many of each other
    label, drawn without replacement with ``numpy.random.default_rng(seed)``."""
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"cannot undersample: the train split has only label {classes.tolist()}")
    rng = np.random.default_rng(seed)
    m = counts.min()
    keep = [np.flatnonzero(labels == c) for c in classes]
    keep = [rng.choice(k, m, replace=False) if len(k) > m else k for k in keep]
    return np.sort(np.concatenate(keep))


def _take(images: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``images[idx]``, as a view when ``idx`` is a contiguous run (CelebA's partitions are)."""
    if len(idx) and idx[-1] - idx[0] + 1 == len(idx) and np.all(np.diff(idx) == 1):
        return images[idx[0]: idx[-1] + 1]
    return images[idx]


# ----------------------------------------------------------------------------- decoding and caches
def _dirs(data_dir: Path | str, cache_dir: Path | str | None, progress: bool) -> tuple[Path, Path]:
    """Checked ``data_dir`` and cache root (default ``<data_dir>/kdfair-cache``); nothing created."""
    check_bool(progress, "progress")
    data_dir = check_dir_path(data_dir, "data_dir")
    return data_dir, check_dir_path(cache_dir, "cache_dir") if cache_dir is not None else data_dir / CACHE_DIRNAME


def _lines(path: Path, skip_blank: bool = True) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file, any line ending; ``ValueError`` if not text."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file ({exc})") from None
    for i, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if line.strip() or not skip_blank:
            yield i, line


def _bad(path: Path, line: int, message: str) -> ValueError:
    return ValueError(f"{path}, line {line}: {message}")


def _image_files(folder: Path) -> list[Path]:
    """The image files of ``folder`` (by suffix, any case), sorted by name."""
    return [folder / e.name for e in sorted(os.scandir(folder), key=lambda e: e.name)
            if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)]


def _decode(path: Path, size: int) -> np.ndarray:
    """One image as uint8 ``[3, size, size]``: RGB, largest central square, bilinear resize."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"{path}: cannot decode the image ({type(exc).__name__}: {exc})") from None
    w, h = img.size
    if (w, h) != (size, size):
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def _decoded_chunks(files: Sequence[Path], size: int, start: int, progress: bool,
                    desc: str) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, images)`` for every :data:`CHUNK_ROWS` files from ``start`` on, decoded in threads."""
    from tqdm.auto import tqdm

    with ThreadPoolExecutor(DECODE_THREADS) as pool, \
            tqdm(total=len(files), initial=start, desc=desc, unit="img", disable=not progress) as bar:
        for a in range(start, len(files), CHUNK_ROWS):
            chunk = files[a: a + CHUNK_ROWS]
            yield a, np.stack(list(pool.map(lambda p: _decode(p, size), chunk)))
            bar.update(len(chunk))


def _ident(name: str, split: str, root: Path, files: Sequence[Path], size: int) -> dict[str, Any]:
    """What a cache file's images depend on: the files (relative path and byte size, in order)."""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(root).as_posix()}\t{f.stat().st_size}\n".encode())
    return {"name": name, "split": split, "image_size": size, "transform": TRANSFORM, "rows": len(files),
            "files_sha256": h.hexdigest()}


def _cached_images(cache_root: Path, name: str, root: Path, files: Sequence[Path], size: int,
                   progress: bool) -> np.ndarray:
    """The decoded ``files`` (uint8 ``[N, 3, size, size]``), from or into an ``.npz`` cache."""
    ident = _ident(name, "all", root, files, size)
    path = cache_root / name / f"{name}-{size}px-{config_key(ident)}.npz"
    shape = (len(files), 3, size, size)

    def make() -> tuple[np.ndarray, dict[str, np.ndarray]]:
        images = np.empty(shape, dtype=np.uint8)
        for a, chunk in _decoded_chunks(files, size, 0, progress, f"decoding {name}"):
            images[a: a + len(chunk)] = chunk
        return images, {"images": images}

    def check(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray | None, str | None]:
        images = arrays.get("images")
        if images is None or images.shape != shape or images.dtype != np.uint8:
            return None, f"its images are not uint8 {shape}"
        return images, None

    return cached_npz(path, ident, check, make, root=cache_root, root_name="cache_dir", what=f"{name} image cache")


def _memmap_images(cache_root: Path, split: str, root: Path, files: Sequence[Path], size: int,
                   progress: bool) -> np.memmap:
    """The decoded ``files`` as a read-only memmap of a ``.npy`` prepared (or resumed) in chunks."""
    ident = _ident("imagenet", split, root, files, size)
    path = cache_root / "imagenet" / f"imagenet-{split}-{size}px-{config_key(ident)}.npy"
    state = path.with_suffix(".json")
    shape = (len(files), 3, size, size)
    done, problem = _memmap_state(path, state, ident, shape)
    if done < len(files):
        check_writable_dir(cache_root, "cache_dir")
        with file_lock(path.parent / ".locks" / f"{path.name}.lock"):
            done, problem = _memmap_state(path, state, ident, shape)
            if done < len(files):
                if problem:
                    print(f"preparing {path} anew: {problem}", file=sys.stderr)
                _fill_memmap(path, state, ident, shape, files, done, progress)
    return np.load(path, mmap_mode="r")


def _memmap_state(path: Path, state: Path, ident: dict[str, Any], shape: tuple[int, ...]) -> tuple[int, str | None]:
    """Rows already prepared, or ``(0, problem)`` if the record or the ``.npy`` fails its check."""
    if not state.exists():
        return 0, ("it has no record of progress" if path.exists() else None)
    try:
        record = unseal(load_json(state))
        done = record["done"]
        if record.get("ident") != ident or not isinstance(done, int) or not 0 <= done <= shape[0]:
            return 0, f"{state.name} describes other images"
        arr = np.load(path, mmap_mode="r")
        if arr.shape != shape or arr.dtype != np.uint8 or path.stat().st_size != arr.offset + arr.nbytes:
            return 0, f"{path.name} is not uint8 {shape}"
    except Exception as exc:  # unreadable JSON, a bad checksum, a missing or truncated .npy, ...
        return 0, f"{type(exc).__name__}: {exc}"
    return done, None


def _fill_memmap(path: Path, state: Path, ident: dict[str, Any], shape: tuple[int, ...], files: Sequence[Path],
                 done: int, progress: bool) -> None:
    """Decode rows ``done:`` into ``path``, recording progress after each flushed chunk."""
    if done == 0:
        need = int(np.prod(shape)) - (path.stat().st_size if path.exists() else 0)
        free = shutil.disk_usage(path.parent).free
        if free < need:
            raise OSError(f"preparing {path} needs {need / 1e9:.1f} GB, {path.parent} has {free / 1e9:.1f} GB free; "
                          "pass cache_dir= a folder with room")
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
        save_json(state, seal({"ident": ident, "done": 0}))
    else:
        arr = np.load(path, mmap_mode="r+")
    try:
        for a, chunk in _decoded_chunks(files, shape[2], done, progress, f"preparing {path.name}"):
            arr[a: a + len(chunk)] = chunk
            arr.flush()  # rows on disk before the record says so
            save_json(state, seal({"ident": ident, "done": a + len(chunk)}))
    finally:
        del arr
