"""The image-folder readers (Tiny ImageNet, ImageNet, CelebA), run on tiny trees written in the
real on-disk formats. Each image is one solid colour that encodes its index, so a test can
check that image i landed at row i (up to JPEG error: the nearest written colour must match)."""

from __future__ import annotations

import hashlib
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kdfair_utils.image_folders as imf
from kdfair_utils.cache import load_json, load_npz, save_json, save_npz
from kdfair_utils.datasets import Dataset, Split

CELEBA_HEADER = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()
TINY_WNIDS = {"n01629819": "European fire salamander, Salamandra salamandra",
              "n01443537": "goldfish, Carassius auratus", "n01641577": "bullfrog, Rana catesbeiana"}


def colour(i: int) -> tuple[int, int, int]:
    """A distinct, saturated-enough colour per index (channels at least 40 apart for i < 24)."""
    return (20 + 40 * (i % 6), 20 + 40 * ((i // 6) % 6), 220 - 60 * (i % 4))


def write_jpeg(path: Path, rgb: tuple[int, int, int], size: tuple[int, int], gray: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gray:
        Image.new("L", size, rgb[0]).save(path, "JPEG", quality=95)
    else:
        Image.new("RGB", size, rgb).save(path, "JPEG", quality=95)


def assert_rows(images: np.ndarray, expected: list[tuple[int, int, int]], tol: float = 8.0) -> None:
    """Row r's mean colour is expected[r], within ``tol`` per channel."""
    assert len(images) == len(expected)
    means = np.asarray(images, dtype=np.float64).mean(axis=(2, 3))
    assert np.abs(means - np.asarray(expected, dtype=np.float64)).max() <= tol, (means, expected)


def tree_state(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the sha256 of its bytes and its mtime."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() + f"@{p.stat().st_mtime_ns}"
            for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- fixture writers
def assert_refused(tmp_path: Path, make, folder: str, edit, error, match: str, load) -> None:
    """Write a fixture with ``make``, damage it with ``edit`` and check ``load`` refuses it."""
    make(tmp_path)
    edit(tmp_path / folder)
    with pytest.raises(error, match=match):
        load(tmp_path)


def make_tiny(data_dir: Path, per_class: int = 3) -> dict:
    """Tiny ImageNet: 3 wnids (wnids.txt unsorted, as the real one), ``per_class`` train images each
    (one grayscale), 4 val images, boxes files, words.txt with unrelated lines, a test/ folder."""
    root = data_dir / "tiny-imagenet-200"
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in TINY_WNIDS))
    (root / "words.txt").write_text("n00001740\tentity\n" + "".join(f"{w}\t{t}\n" for w, t in TINY_WNIDS.items())
                                    + "n15102894\tdriftwood\n")
    train_colours, k = [], 0
    for wnid in sorted(TINY_WNIDS):
        boxes = []
        for j in range(per_class):
            gray = wnid == "n01629819" and j == 1
            rgb = (90, 90, 90) if gray else colour(k)
            write_jpeg(root / "train" / wnid / "images" / f"{wnid}_{j}.JPEG", rgb, (64, 64), gray=gray)
            boxes.append(f"{wnid}_{j}.JPEG\t0\t10\t63\t58\n")
            train_colours.append(rgb)
            k += 1
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    val = [("val_0.JPEG", "n01641577"), ("val_1.JPEG", "n01443537"), ("val_2.JPEG", "n01641577"),
           ("val_3.JPEG", "n01629819")]
    val_colours = []
    lines = []
    for j, (name, wnid) in enumerate(val):
        rgb = colour(12 + j)
        write_jpeg(root / "val" / "images" / name, rgb, (64, 64))
        val_colours.append(rgb)
        lines.append(f"{name}\t{wnid}\t{j}\t3\t60\t61\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    write_jpeg(root / "test" / "images" / "test_0.JPEG", (1, 2, 3), (64, 64))
    return {"train_colours": train_colours, "val_colours": val_colours,
            "val_labels": [sorted(TINY_WNIDS).index(w) for _, w in val], "per_class": per_class}


def make_imagenet(data_dir: Path, meta: bool = True) -> dict:
    """ImageNet: 3 wnids x 2-3 JPEGs of varied sizes in train/<wnid>/ and val/<wnid>/, and a meta.bin."""
    root = data_dir / "imagenet"
    wnids = ["n01440764", "n01443537", "n01484850"]
    sizes = [(40, 30), (25, 50), (33, 33)]
    out: dict = {"wnids": wnids, "train": [], "val": [], "train_labels": [], "val_labels": []}
    k = 0
    for split, per in (("train", 3), ("val", 2)):
        for c, wnid in enumerate(wnids):
            for j in range(per if not (split == "train" and c == 1) else 2):
                rgb = colour(k)
                write_jpeg(root / split / wnid / f"{wnid}_{j}.JPEG", rgb, sizes[(j + c) % 3])
                out[split].append(rgb)
                out[f"{split}_labels"].append(c)
                k += 1
    if meta:
        import torch

        torch.save(({"n01440764": ("tench", "Tinca tinca"), "n01443537": ("goldfish", "Carassius auratus"),
                     "n01484850": ("great white shark",)}, ["n01440764"] * 6), root / "meta.bin")
    return out


def celeba_attr_line(name: str, values) -> str:
    return name + "".join(f"{v:3d}" for v in values) + "\n"  # '000001.jpg -1  1  1 -1', as the real file


def make_celeba(data_dir: Path, n: int = 12, smiling=(1, 1, 1, 1, 1, 1, -1, -1, 1, -1, 1, -1),
                partition=(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2), crlf: bool = False) -> dict:
    """CelebA: ``n`` 178x218 JPEGs and the five text files with the real headers and spacing;
    the train partition's Smiling column is imbalanced (6 of 8 smiling)."""
    root = data_dir / "celeba"
    rng = np.random.default_rng(7)
    values = rng.choice([-1, 1], size=(n, 40))
    values[:, CELEBA_HEADER.index("Smiling")] = smiling
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for i, name in enumerate(names):
        write_jpeg(root / "img_align_celeba" / name, colour(i), (178, 218))
    eol = "\r\n" if crlf else "\n"
    (root / "list_attr_celeba.txt").write_text(
        f"{n}\n" + " ".join(CELEBA_HEADER) + " \n" + "".join(celeba_attr_line(nm, v) for nm, v in zip(names, values)))
    (root / "list_eval_partition.txt").write_text("".join(f"{nm} {p}{eol}" for nm, p in zip(names, partition)),
                                                  newline="")
    (root / "identity_CelebA.txt").write_text("".join(f"{nm} {2880 + i}\n" for i, nm in enumerate(names)))
    (root / "list_bbox_celeba.txt").write_text(
        f"{n}\nimage_id x_1 y_1 width height \n" + "".join(f"{nm}    95  71 226 313\n" for nm in names))
    (root / "list_landmarks_align_celeba.txt").write_text(
        f"{n}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x "
        "rightmouth_y \n" + "".join(f"{nm} 69  109  106  113   77  142   73  152  108  154\n" for nm in names))
    attr = {h.lower(): (values[:, j] == 1).astype(np.int64) for j, h in enumerate(CELEBA_HEADER)}
    return {"attr": attr, "partition": np.asarray(partition), "colours": [colour(i) for i in range(n)]}


def fail_decode(path, size):
    """A decoder that fails: what a load served from the cache must not call."""
    raise AssertionError(f"decoded {path} again")


# ----------------------------------------------------------------------------- Tiny ImageNet
def test_tinyimagenet_reader(tmp_path):
    fx = make_tiny(tmp_path)
    before = tree_state(tmp_path / "tiny-imagenet-200")
    ds = imf.load_tinyimagenet(tmp_path)
    assert isinstance(ds, Dataset) and isinstance(ds.train, Split)
    assert ds.class_names == tuple(sorted(TINY_WNIDS)) and ds.num_classes == 3
    assert ds.train.images.shape == (9, 3, 64, 64) and ds.train.images.dtype == np.uint8
    assert ds.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and ds.train.labels.dtype == np.int64
    assert_rows(ds.train.images, fx["train_colours"])
    gray = ds.train.images[4]  # n01629819_1.JPEG: single-channel, now 3 equal channels
    assert np.array_equal(gray[0], gray[1]) and np.array_equal(gray[1], gray[2])
    assert ds.test.labels.tolist() == fx["val_labels"]  # val, in val_annotations.txt's order
    assert_rows(ds.test.images, fx["val_colours"])
    assert ds.attribute_values == {} and ds.train.attributes == {} and ds.extra == {}
    assert ds.config == {"name": "tinyimagenet", "label": "class", "image_size": 64}
    assert ds.config == imf.image_dataset_config("tinyimagenet", image_size=64)
    assert imf.class_words("tinyimagenet", tmp_path) == tuple(TINY_WNIDS[w] for w in sorted(TINY_WNIDS))
    # the user's files are untouched; the cache lies beside them, in <data_dir>/kdfair-cache/
    assert tree_state(tmp_path / "tiny-imagenet-200") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kdfair-cache", "tiny-imagenet-200"]
    assert len(list((tmp_path / "kdfair-cache" / "tinyimagenet").glob("tinyimagenet-64px-*.npz"))) == 1


def test_tinyimagenet_resizes_and_caches_by_size(tmp_path, monkeypatch):
    fx = make_tiny(tmp_path)
    cache = tmp_path / "elsewhere"
    small = imf.load_tinyimagenet(tmp_path, image_size=16, cache_dir=cache)
    assert small.train.images.shape == (9, 3, 16, 16) and small.config["image_size"] == 16
    assert_rows(small.train.images, fx["train_colours"])
    assert not (tmp_path / "kdfair-cache").exists()
    assert len(list((cache / "tinyimagenet").glob("*.npz"))) == 1
    monkeypatch.setattr(imf, "_decode", fail_decode)
    again = imf.load_tinyimagenet(tmp_path, image_size=16, cache_dir=cache)  # no decoding: from the cache
    assert np.array_equal(again.train.images, small.train.images)


def test_cache_is_reused_and_regenerated_when_corrupt(tmp_path, monkeypatch, capsys):
    make_tiny(tmp_path)
    first = imf.load_tinyimagenet(tmp_path)
    [path] = (tmp_path / "kdfair-cache" / "tinyimagenet").glob("*.npz")
    with monkeypatch.context() as m:
        m.setattr(imf, "_decode", fail_decode)
        assert np.array_equal(imf.load_tinyimagenet(tmp_path).test.images, first.test.images)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2: len(blob) // 2 + 64] = bytes(64)  # zero bytes amid the images: a CRC mismatch
    path.write_bytes(bytes(blob))
    capsys.readouterr()
    again = imf.load_tinyimagenet(tmp_path)
    assert "regenerating the tinyimagenet image cache" in capsys.readouterr().err
    assert np.array_equal(again.train.images, first.train.images)
    assert np.array_equal(again.test.images, first.test.images)
    path.write_bytes(path.read_bytes()[:100])  # truncated
    imf.load_tinyimagenet(tmp_path)
    assert "unreadable" in capsys.readouterr().err
    save_npz(path, images=np.zeros_like(load_npz(path)["images"]), tag=np.frombuffer(b"{}", np.uint8))  # swapped in
    assert np.array_equal(imf.load_tinyimagenet(tmp_path).train.images, first.train.images)
    assert "it holds other data" in capsys.readouterr().err
    save_npz(path, images=np.zeros_like(load_npz(path)["images"]))  # an older kdfair's file: no tag
    assert np.array_equal(imf.load_tinyimagenet(tmp_path).train.images, first.train.images)
    assert "it has no tag (written by an older kdfair)" in capsys.readouterr().err


def test_cache_key_follows_the_files(tmp_path):
    fx = make_tiny(tmp_path)
    imf.load_tinyimagenet(tmp_path)
    extra = tmp_path / "tiny-imagenet-200" / "train" / "n01443537" / "images" / "n01443537_9.JPEG"
    write_jpeg(extra, (250, 0, 0), (64, 64))
    ds = imf.load_tinyimagenet(tmp_path)  # a new file: a new key, decoded afresh
    assert len(ds.train) == 10 and ds.train.labels.tolist()[:4] == [0, 0, 0, 0]
    assert_rows(ds.train.images[:4], fx["train_colours"][:3] + [(250, 0, 0)])
    assert len(list((tmp_path / "kdfair-cache" / "tinyimagenet").glob("*.npz"))) == 2


@pytest.mark.parametrize("edit, error, match", [
    (lambda r: (r / "val/val_annotations.txt").write_text("val_0.JPEG\tn01641577\t0\t3\t60\t61\n"
                                                         "val_1.JPEG\tn09999999\t0\t3\t60\t61\n"),
     ValueError, r"val_annotations.txt, line 2: wnid n09999999 is not in"),
    (lambda r: (r / "val/val_annotations.txt").write_text("val_0.JPEG\tn01641577\t0\t3\t60\n"),
     ValueError, r"val_annotations.txt, line 1: expected 6"),
    (lambda r: (r / "val/val_annotations.txt").write_text("val_0.JPEG\tn01641577\t0\t3\tx\t61\n"),
     ValueError, r"val_annotations.txt, line 1: the box"),
    (lambda r: (r / "val/val_annotations.txt").write_text("val_0.JPEG\tn01641577\t0\t3\t60\t61\n"
                                                         "val_0.JPEG\tn01641577\t0\t3\t60\t61\n"),
     ValueError, r"val_annotations.txt, line 2: val_0.JPEG is already annotated on line 1"),
    (lambda r: (r / "val/images/val_2.JPEG").unlink(),
     FileNotFoundError, r"val_annotations.txt, line 3: .*val_2.JPEG not found"),
    (lambda r: (r / "val/val_annotations.txt").write_text("val_0.JPEG\tn01641577\t0\t3\t60\t61\n"),
     ValueError, r"3 images have no line in .*val_annotations.txt"),
    (lambda r: (r / "wnids.txt").write_text("n01443537\nn01629819\nn01443537\n"),
     ValueError, r"wnids.txt, line 3: wnid n01443537 repeats line 1"),
    (lambda r: (r / "wnids.txt").write_text("n01443537\nn01629819 n01641577\n"),
     ValueError, r"wnids.txt, line 2: expected one wnid"),
    (lambda r: (r / "wnids.txt").write_text("n01443537\nn01629819\n"),
     ValueError, r"folders n01641577 are not in .*wnids.txt"),
    (lambda r: (r / "train/n01443537/images/n01443537_1.JPEG").write_bytes(b"not a jpeg"),
     ValueError, r"n01443537_1.JPEG: cannot decode the image"),
])
def test_tinyimagenet_malformed_files(tmp_path, edit, error, match):
    assert_refused(tmp_path, make_tiny, "tiny-imagenet-200", edit, error, match, imf.load_tinyimagenet)


def test_class_words_names_a_bad_words_file(tmp_path):
    make_tiny(tmp_path)
    (tmp_path / "tiny-imagenet-200" / "words.txt").write_text("n01443537\tgoldfish\nn01629819 salamander\n")
    with pytest.raises(ValueError, match=r"words.txt, line 2: expected 'wnid<TAB>names'"):
        imf.class_words("tinyimagenet", tmp_path)


# ----------------------------------------------------------------------------- ImageNet
def test_imagenet_reader_gives_read_only_memmaps(tmp_path, capsys):
    fx = make_imagenet(tmp_path)
    before = tree_state(tmp_path / "imagenet")
    ds = imf.load_imagenet(tmp_path, image_size=16)
    assert ds.class_names == tuple(fx["wnids"]) and ds.config == {"name": "imagenet", "label": "class",
                                                                  "image_size": 16}
    for split, key in ((ds.train, "train"), (ds.test, "val")):
        assert isinstance(split.images, np.memmap) and not split.images.flags.writeable
        assert split.images.shape == (len(fx[key]), 3, 16, 16)
        assert split.labels.tolist() == fx[f"{key}_labels"]
        assert_rows(split.images, fx[key])
    assert imf.class_words("imagenet", tmp_path) == ("tench, Tinca tinca", "goldfish, Carassius auratus",
                                                     "great white shark")
    assert tree_state(tmp_path / "imagenet") == before
    (tmp_path / "imagenet" / "meta.bin").write_bytes(b"\x80\x04junk")  # not loadable: ignored, with a message
    assert imf.class_words("imagenet", tmp_path) == tuple(fx["wnids"])
    assert "ignoring" in capsys.readouterr().err


def test_imagenet_center_crop_convention(tmp_path):
    root = tmp_path / "imagenet"
    img = np.zeros((20, 30, 3), dtype=np.uint8)  # 30 wide: 5-column red bands either side of a blue square
    img[:, :5] = img[:, 25:] = (255, 0, 0)
    img[:, 5:25] = (0, 0, 255)
    for split in ("train", "val"):
        (root / split / "n01440764").mkdir(parents=True)
        Image.fromarray(img).save(root / split / "n01440764" / "a.png")
    ds = imf.load_imagenet(tmp_path, image_size=10)
    assert np.array_equal(ds.train.images[0], np.broadcast_to(np.array([0, 0, 255], np.uint8)[:, None, None],
                                                              (3, 10, 10)))


def test_imagenet_preparation_resumes(tmp_path, monkeypatch, capsys):
    make_imagenet(tmp_path, meta=False)
    clean = imf.load_imagenet(tmp_path, image_size=8, cache_dir=tmp_path / "clean")
    monkeypatch.setattr(imf, "CHUNK_ROWS", 2)
    real = imf._decode
    calls = []

    def interrupted(path, size):
        if len(calls) >= 2:
            raise KeyboardInterrupt("simulated interruption")
        calls.append(path)
        return real(path, size)

    monkeypatch.setattr(imf, "DECODE_THREADS", 1)
    monkeypatch.setattr(imf, "_decode", interrupted)
    cache = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        imf.load_imagenet(tmp_path, image_size=8, cache_dir=cache)
    [state] = (cache / "imagenet").glob("imagenet-train-8px-*.json")
    assert load_json(state)["done"] == 2  # the first chunk was committed

    def counting(path, size):
        calls.append(path)
        return real(path, size)

    calls.clear()
    monkeypatch.setattr(imf, "_decode", counting)
    ds = imf.load_imagenet(tmp_path, image_size=8, cache_dir=cache)
    assert len(calls) == len(ds.train) - 2 + len(ds.test)  # resumed after the committed rows
    assert np.array_equal(ds.train.images, clean.train.images)
    assert np.array_equal(ds.test.images, clean.test.images)
    assert "anew" not in capsys.readouterr().err
    calls.clear()
    imf.load_imagenet(tmp_path, image_size=8, cache_dir=cache)
    assert calls == []  # prepared: nothing decoded


def test_imagenet_damaged_preparation_is_redone(tmp_path, capsys):
    make_imagenet(tmp_path, meta=False)
    first = imf.load_imagenet(tmp_path, image_size=8)
    [state] = (tmp_path / "kdfair-cache" / "imagenet").glob("imagenet-train-8px-*.json")
    record = load_json(state)
    record["done"] = 1  # edited: the checksum no longer matches
    save_json(state, record)
    again = imf.load_imagenet(tmp_path, image_size=8)
    assert "preparing" in capsys.readouterr().err and np.array_equal(again.train.images, first.train.images)
    [npy] = (tmp_path / "kdfair-cache" / "imagenet").glob("imagenet-train-8px-*.npy")
    npy.write_bytes(npy.read_bytes()[:-10])  # truncated
    again = imf.load_imagenet(tmp_path, image_size=8)
    assert "preparing" in capsys.readouterr().err and np.array_equal(again.train.images, first.train.images)


def test_imagenet_layout_errors(tmp_path):
    make_imagenet(tmp_path, meta=False)
    val = tmp_path / "imagenet" / "val"
    write_jpeg(val / "n09999999" / "x.JPEG", (1, 1, 1), (8, 8))
    with pytest.raises(ValueError, match=r"folders n09999999 have no class folder"):
        imf.load_imagenet(tmp_path, image_size=8)
    write_jpeg(val / "ILSVRC2012_val_00000001.JPEG", (1, 1, 1), (8, 8))
    with pytest.raises(ValueError, match=r"holds images directly .*sorted into"):
        imf.load_imagenet(tmp_path, image_size=8)


# ----------------------------------------------------------------------------- CelebA
def test_celeba_reader(tmp_path):
    fx = make_celeba(tmp_path)
    before = tree_state(tmp_path / "celeba")
    ds = imf.load_celeba(tmp_path, image_size=16, undersample=False)
    part, attr = fx["partition"], fx["attr"]
    assert ds.name == "celeba" and ds.label == "smiling" and ds.class_names == ("not smiling", "smiling")
    assert ds.attribute_values == {"young": ("not young", "young"), "male": ("not male", "male")}
    assert list(ds.extra) == ["valid"] and list(ds.eval_splits()) == ["test", "valid"]
    for split, p in ((ds.train, 0), (ds.extra["valid"], 1), (ds.test, 2)):
        rows = np.flatnonzero(part == p)
        assert split.images.shape == (len(rows), 3, 16, 16)
        assert split.labels.tolist() == attr["smiling"][rows].tolist()
        assert sorted(split.attributes) == ["male", "young"]
        for a in ("young", "male"):
            assert split.attributes[a].tolist() == attr[a][rows].tolist()
        assert_rows(split.images, [fx["colours"][r] for r in rows])
    assert ds.train.labels.tolist() == [1, 1, 1, 1, 1, 1, 0, 0]
    assert ds.config == {"name": "celeba", "label": "smiling", "image_size": 16, "attributes": ["young", "male"],
                         "undersample": False}
    assert tree_state(tmp_path / "celeba") == before


def test_celeba_any_attribute_by_name_and_crlf(tmp_path):
    fx = make_celeba(tmp_path, crlf=True)
    ds = imf.load_celeba(tmp_path, label="male", attributes=("young", "eyeglasses", "5_o_clock_shadow"),
                         image_size=8, undersample=False)
    rows = np.flatnonzero(fx["partition"] == 0)
    assert ds.train.labels.tolist() == fx["attr"]["male"][rows].tolist()
    assert ds.train.attributes["eyeglasses"].tolist() == fx["attr"]["eyeglasses"][rows].tolist()
    test_rows = fx["partition"] == 2
    assert ds.test.attributes["5_o_clock_shadow"].tolist() == fx["attr"]["5_o_clock_shadow"][test_rows].tolist()
    with pytest.raises(ValueError, match=r"attribute 'Eyeglasses' is not a CelebA attribute; known .*eyeglasses"):
        imf.load_celeba(tmp_path, attributes=("Eyeglasses",))
    with pytest.raises(ValueError, match=r"label 'grin' is not a CelebA attribute"):
        imf.load_celeba(tmp_path, label="grin")


def test_celeba_undersampling_is_seeded_and_cached(tmp_path, monkeypatch):
    fx = make_celeba(tmp_path)
    ds = imf.load_celeba(tmp_path, image_size=8, seed=3)
    assert ds.config["undersample"] is True and ds.config["seed"] == 3
    monkeypatch.setattr(imf, "_decode", fail_decode)
    same = imf.load_celeba(tmp_path, image_size=8, seed=3)  # a seed changes no decoded image
    assert np.array_equal(same.train.images, ds.train.images) and np.array_equal(same.train.labels, ds.train.labels)
    train_rows = np.flatnonzero(fx["partition"] == 0)
    colours = [fx["colours"][r] for r in train_rows]
    picked = []
    for seed in range(8):
        d = imf.load_celeba(tmp_path, image_size=8, seed=seed)
        assert d.train.labels.tolist().count(0) == d.train.labels.tolist().count(1) == 2
        means = d.train.images.astype(float).mean(axis=(2, 3))
        rows = [int(np.argmin(np.abs(np.asarray(colours) - m).sum(axis=1))) for m in means]
        assert rows == sorted(rows) and {6, 7} <= set(rows)  # file order; both non-smiling kept
        assert d.train.labels.tolist() == fx["attr"]["smiling"][train_rows[rows]].tolist()
        assert d.train.attributes["male"].tolist() == fx["attr"]["male"][train_rows[rows]].tolist()
        for split, p in ((d.extra["valid"], 1), (d.test, 2)):  # untouched: natural rates, every image
            assert split.labels.tolist() == fx["attr"]["smiling"][fx["partition"] == p].tolist()
            assert_rows(split.images, [fx["colours"][r] for r in np.flatnonzero(fx["partition"] == p)])
        picked.append(tuple(rows))
    assert len(set(picked)) > 1  # another seed, another subset


def test_undersample_indices():
    labels = np.array([1, 1, 0, 1, 1, 0, 1])
    a, b = imf.undersample_indices(labels, 0), imf.undersample_indices(labels, 0)
    assert np.array_equal(a, b) and np.bincount(labels[a]).tolist() == [2, 2] and {2, 5} <= set(a.tolist())
    assert len({tuple(imf.undersample_indices(labels, s)) for s in range(10)}) > 1
    assert imf.undersample_indices(np.array([0, 1, 1, 0]), 5).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="only label"):
        imf.undersample_indices(np.array([1, 1]), 0)


def _rewrite(path: Path, line: int, new: str) -> None:
    lines = path.read_text().split("\n")
    lines[line - 1] = new
    path.write_text("\n".join(lines))


@pytest.mark.parametrize("edit, error, match", [
    (lambda r: _rewrite(r / "list_attr_celeba.txt", 1, "13"),
     ValueError, r"list_attr_celeba.txt, line 1: the count says 13 images, the file lists 12"),
    (lambda r: _rewrite(r / "list_attr_celeba.txt", 1, "twelve"),
     ValueError, r"list_attr_celeba.txt, line 1: expected the number of images"),
    (lambda r: _rewrite(r / "list_attr_celeba.txt", 5, "000003.jpg" + " -1" * 39),
     ValueError, r"list_attr_celeba.txt, line 5: expected a file name and 40 values, got 40 fields"),
    (lambda r: _rewrite(r / "list_attr_celeba.txt", 4, "000002.jpg" + "  1" * 31 + "  0" + "  1" * 8),
     ValueError, r"list_attr_celeba.txt, line 4: smiling is '0'; values must be 1 or -1"),
    (lambda r: _rewrite(r / "list_attr_celeba.txt", 2, " ".join(CELEBA_HEADER).replace("Smiling", "Grinning")),
     ValueError, r"list_attr_celeba.txt, line 2: the attribute names lack smiling"),
    (lambda r: _rewrite(r / "list_attr_celeba.txt", 6, "000003.jpg" + "  1" * 40),
     ValueError, r"list_attr_celeba.txt, line 6: 000003.jpg is already listed on line 5"),
    (lambda r: _rewrite(r / "list_eval_partition.txt", 2, "000002.jpg 3"),
     ValueError, r"list_eval_partition.txt, line 2: partition '3' is not 0 \(train\), 1 \(valid\) or 2 \(test\)"),
    (lambda r: _rewrite(r / "list_eval_partition.txt", 3, "000003.jpg 0 1"),
     ValueError, r"list_eval_partition.txt, line 3: expected 'file partition', got 3 fields"),
    (lambda r: _rewrite(r / "list_eval_partition.txt", 4, "999999.jpg 0"),
     ValueError, r"list_eval_partition.txt, line 4: 999999.jpg is not in list_attr_celeba.txt"),
    (lambda r: _rewrite(r / "list_eval_partition.txt", 4, ""),
     ValueError, r"list_eval_partition.txt: no line for 000004.jpg"),
    (lambda r: (r / "img_align_celeba" / "000003.jpg").unlink(),
     FileNotFoundError, r"000003.jpg not found \(listed in .*list_attr_celeba.txt, line 5\)"),
    (lambda r: (r / "list_attr_celeba.txt").write_bytes(b"12\n\xff\xfe\n"),
     ValueError, r"list_attr_celeba.txt: not a UTF-8 text file"),
])
def test_celeba_malformed_files(tmp_path, edit, error, match):
    assert_refused(tmp_path, make_celeba, "celeba", edit, error, match, lambda d: imf.load_celeba(d, image_size=8))


def test_download_celeba_only_when_missing(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(CelebA=lambda **kw: calls.append(kw))
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    make_celeba(tmp_path / "have")
    imf.download_celeba(tmp_path / "have")
    assert calls == []  # files present: torchvision is not asked (it would check md5 sums)
    (tmp_path / "none").mkdir()
    with pytest.raises(FileNotFoundError, match="celeba"):  # the fake fetched nothing
        imf.download_celeba(tmp_path / "none")
    assert calls == [{"root": str(tmp_path / "none"), "split": "all", "download": True}]


# ----------------------------------------------------------------------------- missing data, options
@pytest.mark.parametrize("name, load, hint", [
    ("tinyimagenet", imf.load_tinyimagenet, r"http://cs231n.stanford.edu/tiny-imagenet-200.zip"),
    ("imagenet", imf.load_imagenet, r"image-net.org"),
    ("celeba", imf.load_celeba, r"download=True"),
])
def test_missing_data_set_says_where_to_get_it_and_writes_nothing(tmp_path, name, load, hint):
    (tmp_path / "other").mkdir()
    with pytest.raises(FileNotFoundError, match=hint) as err:
        load(tmp_path)
    assert imf.FOLDERS[name] in str(err.value) and "<data_dir>/" in str(err.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["other"]
    assert hint in imf.layout_help(name)


def test_partial_data_set_names_what_is_missing(tmp_path):
    make_celeba(tmp_path)
    (tmp_path / "celeba" / "list_bbox_celeba.txt").unlink()
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(FileNotFoundError, match=r"lacks list_bbox_celeba.txt"):
        imf.load_celeba(tmp_path)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    make_tiny(tmp_path)
    (tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks val/val_annotations.txt"):
        imf.check_present("tinyimagenet", tmp_path)


def test_options_are_checked_before_reading(tmp_path):
    for bad in (dict(image_size=0), dict(image_size=True), dict(seed=-1), dict(undersample="no"),
                dict(attributes="young"), dict(attributes=("young", "young")), dict(progress=1)):
        with pytest.raises(ValueError):
            imf.load_celeba(tmp_path, **bad)  # ValueError, not FileNotFoundError: checked first
    with pytest.raises(ValueError, match="takes image_size"):
        imf.image_dataset_config("imagenet", seed=1)
    with pytest.raises(ValueError, match="one label"):
        imf.image_dataset_config("tinyimagenet", "smiling")
    with pytest.raises(ValueError, match="dataset must be one of"):
        imf.layout_help("mnist")
    assert imf.image_dataset_config("celeba") == {"name": "celeba", "label": "smiling", "image_size": 64,
                                                  "attributes": ["young", "male"], "undersample": True, "seed": 0}
    assert imf.CELEBA_ATTRIBUTES == tuple(h.lower() for h in CELEBA_HEADER)
    assert (imf.CELEBA_ATTRIBUTES.index("male"), imf.CELEBA_ATTRIBUTES.index("smiling"),
            imf.CELEBA_ATTRIBUTES.index("young")) == (20, 31, 39)


# ----------------------------------------------------------------------------- through load_dataset
def test_load_dataset_reads_each_image_folder_data_set(tmp_path):
    """The package's one entry point reads the three layouts; options reach the readers and
    their config is the one ``dataset_config`` computes without reading."""
    from kdfair_utils.datasets import dataset_config, load_dataset

    make_tiny(tmp_path)
    make_imagenet(tmp_path)
    make_celeba(tmp_path)
    for name, options in (("tinyimagenet", {"image_size": 16}), ("imagenet", {"image_size": 8}),
                          ("celeba", {"image_size": 8, "attributes": ["young", "eyeglasses"], "seed": 3})):
        ds = load_dataset(name, data_dir=tmp_path, **options)
        assert ds.config == dataset_config(name, **options)
        assert ds.train.images.shape[2:] == (options["image_size"],) * 2
    direct = imf.load_celeba(tmp_path, image_size=8, attributes=("young", "eyeglasses"), seed=3)
    assert np.array_equal(ds.train.labels, direct.train.labels)
    assert set(ds.test.attributes) == {"young", "eyeglasses"}
    assert np.array_equal(ds.extra["valid"].attributes["eyeglasses"], direct.extra["valid"].attributes["eyeglasses"])


def test_a_grid_checks_the_image_size_of_an_image_folder_data_set_before_reading():
    from kdfair_utils.grid import GridConfig

    cfg = GridConfig(dataset="celeba", label="smiling", data_options={"image_size": 8}, teacher="resnet18",
                     student="lenet5")
    with pytest.raises(ValueError, match="image_size 8 is too small for lenet5"):
        cfg.validate()


def test_celeba_attributes_are_evaluation_data_not_training_data(tmp_path):
    """Asking for other protected attributes changes neither a model's key nor its training sha."""
    from kdfair_utils.datasets import load_dataset, train_sha256, training_config

    make_celeba(tmp_path)
    a = load_dataset("celeba", data_dir=tmp_path, image_size=8)
    b = load_dataset("celeba", data_dir=tmp_path, image_size=8, attributes=["eyeglasses"])
    assert training_config("celeba", image_size=8) == training_config("celeba", image_size=8, attributes=["eyeglasses"])
    assert train_sha256(a) == train_sha256(b)
    assert training_config("celeba", image_size=8, seed=1) != training_config("celeba", image_size=8)  # undersampling
    c = load_dataset("celeba", data_dir=tmp_path, image_size=8, undersample=False)
    assert train_sha256(c) != train_sha256(a)


def test_imagenet_training_sha_names_the_prepared_file_instead_of_reading_it(tmp_path, monkeypatch):
    from kdfair_utils.datasets import load_dataset, train_sha256

    make_imagenet(tmp_path)
    ds = load_dataset("imagenet", data_dir=tmp_path, image_size=8)
    assert isinstance(ds.train.images, np.memmap)
    sha = train_sha256(ds)
    real = np.ascontiguousarray

    def no_memmap(arr, *args, **kwargs):
        assert not isinstance(arr, np.memmap), "the memmap was read"
        return real(arr, *args, **kwargs)

    monkeypatch.setattr(np, "ascontiguousarray", no_memmap)
    assert train_sha256(load_dataset("imagenet", data_dir=tmp_path, image_size=8)) == sha
    monkeypatch.undo()
    halves = [Dataset("imagenet", "class", ds.class_names, {}, Split(ds.train.images[s], ds.train.labels[s]), ds.test)
              for s in (slice(0, 4), slice(4, 8))]
    assert train_sha256(halves[0]) != train_sha256(halves[1])  # slices are hashed by content
    write_jpeg(tmp_path / "imagenet" / "train" / "n01443537" / "extra.JPEG", (9, 9, 9), (20, 20))
    assert train_sha256(load_dataset("imagenet", data_dir=tmp_path, image_size=8)) != sha  # other sources


@pytest.mark.parametrize("name,hint", [("tinyimagenet", "tiny-imagenet-200"), ("imagenet", "imagenet"),
                                       ("celeba", "download=True")])
def test_a_missing_data_set_says_where_to_get_it_and_writes_nothing(name, hint, tmp_path):
    from kdfair_utils.datasets import load_dataset

    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(FileNotFoundError, match=hint) as err:
        load_dataset(name, data_dir=tmp_path, download=name != "celeba")  # no automatic download for these
    assert "Get it" in str(err.value) or "download" in str(err.value)
    assert sorted(tmp_path.rglob("*")) == before
