import numpy as np
import pytest

from kdfair_utils import trifeature as tf
from kdfair_utils.datasets import load_dataset, load_trifeature


def small_spec(**kw):
    return tf.TrifeatureSpec(**{"image_size": 16, "per_combination": 1, **kw})


def test_render_is_deterministic_and_seed_dependent():
    a = tf.render(tf.sample_params(small_spec()), small_spec())
    b = tf.render(tf.sample_params(small_spec()), small_spec())
    c = tf.render(tf.sample_params(small_spec(seed=1)), small_spec(seed=1))
    assert a.dtype == np.uint8 and a.shape == (1000, 3, 16, 16)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    params = tf.sample_params(small_spec())  # chunking and threads change nothing
    assert np.array_equal(tf.render(params, small_spec(), chunk=97, threads=3), a)
    assert np.array_equal(tf.render(params, small_spec(), chunk=5000, threads=1), a)


def test_factors_are_balanced():
    p = tf.sample_params(small_spec(per_combination=3))
    for name in ("shape", "texture", "color"):
        assert np.array_equal(np.bincount(p[name], minlength=10), np.full(10, 300))
    combos = p["shape"] * 100 + p["texture"] * 10 + p["color"]
    assert np.array_equal(np.bincount(combos, minlength=1000), np.full(1000, 3))


def test_color_is_the_palette_and_background_grey():
    spec = small_spec(supersample=1)
    p = tf.sample_params(spec)
    img = tf.render(p, spec).astype(float) / 255
    corner = img[:, :, 0, 0]  # the shape never reaches the corner pixel at scale 0.62 with ±45°? check most
    assert np.mean(np.all(np.abs(corner - 0.5) < 1 / 255, axis=1)) > 0.95
    solid = np.flatnonzero(p["texture"] == 0)
    for i in solid[:50]:
        pix = img[i].reshape(3, -1).T
        inside = pix[~np.all(np.abs(pix - 0.5) < 1 / 255, axis=1)]
        expected = np.array(tf.COLORS[tf.COLOR_NAMES[p["color"][i]]])
        assert np.allclose(inside.mean(0), expected, atol=1 / 255 + 1e-9)


@pytest.mark.parametrize("attribute", ["color", "texture"])
def test_counterfactual_twins_change_only_the_attribute(attribute):
    spec = small_spec(supersample=1)
    p = tf.sample_params(spec)
    twin = tf.counterfactual_params(p, attribute, seed=0)
    assert np.all(twin[attribute] != p[attribute])
    for key in p:
        if key != attribute:
            assert np.array_equal(twin[key], p[key])
    a, b = tf.render(p, spec), tf.render(twin, spec)
    background_a = np.all(a == 128, axis=1)
    background_b = np.all(b == 128, axis=1)
    assert np.array_equal(background_a, background_b)  # identical geometry
    assert np.all(np.any(a != b, axis=(1, 2, 3)))  # every twin differs


def test_dataset_labels_attributes_split_and_cache(data_dir):
    ds = load_trifeature("shape_color", data_dir=data_dir, image_size=16, per_combination=2)
    assert ds.num_classes == 100 and ds.class_names[2] == "triangle/blue" and ds.class_names[12] == "square/blue"
    assert len(ds.train) + len(ds.test) == 2000 and len(ds.test) == 400
    a = ds.train.attributes
    assert np.array_equal(ds.train.labels, a["shape"] * 10 + a["color"])
    table = ds.test.attribute_table(ds.attribute_values)
    assert list(table.columns) == ["shape", "texture", "color"] and str(table["color"].iloc[0]) in tf.COLOR_NAMES
    files = list((data_dir / "trifeature").glob("*.npz"))
    again = load_trifeature("shape", data_dir=data_dir, image_size=16, per_combination=2)
    assert list((data_dir / "trifeature").glob("*.npz")) == files  # same spec: cache reused, no new file
    assert np.array_equal(again.train.images, ds.train.images)
    twins = again.extra["test_cf_color"]
    assert np.array_equal(twins.labels, again.test.labels)
    assert np.all(twins.attributes["color"] != again.test.attributes["color"])
    assert np.array_equal(twins.attributes["texture"], again.test.attributes["texture"])


def test_generation_is_fast_enough(data_dir):
    import time

    start = time.perf_counter()
    tf.render(tf.sample_params(tf.TrifeatureSpec(per_combination=2)), tf.TrifeatureSpec(per_combination=2))
    assert time.perf_counter() - start < 30  # 2,000 32x32 images; ~1 s here


@pytest.mark.parametrize("kwargs,match", [
    ({"label": "size"}, "label"), ({"image_size": 4}, "image_size"), ({"test_fraction": 1.5}, "test_fraction"),
    ({"per_combination": 0}, "per_combination"), ({"colour": 3}, "option"),
])
def test_bad_trifeature_arguments(kwargs, match, data_dir):
    with pytest.raises(ValueError, match=match):
        load_trifeature(data_dir=data_dir, **kwargs)


def test_unknown_dataset_lists_known():
    with pytest.raises(ValueError, match="trifeature"):
        load_dataset("mnist")


def test_stratified_split_and_twin_subset(data_dir):
    ds = load_trifeature("shape", data_dir=data_dir, image_size=16, per_combination=1, test_per_combination=2,
                         twins_per_combination=1)
    combo = lambda split: tf.combination_ids(split.attributes)  # noqa: E731
    assert len(ds.test) == 2000 and len(ds.train) == 1000
    assert (np.bincount(combo(ds.test), minlength=1000) == 2).all()
    assert (np.bincount(combo(ds.train), minlength=1000) == 1).all()
    # the training images do not depend on the evaluation options: rendered from their own stream
    other = load_trifeature("shape", data_dir=data_dir, image_size=16, per_combination=1, test_per_combination=3)
    assert np.array_equal(other.train.images, ds.train.images) and len(other.test) == 3000
    assert not np.array_equal(other.test.images[::3][:50], ds.test.images[::2][:50])  # its own draws
    assert (tf.TrifeatureSpec(per_combination=1, test_per_combination=2).training_fields()
            == tf.TrifeatureSpec(per_combination=1, test_per_combination=3, twins_per_combination=1).training_fields())
    assert (tf.TrifeatureSpec(per_combination=2).training_fields()
            != tf.TrifeatureSpec(per_combination=2, test_fraction=0.5).training_fields())  # a carved split
    for attr, other in (("color", "texture"), ("texture", "color")):
        twins = ds.extra[f"test_cf_{attr}"]
        src = twins.source
        assert len(twins) == 1000 and len(np.unique(src)) == 1000 and src.max() < 2000
        assert (np.bincount(combo(ds.test)[src], minlength=1000) == 1).all()  # one twin per combination
        assert np.array_equal(twins.labels, ds.test.labels[src])               # shape kept: same label
        assert np.all(twins.attributes[attr] != ds.test.attributes[attr][src])
        assert np.array_equal(twins.attributes[other], ds.test.attributes[other][src])
    default = load_trifeature("shape", data_dir=data_dir, image_size=16, per_combination=2)
    assert np.array_equal(default.extra["test_cf_color"].source, np.arange(len(default.test)))


@pytest.mark.parametrize("kwargs,match", [
    ({"per_combination": 3, "test_per_combination": -1}, r"test_per_combination must be >= 0"),
    ({"per_combination": 3, "test_per_combination": 2, "twins_per_combination": 3}, "twins_per_combination must be <= 2"),
    ({"per_combination": 3, "test_per_combination": 2, "test_fraction": 0.5}, "not both"),
])
def test_bad_stratified_options(kwargs, match, data_dir):
    with pytest.raises(ValueError, match=match):
        load_dataset("trifeature", data_dir=data_dir, image_size=16, **kwargs)


def test_split_checks_its_twin_sources():
    from kdfair_utils.datasets import Split

    images, labels = np.zeros((3, 1, 2, 2), np.uint8), np.zeros(3, np.int64)
    with pytest.raises(ValueError, match="source must hold 3"):
        Split(images, labels, {}, np.array([0, 1]))
    with pytest.raises(ValueError, match="source must hold 3"):
        Split(images, labels, {}, np.array([0, -1, 2]))


def test_quick_profile_evaluation_split_has_200_per_cell_and_100_per_class():
    """Issue 10: the evaluation split of the quick profile holds at least 200 test images per
    (shape, colour) and per (shape, texture) cell — each with twins — and at least 100 per class
    of the 100-class task (checked on the sampled parameters, without rendering)."""
    from kdfair_utils.datasets import trifeature_spec
    from kdfair_utils.experiments import get_profile

    profile = get_profile("quick")
    for experiment in ("main", "class_bias"):
        cfg = profile.experiment(experiment)
        spec = trifeature_spec(cfg.data_options)
        params, _, test_idx, twin_source = tf.sample_splits(spec)
        shape = params["shape"][test_idx]
        for attribute in ("color", "texture"):
            cells = np.bincount(shape * 10 + params[attribute][test_idx], minlength=100)
            assert cells.min() >= 200, (experiment, attribute, cells.min())
            twin_cells = np.bincount((shape * 10 + params[attribute][test_idx])[twin_source], minlength=100)
            assert twin_cells.min() >= 20, (experiment, attribute, twin_cells.min())
    # the 100-class label is shape × colour: its classes are the (shape, colour) cells above
    assert profile.class_bias.label == "shape_color"
