import numpy as np
import pytest

from kdfair_utils import individual_fairness as ind


def test_lipschitz_ratio_by_hand():
    p = np.array([[0.7, 0.3], [0.5, 0.5]])
    q = np.array([[0.4, 0.6], [0.5, 0.5]])
    x = np.zeros((2, 4))
    x2 = np.array([[0.5, 0.5, 0.5, 0.5], [1.0, 0.0, 0.0, 0.0]])
    # TV: 0.3 and 0; RMS-L2 input distances: 0.5 and 0.5
    assert ind.lipschitz_ratio(p, q, x, x2) == pytest.approx((0.3 / 0.5 + 0.0) / 2)
    assert ind.lipschitz_ratio(p, q, x, x2, output="l1") == pytest.approx((0.6 / 0.5) / 2)
    assert ind.lipschitz_ratio(p, q, x, x2, output="l2") == pytest.approx((np.sqrt(0.18) / 0.5) / 2)
    per_pair = ind.lipschitz_ratio(p, q, x, x2, reduce=False)
    assert per_pair == pytest.approx([0.6, 0.0])


def test_lipschitz_ratio_vectorised_over_models_and_cosine():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 20, 5))
    probs, probs2 = ind.softmax(logits), ind.softmax(logits + rng.normal(0, 0.1, logits.shape))
    x, x2 = rng.random((20, 8)), rng.random((20, 8))
    many = ind.lipschitz_ratio(probs, probs2, x, x2, input="cosine")
    assert many.shape == (3,)
    for m in range(3):
        assert many[m] == pytest.approx(ind.lipschitz_ratio(probs[m], probs2[m], x, x2, input="cosine"))
    cos = 1 - (x * x2).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(x2, axis=1)
    tv = 0.5 * np.abs(probs[0] - probs2[0]).sum(1)
    assert many[0] == pytest.approx(np.mean(tv / cos))


def test_flip_rate_and_knn_pairs():
    assert ind.flip_rate([0, 1, 2, 3], [0, 1, 0, 0]) == 0.5
    assert ind.flip_rate(np.array([[0, 1], [1, 1]]), np.array([[0, 0], [1, 1]])).tolist() == [0.5, 0.0]
    f = np.array([[0.0], [1.0], [1.1], [5.0], [5.0]])
    pairs = ind.knn_pairs(f, k=1)
    assert pairs.tolist() == [[0, 1], [1, 2], [2, 1], [3, 2], [4, 2]]  # duplicates 3/4 skipped


def test_softmax_temperature():
    p = ind.softmax([[2.0, 0.0]], temperature=2.0)
    assert p[0, 0] == pytest.approx(np.e / (np.e + 1))


def test_bad_input():
    p = np.full((2, 2), 0.5)
    with pytest.raises(ValueError, match="input distance 0"):
        ind.lipschitz_ratio(p, p, np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="differ in shape"):
        ind.lipschitz_ratio(p, p[:1], np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="output distance"):
        ind.lipschitz_ratio(p, p, np.zeros((2, 3)), np.ones((2, 3)), output="kl")
    with pytest.raises(ValueError, match="NaN"):
        ind.lipschitz_ratio(np.full((2, 2), np.nan), p, np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="k must be"):
        ind.knn_pairs(np.zeros((3, 2)), k=3)


def test_knn_never_pairs_identical_vectors_even_far_from_the_origin():
    """The Gram trick's rounding grows with the vectors' size: duplicates are caught exactly."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        f = rng.random((5, 100)) + 10
        f = np.r_[f, f[:1]]
        pairs = ind.knn_pairs(f, k=2)
        assert not any(np.array_equal(f[a], f[b]) for a, b in pairs)
        assert all(a != b for a, b in pairs)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_knn_pairs_chunked_and_on_queries_equal_the_brute_force_neighbours(metric, tmp_path):
    """Reading the features a chunk at a time (from a memmap) and asking for some rows only gives
    each row's neighbours from the full distance matrix."""
    rng = np.random.default_rng(1)
    f = rng.integers(0, 256, size=(37, 3, 4, 4)).astype(np.uint8)
    f[5] = f[9]  # a duplicate: never a pair
    flat = f.reshape(37, -1).astype(np.float64)
    if metric == "cosine":
        flat /= np.linalg.norm(flat, axis=1, keepdims=True)
        dist = 1 - flat @ flat.T
    else:
        dist = ((flat[:, None] - flat[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    dist[5, 9] = dist[9, 5] = np.inf
    expected = np.argsort(dist, axis=1, kind="stable")[:, :2]
    path = tmp_path / "f.npy"
    np.save(path, f)
    mapped = np.load(path, mmap_mode="r")
    queries = ind.neighbour_queries(37, 10, seed=3)
    assert len(queries) == 10 and np.all(np.diff(queries) > 0)
    assert np.array_equal(queries, ind.neighbour_queries(37, 10, seed=3))
    assert np.array_equal(ind.neighbour_queries(37, 50, seed=3), np.arange(37))
    for source, chunk in ((f, 4096), (mapped, 4)):
        pairs = ind.knn_pairs(source, k=2, metric=metric, queries=queries, chunk=chunk)
        assert pairs[:, 0].tolist() == np.repeat(queries, 2).tolist()
        assert pairs[:, 1].tolist() == expected[queries].ravel().tolist()
    assert np.array_equal(ind.knn_pairs(f, metric=metric, chunk=5), ind.knn_pairs(f, metric=metric))
    with pytest.raises(ValueError, match="queries must be row indices"):
        ind.knn_pairs(f, queries=[40])


def test_knn_pairs_takes_lists_and_refuses_a_zero_image_under_cosine():
    assert ind.knn_pairs([[0.0, 1.0], [1.0, 1.0], [3.0, 3.0]]).tolist() == [[0, 1], [1, 0], [2, 1]]
    with pytest.raises(ValueError, match="cosine distance is undefined for an all-zero input"):
        ind.knn_pairs(np.array([[0.0, 0.0], [1.0, 1.0], [3.0, 1.0]]), metric="cosine")
