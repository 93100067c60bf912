"""The real loaders, run on tiny fixtures written in the exact on-disk formats torchvision downloads."""

import pickle

import numpy as np
import pytest
from scipy.io import savemat

from kdfair_utils.datasets import load_dataset


def write_pickle(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def make_cifar10(root, per_batch=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        write_pickle(folder / name, {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                                     b"filenames": [b"x.png"] * per_batch})
        batches[name] = (data, labels)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    write_pickle(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": per_batch,
                                           b"num_vis": 3072})
    return batches


def test_cifar10_reader(tmp_path):
    batches = make_cifar10(tmp_path)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.train.images.shape == (20, 3, 32, 32) and ds.test.images.shape == (4, 3, 32, 32)
    assert ds.class_names[3] == "cat" and ds.num_classes == 10
    data, labels = batches["data_batch_2"]
    assert np.array_equal(ds.train.images[4:8].reshape(4, -1), data)  # row-major RGB planes, as CIFAR stores
    assert ds.train.labels[4:8].tolist() == labels
    assert ds.train.attributes == {}


def test_cifar100_reader_with_superclass(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 6), ("test", 3)):
        write_pickle(folder / name, {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                                     b"fine_labels": list(range(n)), b"coarse_labels": [i % 20 for i in range(n)]})
    write_pickle(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                   b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
    ds = load_dataset("cifar100", data_dir=tmp_path)
    assert ds.num_classes == 100 and len(ds.train) == 6
    assert ds.test.attributes["superclass"].tolist() == [0, 1, 2]
    assert ds.attribute_values["superclass"][19] == "c19"


def test_svhn_reader(tmp_path):
    root = tmp_path / "svhn"
    root.mkdir()
    rng = np.random.default_rng(2)
    for split, n in (("train", 5), ("test", 2)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [1], [2], [3], [4]][:n], dtype=np.uint8)
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        if split == "train":
            ref = x
    ds = load_dataset("svhn", data_dir=tmp_path)
    assert ds.train.labels.tolist() == [0, 1, 2, 3, 4]  # '0' is stored as 10
    assert np.array_equal(ds.train.images[1].transpose(1, 2, 0), ref[..., 1])


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_dataset("cifar10", data_dir=tmp_path)
    with pytest.raises(ValueError, match="takes no options"):
        load_dataset("cifar10", data_dir=tmp_path, image_size=32)
