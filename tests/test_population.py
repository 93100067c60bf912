"""Population training equals one-at-a-time training (kdfair_utils.population)."""

import copy

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from kdfair_utils.distill import KDLoss, kd_loss
from kdfair_utils.grid import GridConfig, chunks, model_specs, run_grid
from kdfair_utils.models import build_model
from kdfair_utils.population import Member, pack, pack_inputs, population_loss, train_population, unpack, unpack_outputs
from kdfair_utils.results import Population
from kdfair_utils.train import TrainConfig, seed_everything, train_model, with_normalization

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (200, 3, 16, 16), dtype=np.uint8)
LABELS = RNG.integers(0, 10, 200)
TEACHER_LOGITS = (RNG.normal(size=(200, 10)) * 3).astype(np.float32)


def built(arch, seed):
    seed_everything(seed)
    return with_normalization(build_model(arch, 10, image_size=16), IMAGES)


def max_param_diff(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa)


@pytest.mark.parametrize("arch", ["lenet5", "resnet8"])
def test_pack_unpack_round_trip_and_forward(arch):
    models = [built(arch, s) for s in (0, 1, 2)]
    packed = pack(models)
    copies = [built(arch, 9) for _ in models]
    unpack(packed, copies)
    for a, b in zip(models, copies):
        assert max_param_diff(a, b) == 0.0
    x = torch.rand(3, 5, 3, 16, 16)
    for mode in ("eval", "train"):  # train mode: batch-norm statistics per model
        for m in models + [packed]:
            getattr(m, mode)()
        out = unpack_outputs(packed(pack_inputs(x)), 3)
        ref = torch.stack([m(x[i]) for i, m in enumerate(models)])
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_pack_refuses_mixed_architectures():
    with pytest.raises(ValueError, match="one architecture"):
        pack([built("lenet5", 0), built("resnet8", 0)])


def test_population_loss_equals_kd_loss_and_cross_entropy():
    out = torch.randn(3, 8, 10, dtype=torch.float64)
    teacher = torch.randn(3, 8, 10, dtype=torch.float64) * 4
    y = torch.randint(0, 10, (3, 8))
    kds = [None, KDLoss(2.0, 0.8), KDLoss(7.5, 0.3, t2_scaling=False)]
    got = population_loss(out, teacher, y, kds)
    assert float(got[0]) == pytest.approx(float(F.cross_entropy(out[0], y[0])), rel=1e-12)
    for i in (1, 2):
        want = kd_loss(out[i], teacher[i], y[i], kds[i].temperature, kds[i].alpha, kds[i].t2_scaling)
        assert float(got[i]) == pytest.approx(float(want), rel=1e-12)


# Tolerance of one-at-a-time vs packed training, fp32 on the CPU: a grouped convolution sums its
# products in another order than a plain one. In float64 the two agree to 1e-14 (the arithmetic is
# the same); in fp32 batch norm at initialisation amplifies the rounding (one ResNet-8 gradient
# differed by 0.5 % of its largest entry after one step). Measured after these steps: LeNet-5
# ≤ 1e-6, ResNet-8 ≤ 6e-5 on any weight; bound 1e-4.
STEP_TOLERANCE = 1e-4


@pytest.mark.parametrize("arch,augment", [("lenet5", "none"), ("resnet8", "flip_translate")])
def test_population_training_equals_one_at_a_time(arch, augment):
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, warmup_epochs=1, grad_clip=1.0, augment=augment)
    teacher = built("resnet8", 7).eval()
    # (seed, T): two NDS, and DS that share seed 0's batch stream (and, augmented, its teacher forward)
    plan = [(0, None), (1, None), (0, 2.0), (0, 8.0), (1, 4.0)]
    singles = [built(arch, seed) for seed, _ in plan]
    packed = [copy.deepcopy(m) for m in singles]
    source = {"teacher_logits": TEACHER_LOGITS} if augment == "none" else {"teacher": teacher}
    histories = []
    for (seed, t), model in zip(plan, singles):
        extra = {} if t is None else {"kd": KDLoss(t, 0.8), **source}
        histories.append(train_model(model, IMAGES, LABELS, cfg, seed=seed, device="cpu", progress=False,
                                     precision="fp32", **extra))
    members = [Member(seed) if t is None else Member(seed, KDLoss(t, 0.8), **source) for seed, t in plan]
    got = train_population(packed, members, IMAGES, LABELS, cfg, device="cpu", progress=False, precision="fp32")
    for single, pop, h_single, h_pop in zip(singles, packed, histories, got):
        assert max_param_diff(single, pop) < STEP_TOLERANCE
        np.testing.assert_allclose(h_pop["loss"], h_single["loss"], rtol=1e-5)
    assert all(not m.training for m in packed)


def test_population_refuses_bad_members():
    cfg = TrainConfig(epochs=1, batch_size=64)
    with pytest.raises(ValueError, match="one member per model"):
        train_population([built("lenet5", 0)], [], IMAGES, LABELS, cfg, device="cpu")
    with pytest.raises(ValueError, match="go together"):
        train_population([built("lenet5", 0)], [Member(0, KDLoss(2.0))], IMAGES, LABELS, cfg, device="cpu")
    with pytest.raises(ValueError, match="seed"):
        train_population([built("lenet5", 0)], [Member(-1)], IMAGES, LABELS, cfg, device="cpu")


def tiny(**changes):
    cfg = GridConfig(data_options={"image_size": 16, "per_combination": 1}, teacher="resnet8", student="lenet5",
                     teacher_train=TrainConfig(epochs=1, batch_size=64, lr=0.05),
                     student_train=TrainConfig(epochs=3, batch_size=64, lr=0.05, grad_clip=5.0),
                     teacher_seeds=(0, 1), seeds=(0, 1, 2), temperatures=(2.0, 4.0))
    return cfg.replace(**changes) if changes else cfg


def test_grid_population_engine_matches_single_engine(tmp_path, data_dir):
    """A whole tiny grid: same models, keyed apart by engine, with the same predictions (fp32).
    Measured: the packed ResNet-8 teachers' logits differ by up to 0.0093 (99.5 % of predictions
    agree; see STEP_TOLERANCE for why), the students' by up to 0.001 (all agree)."""
    pop = run_grid(tiny(), runs_dir=tmp_path / "a", data_dir=data_dir, progress=False, precision="fp32",
                   population_size=4)
    one = run_grid(tiny(), runs_dir=tmp_path / "b", data_dir=data_dir, progress=False, precision="fp32",
                   engine="single")
    assert {s.key for s in pop.specs}.isdisjoint({s.key for s in one.specs})
    assert [m["population"] for m in pop.meta.values()] == [2, 2] + [3] * 9
    for population in pop.populations():
        a, b = pop.logits(population), one.logits(population)
        assert np.abs(a - b).max() < 0.05
        assert (a.argmax(-1) == b.argmax(-1)).mean() >= 0.98
    assert Population.ds(4) in pop.populations()


def test_chunks_are_balanced_and_keep_roles_apart():
    specs = model_specs(tiny(seeds=tuple(range(5)), temperatures=tuple(range(1, 9))))
    got = chunks(specs, 16)
    assert [len(c) for c in got] == [2, 15, 15, 15]
    assert all(s.role == "teacher" for s in got[0]) and [s for c in got for s in c] == specs
    assert [len(c) for c in chunks(specs, 1)] == [1] * len(specs)


@pytest.mark.parametrize("kwargs,match", [({"engine": "vmap"}, "engine"), ({"population_size": 0}, "population_size"),
                                          ({"precision": "fp16"}, "precision")])
def test_grid_refuses_bad_engine_options_before_writing(tmp_path, data_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_grid(tiny(), runs_dir=tmp_path / "runs", data_dir=data_dir, progress=False, **kwargs)
    assert not (tmp_path / "runs").exists()


def test_members_refuse_both_teacher_sources_and_a_non_kdloss():
    cfg = TrainConfig(epochs=1, batch_size=64)
    teacher = built("resnet8", 7)
    with pytest.raises(ValueError, match="not both"):
        train_population([built("lenet5", 0)], [Member(0, KDLoss(2.0), TEACHER_LOGITS, teacher)], IMAGES, LABELS,
                         cfg, device="cpu")
    with pytest.raises(ValueError, match="kd must be a KDLoss"):
        train_population([built("lenet5", 0)], [Member(0, 2.0, TEACHER_LOGITS)], IMAGES, LABELS, cfg, device="cpu")


def test_packed_linear_without_bias():
    layers = [torch.nn.Linear(4, 3, bias=False) for _ in range(2)]
    packed = pack([torch.nn.Sequential(layer) for layer in layers])
    x = torch.randn(5, 2, 4)
    out = packed(x.reshape(5, 8)).reshape(5, 2, 3)
    for i, layer in enumerate(layers):
        torch.testing.assert_close(out[:, i], layer(x[:, i]))


@pytest.mark.parametrize("arch", ["lenet5", "resnet8"])
def test_packed_gradients_equal_one_at_a_time_in_float64(arch):
    """The arithmetic is the same: in float64 only the summation order differs (≤ 1e-12)."""
    models = [built(arch, s).double().train() for s in (0, 1, 2)]
    packed = pack(models).train()
    x = torch.rand(3, 16, 3, 16, 16, dtype=torch.float64)
    y = torch.randint(0, 10, (3, 16))
    out = unpack_outputs(packed(pack_inputs(x)), 3)
    population_loss(out, None, y, [None] * 3).sum().backward()
    for i, m in enumerate(models):
        F.cross_entropy(m(x[i]), y[i]).backward()
    grads = copy.deepcopy(packed)
    with torch.no_grad():
        for (_, p), (_, g) in zip(packed.named_parameters(), grads.named_parameters()):
            g.copy_(p.grad)
    mirrors = [built(arch, 9).double() for _ in models]
    unpack(grads, mirrors)
    for m, mirror in zip(models, mirrors):
        for (name, p), (_, g) in zip(m.named_parameters(), mirror.named_parameters()):
            torch.testing.assert_close(g, p.grad, rtol=1e-12, atol=1e-12, msg=name)
