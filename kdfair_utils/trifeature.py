"""Trifeature (Hermann & Lampinen, NeurIPS 2020), generated offline and vectorised.

Every image is a *shape* filled with a *texture* and tinted with a *colour* on a grey
background; 10 values each, so 1000 combinations. The paper (Mohammadshahi & Ioannou,
TMLR 2025) classifies shape and uses colour or texture as the protected attribute.

Conventions (ours where the paper is silent, all parameters of :class:`TrifeatureSpec`):

* Geometry: the shape spans ``shape_scale`` of the canvas, is rotated uniformly in
  [-45°, 45°) and its centre is placed uniformly so that it stays on the canvas.
* Texture: period ``texture_period`` (a fraction of the image side), random phase and
  a random rotation in [-45°, 45°). Inside the shape a pixel is
  ``colour * (0.35 + 0.65 * texture)``: "off" texture pixels are a darker tint of the colour,
  so the colour stays visible on every texture. Background grey (0.5, 0.5, 0.5).
* Anti-aliasing: each image is rendered at ``supersample`` × the size and box-averaged.
* Split: test images are of the same combinations as training images (not held-out
  combinations). Either a separate, stratified evaluation split rendered from its own random
  stream (the quick profile: 20 images of every combination, so 200 per (shape, colour) cell),
  or a seeded random share of one pool (the paper profile; the paper's teacher has DPD 3.64 % at
  100 % accuracy, which needs finite-sample imbalance of this kind). See :class:`TrifeatureSpec`.
* Counterfactual twins: the same geometry and texture phase with one attribute replaced
  (see :func:`render`), used for individual fairness.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .paths import usable_cores

SHAPES: tuple[str, ...] = (
    "triangle", "square", "plus", "circle", "tee",
    "rhombus", "pentagon", "star", "fivesquare", "trapezoid",
)
TEXTURES: tuple[str, ...] = (
    "solid", "stripes", "grid", "hexgrid", "dots",
    "noise", "triangles", "zigzags", "rain", "pluses",
)
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0), "pink": (1.0, 0.4, 1.0), "cyan": (0.0, 1.0, 1.0),
    "purple": (0.3, 0.0, 0.5), "ocean": (0.1, 0.4, 0.5), "orange": (1.0, 0.6, 0.0),
    "white": (1.0, 1.0, 1.0),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
ATTRIBUTES: dict[str, tuple[str, ...]] = {"shape": SHAPES, "texture": TEXTURES, "color": COLOR_NAMES}
BACKGROUND = 0.5
N_COMBINATIONS = len(SHAPES) * len(TEXTURES) * len(COLOR_NAMES)  # 1000


@dataclass(frozen=True)
class TrifeatureSpec:
    """Every parameter that determines the generated images (and so their cache key).

    Two ways to get a test split:

    * ``test_per_combination`` > 0 (the quick profile): ``per_combination`` training images of
      every (shape, colour, texture) combination, and a *separate* evaluation split of
      ``test_per_combination`` images of every combination, drawn from its own random stream
      (``[seed, EVAL_STREAM]``). The training images do not depend on the evaluation options, so
      a model's cache key leaves them out (:meth:`training_fields`) and growing the evaluation
      split retrains nothing. Leave ``test_fraction`` at its default.
    * otherwise: ``per_combination`` images of every combination, of which a seeded random
      ``test_fraction`` is the test split (the training images depend on ``test_fraction``).

    Counterfactual twins are rendered for every test image, or, with ``twins_per_combination`` > 0,
    for that many test images of every combination (their split's ``source`` says which); they
    are evaluation data in both modes.
    """

    image_size: int = 32
    per_combination: int = 10
    test_fraction: float = 0.2
    test_per_combination: int = 0
    twins_per_combination: int = 0
    seed: int = 0
    shape_scale: float = 0.62
    texture_period: float = 0.25
    supersample: int = 2

    def validate(self, prefix: str = "") -> None:
        """``ValueError`` naming the field (``prefix``: e.g. ``data_options.``)."""
        from .validation import SEED_RANGE, check_int, check_number

        check_int(self.image_size, f"{prefix}image_size", minimum=8, maximum=1024)
        check_int(self.per_combination, f"{prefix}per_combination", minimum=1, maximum=1000)
        check_number(self.test_fraction, f"{prefix}test_fraction", minimum=0, maximum=1,
                     min_inclusive=False, max_inclusive=False)
        check_int(self.seed, f"{prefix}seed", minimum=SEED_RANGE[0], maximum=SEED_RANGE[1])
        check_number(self.shape_scale, f"{prefix}shape_scale", minimum=0.1, maximum=1)
        check_number(self.texture_period, f"{prefix}texture_period", minimum=0, maximum=1, min_inclusive=False)
        check_int(self.supersample, f"{prefix}supersample", minimum=1, maximum=8)
        check_int(self.test_per_combination, f"{prefix}test_per_combination", minimum=0, maximum=1000)
        check_int(self.twins_per_combination, f"{prefix}twins_per_combination", minimum=0,
                  maximum=self.test_per_combination or self.per_combination)
        if self.test_per_combination and self.test_fraction != TrifeatureSpec.test_fraction:
            raise ValueError(f"set {prefix}test_fraction or {prefix}test_per_combination, not both")
        n = self.per_combination * N_COMBINATIONS
        n_test = int(round(n * self.test_fraction))
        if not self.test_per_combination and not 1 <= n_test <= n - 1:
            raise ValueError(f"{prefix}test_fraction {self.test_fraction:g} of {n} images leaves "
                             f"{n_test} test and {n - n_test} training images; both need at least one")

    def to_dict(self) -> dict:
        return asdict(self)

    def training_fields(self) -> dict:
        """The fields that determine the training images: all but the evaluation options
        (``twins_per_combination``; with a separate evaluation split, its size as well)."""
        fields = self.to_dict()
        del fields["twins_per_combination"]
        if self.test_per_combination:
            del fields["test_per_combination"], fields["test_fraction"]
            fields["evaluation"] = "separate"
        return fields


# ----------------------------------------------------------------------------- geometry
def _regular_polygon(n: int, radius: float, phase: float = np.pi / 2) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _rect(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def _star_pieces() -> list[np.ndarray]:
    outer = _regular_polygon(5, 0.95)
    inner = _regular_polygon(5, 0.40, phase=np.pi / 2 + np.pi / 5)
    pieces = [inner]
    for k in range(5):
        pieces.append(np.stack([outer[k], inner[k], inner[k - 1]]))
    return pieces


# Each shape is a union of convex polygons (counter-clockwise vertices) in [-1, 1]², y up.
_SHAPE_PIECES: dict[str, list[np.ndarray]] = {
    "triangle": [_regular_polygon(3, 0.95, phase=np.pi / 2) + [0.0, -0.15]],
    "square": [_rect(-0.72, 0.72, -0.72, 0.72)],
    "plus": [_rect(-0.28, 0.28, -0.9, 0.9), _rect(-0.9, 0.9, -0.28, 0.28)],
    "circle": [],  # analytic, see _inside
    "tee": [_rect(-0.9, 0.9, 0.35, 0.9), _rect(-0.28, 0.28, -0.9, 0.9)],
    "rhombus": [np.array([[0.0, -0.95], [0.6, 0.0], [0.0, 0.95], [-0.6, 0.0]])],
    "pentagon": [_regular_polygon(5, 0.92)],
    "star": _star_pieces(),
    "fivesquare": [_rect(cx - 0.25, cx + 0.25, cy - 0.25, cy + 0.25)
                   for cx, cy in [(-0.6, -0.6), (0.6, -0.6), (0.0, 0.0), (-0.6, 0.6), (0.6, 0.6)]],
    "trapezoid": [np.array([[-0.9, -0.6], [0.9, -0.6], [0.45, 0.6], [-0.45, 0.6]])],
}


def _inside_convex(x: np.ndarray, y: np.ndarray, poly: np.ndarray) -> np.ndarray:
    inside = np.ones(x.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, axis=0)):
        inside &= (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) >= 0
    return inside


def _inside(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if shape == "circle":
        return x * x + y * y <= 0.85**2
    mask = np.zeros(x.shape, dtype=bool)
    for poly in _SHAPE_PIECES[shape]:
        mask |= _inside_convex(x, y, poly)
    return mask


# ----------------------------------------------------------------------------- textures
def _texture(name: str, u: np.ndarray, v: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
    """Binary texture in texture coordinates (u, v measured in periods)."""
    fu, fv = u - np.floor(u), v - np.floor(v)
    if name == "solid":
        return np.ones(u.shape, dtype=bool)
    if name == "stripes":
        return fu < 0.5
    if name == "grid":
        return (fu < 0.3) | (fv < 0.3)
    if name == "hexgrid":
        # distance to the nearest point of a hexagonal lattice; holes at lattice points
        row = np.floor(v / 0.866)
        uu = u + 0.5 * (row % 2)
        du = uu - np.round(uu)
        dv = v - 0.866 * (row + 0.5)
        return du * du + dv * dv > 0.3**2
    if name == "dots":
        return (fu - 0.5) ** 2 + (fv - 0.5) ** 2 < 0.3**2
    if name == "noise":
        assert noise is not None
        return noise
    if name == "triangles":
        return fu + fv < 1.0
    if name == "zigzags":
        tri = np.abs(2 * fu - 1)
        w = v + 0.5 * tri
        return (w - np.floor(w)) < 0.5
    if name == "rain":
        w = v / 2
        return (fu < 0.25) & ((w - np.floor(w)) < 0.5)
    if name == "pluses":
        du, dv = np.abs(fu - 0.5), np.abs(fv - 0.5)
        return ((du < 0.12) & (dv < 0.38)) | ((du < 0.38) & (dv < 0.12))
    raise ValueError(f"unknown texture {name!r}; known: {TEXTURES}")


# ----------------------------------------------------------------------------- sampling
EVAL_STREAM = 4  # the separate evaluation split's random stream, [seed, EVAL_STREAM]


def sample_params(spec: TrifeatureSpec, per_combination: int | None = None,
                  stream: int | None = None) -> dict[str, np.ndarray]:
    """Per-image factors and nuisance parameters, ``per_combination`` (default: the spec's)
    images per combination, drawn from the random stream ``seed`` (or ``[seed, stream]``)."""
    spec.validate()
    rng = np.random.default_rng(spec.seed if stream is None else [spec.seed, stream])
    combos = np.arange(1000).repeat(spec.per_combination if per_combination is None else per_combination)
    n = combos.size
    half = 1.0 - spec.shape_scale
    return {
        "shape": combos // 100,
        "texture": (combos // 10) % 10,
        "color": combos % 10,
        "angle": rng.uniform(-np.pi / 4, np.pi / 4, n),
        "cx": rng.uniform(-half, half, n),
        "cy": rng.uniform(-half, half, n),
        "tex_angle": rng.uniform(-np.pi / 4, np.pi / 4, n),
        "tex_du": rng.uniform(0, 1, n),
        "tex_dv": rng.uniform(0, 1, n),
        "noise_seed": rng.integers(0, 2**31 - 1, n),
    }


def render(params: dict[str, np.ndarray], spec: TrifeatureSpec, *, chunk: int = 1024,
           threads: int | None = None) -> np.ndarray:
    """Render images from per-image parameters; returns uint8 ``[N, 3, H, W]``.

    To make a counterfactual twin, copy ``params`` and replace ``"color"`` or ``"texture"``:
    geometry, texture phase and noise stay identical. Chunks of ``chunk`` images render on
    ``threads`` threads (default: the usable cores, at most 4; numpy releases the GIL); every
    image depends only on its own parameters, so the result does not depend on either.
    """
    from concurrent.futures import ThreadPoolExecutor

    spec.validate()
    n = len(params["shape"])
    out = np.empty((n, 3, spec.image_size, spec.image_size), dtype=np.uint8)
    if threads is None:
        threads = usable_cores(4)
    starts = range(0, n, chunk)
    with ThreadPoolExecutor(max(1, min(threads, len(starts)))) as pool:
        list(pool.map(lambda start: _render_chunk(params, spec, slice(start, min(n, start + chunk)), out), starts))
    return out


def _render_chunk(params: dict[str, np.ndarray], spec: TrifeatureSpec, sl: slice, out: np.ndarray) -> None:
    """Render the images ``sl`` of ``params`` into ``out[sl]``."""
    size, ss = spec.image_size, spec.supersample
    big = size * ss
    grid = (np.arange(big) + 0.5) / big * 2 - 1
    gx, gy = np.meshgrid(grid, -grid)  # y up
    palette = np.array([COLORS[c] for c in COLOR_NAMES], dtype=np.float32)
    noise_cells = 8  # noise texture: 8x8 cells per period
    p = {k: np.asarray(v)[sl] for k, v in params.items()}
    m = len(p["shape"])
    # shape coordinates: undo translation, rotation and scale
    x = gx[None] - p["cx"][:, None, None]
    y = gy[None] - p["cy"][:, None, None]
    ca, sa = np.cos(p["angle"])[:, None, None], np.sin(p["angle"])[:, None, None]
    xs = (ca * x + sa * y) / spec.shape_scale
    ys = (-sa * x + ca * y) / spec.shape_scale
    mask = np.zeros((m, big, big), dtype=bool)
    for s_idx, s_name in enumerate(SHAPES):
        sel = np.flatnonzero(p["shape"] == s_idx)
        if sel.size:
            mask[sel] = _inside(s_name, xs[sel], ys[sel])
    # texture coordinates, in periods
    ct, st = np.cos(p["tex_angle"])[:, None, None], np.sin(p["tex_angle"])[:, None, None]
    period = 2 * spec.texture_period
    u = (ct * gx[None] + st * gy[None]) / period + p["tex_du"][:, None, None]
    v = (-st * gx[None] + ct * gy[None]) / period + p["tex_dv"][:, None, None]
    tex = np.zeros((m, big, big), dtype=bool)
    for t_idx, t_name in enumerate(TEXTURES):
        sel = np.flatnonzero(p["texture"] == t_idx)
        if not sel.size:
            continue
        noise = None
        if t_name == "noise":
            cells = np.stack([
                np.random.default_rng(int(sd)).random((64, 64)) < 0.5 for sd in p["noise_seed"][sel]
            ])
            iu = np.mod(np.floor(u[sel] * noise_cells), 64).astype(np.int64)
            iv = np.mod(np.floor(v[sel] * noise_cells), 64).astype(np.int64)
            noise = np.take_along_axis(cells.reshape(sel.size, -1), (iv * 64 + iu).reshape(sel.size, -1),
                                       axis=1).reshape(iu.shape)
        tex[sel] = _texture(t_name, u[sel], v[sel], noise)
    shade = np.where(tex, 1.0, 0.35).astype(np.float32)
    color = palette[p["color"]][:, :, None, None]  # [m, 3, 1, 1]
    img = np.where(mask[:, None], color * shade[:, None], np.float32(BACKGROUND))
    img = img.reshape(m, 3, size, ss, size, ss).mean(axis=(3, 5))
    out[sl] = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train/test split of ``n`` images (sorted index arrays)."""
    perm = np.random.default_rng([seed, 1]).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def stratified_indices(combos: np.ndarray, per_group: int, seed: int, stream: int) -> np.ndarray:
    """Sorted indices of ``per_group`` seeded random images of every combination in ``combos``."""
    rng = np.random.default_rng([seed, stream])
    chosen = [rng.permutation(np.flatnonzero(combos == c))[:per_group] for c in np.unique(combos)]
    return np.sort(np.concatenate(chosen))


def sample_splits(spec: TrifeatureSpec) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """``(params, train_idx, test_idx, twin_source)`` of the spec (see :class:`TrifeatureSpec`):
    the parameters of every image to render, which rows are training and test images, and which
    test images (indices into the test split) get counterfactual twins."""
    params = sample_params(spec)
    n = len(params["shape"])
    if spec.test_per_combination:
        test = sample_params(spec, spec.test_per_combination, stream=EVAL_STREAM)
        params = {k: np.concatenate([v, test[k]]) for k, v in params.items()}
        train_idx, test_idx = np.arange(n), n + np.arange(len(test["shape"]))
    else:
        train_idx, test_idx = split_indices(n, spec.test_fraction, spec.seed)
    if spec.twins_per_combination:
        source = stratified_indices(combination_ids(params)[test_idx], spec.twins_per_combination, spec.seed, 3)
    else:
        source = np.arange(len(test_idx))
    return params, train_idx, test_idx, source


def combination_ids(params: dict[str, np.ndarray]) -> np.ndarray:
    """Each image's (shape, colour, texture) combination as one integer."""
    return (params["shape"] * len(COLOR_NAMES) + params["color"]) * len(TEXTURES) + params["texture"]


def counterfactual_params(params: dict[str, np.ndarray], attribute: str, seed: int) -> dict[str, np.ndarray]:
    """Copy of ``params`` where ``attribute`` ("color" or "texture") takes another random value."""
    if attribute not in ("color", "texture"):
        raise ValueError(f"attribute must be 'color' or 'texture', got {attribute!r}")
    rng = np.random.default_rng([seed, 2, 0 if attribute == "color" else 1])
    shift = rng.integers(1, 10, len(params[attribute]))
    twin = dict(params)
    twin[attribute] = (np.asarray(params[attribute]) + shift) % 10
    return twin
