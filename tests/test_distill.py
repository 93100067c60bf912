import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from kdfair_utils.distill import KDLoss, distillation_term, kd_loss, soft_targets


def np_kl_teacher_student(s, t, T):
    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    pt, ps = softmax(t / T), softmax(s / T)
    return float(np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), -1)))


def test_kd_loss_closed_form_two_classes():
    # student uniform, teacher p = (3/4, 1/4) at T = 1; target class 0
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])
    y = torch.tensor([0])
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    ce = math.log(2.0)
    assert kd_loss(s, t, y, temperature=1.0, alpha=0.8).item() == pytest.approx(0.8 * kl + 0.2 * ce, abs=1e-7)
    assert kd_loss(s, t, y, temperature=1.0, alpha=0.0).item() == pytest.approx(ce, abs=1e-7)
    assert kd_loss(s, t, y, temperature=1.0, alpha=1.0).item() == pytest.approx(kl, abs=1e-7)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0, 10.0, 40.0])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.8, 1.0])
def test_kd_loss_matches_numpy_reference(T, alpha):
    rng = np.random.default_rng(int(T * 10 + alpha * 100))
    s, t = rng.normal(size=(16, 7)) * 3, rng.normal(size=(16, 7)) * 3
    y = rng.integers(0, 7, 16)
    ce = float(np.mean(np.log(np.exp(s).sum(1)) - s[np.arange(16), y]))
    expected = alpha * T * T * np_kl_teacher_student(s, t, T) + (1 - alpha) * ce
    got = kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), temperature=T, alpha=alpha)
    assert got.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)
    no_t2 = kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), temperature=T, alpha=alpha, t2_scaling=False)
    assert no_t2.item() == pytest.approx(alpha * np_kl_teacher_student(s, t, T) + (1 - alpha) * ce, rel=1e-10, abs=1e-12)


@pytest.mark.filterwarnings("ignore:reduction. .mean. divides")
def test_batchmean_not_mean():
    """Our term is the KL summed over classes, averaged over the batch: C times PyTorch's 'mean'."""
    torch.manual_seed(0)
    b, c, T = 64, 100, 4.0
    s, t = torch.randn(b, c), torch.randn(b, c)
    ours = distillation_term(s, t, T, t2_scaling=False)
    ls, pt = F.log_softmax(s / T, 1), F.softmax(t / T, 1)
    assert ours.item() == pytest.approx(F.kl_div(ls, pt, reduction="sum").item() / b, rel=1e-6)
    assert ours.item() == pytest.approx(c * F.kl_div(ls, pt, reduction="mean").item(), rel=1e-6)


def test_t2_scaling_keeps_gradient_size_across_temperatures():
    torch.manual_seed(0)
    t = torch.randn(256, 10) * 3
    s0 = torch.randn(256, 10) * 3

    def grad_norm(T, scale):
        s = s0.clone().requires_grad_(True)
        distillation_term(s, t, T, t2_scaling=scale).backward()
        return s.grad.norm().item()

    temps = [1.0, 2.0, 4.0, 8.0, 16.0]
    scaled = [grad_norm(T, True) for T in temps]
    unscaled = [grad_norm(T, False) for T in temps]
    assert max(scaled) / min(scaled) < 3.0
    assert unscaled[0] / unscaled[-1] > 50.0  # ~1/T² without the factor
    for T, a, b in zip(temps, scaled, unscaled):
        assert a == pytest.approx(b * T * T, rel=1e-5)


def test_teacher_gets_no_gradient():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    kd_loss(s, t, torch.tensor([0, 1, 2, 0]), temperature=3.0, alpha=0.8).backward()
    assert t.grad is None and s.grad is not None


def test_soft_targets_flatten_with_temperature():
    z = torch.tensor([5.0, 1.0, 0.0])
    ents = [-(p * p.log()).sum().item() for p in (soft_targets(z, T) for T in (1, 2, 5, 10, 40))]
    assert all(a < b for a, b in zip(ents, ents[1:]))
    assert soft_targets(z, 1.0).sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("T,alpha,match", [(0.0, 0.5, "temperature"), (-1.0, 0.5, "temperature"),
                                           (2.0, 1.5, "alpha"), (2.0, -0.1, "alpha")])
def test_bad_kd_arguments(T, alpha, match):
    with pytest.raises(ValueError, match=match):
        kd_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([0]), temperature=T, alpha=alpha)


def test_kdloss_sets_the_knobs_once_and_equals_kd_loss():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(8, 5, generator=g) * 2, torch.randn(8, 5, generator=g) * 2
    y = torch.randint(0, 5, (8,), generator=g)
    for T, alpha, t2 in ((1.0, 0.8, True), (4.0, 0.5, False), (10.0, 1.0, True)):
        loss = KDLoss(T, alpha, t2)
        assert loss(s, t, y).item() == kd_loss(s, t, y, T, alpha, t2).item()
        assert loss.to_dict() == {"temperature": T, "alpha": alpha, "t2_scaling": t2}


@pytest.mark.parametrize("kwargs,match", [({"temperature": float("inf")}, "temperature"),
                                          ({"temperature": float("nan")}, "temperature"),
                                          ({"temperature": 2.0, "alpha": 1.5}, "alpha"),
                                          ({"temperature": 2.0, "t2_scaling": "no"}, "t2_scaling")])
def test_kdloss_refuses_bad_knobs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KDLoss(**kwargs)


def test_unchecked_call_equals_the_checked_loss():
    g = torch.Generator().manual_seed(3)
    s, t, y = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g), torch.randint(0, 5, (8,), generator=g)
    kd = KDLoss(3.0, 0.7)
    assert torch.equal(kd(s, t, y, check=False), kd(s, t, y))
    assert torch.isclose(kd(s, t, y), torch.tensor(float(
        0.7 * 9 * (F.softmax(t / 3, -1) * (F.log_softmax(t / 3, -1) - F.log_softmax(s / 3, -1))).sum(-1).mean()
        + 0.3 * F.cross_entropy(s, y))), rtol=0, atol=1e-6)
