"""Population training: many models of one architecture trained together, as one packed network.

A population of P models (students of every seed and temperature of a grid, or teachers) is
*packed* into one network whose every layer holds the P models side by side:

* ``Conv2d(in, out)`` → ``Conv2d(P·in, P·out, groups=P)``: model p owns input channels
  ``p·in … (p+1)·in − 1`` and output channels ``p·out …``; the packed weight is the members'
  weights concatenated along dim 0 (which is exactly a grouped convolution's weight layout);
* ``BatchNorm2d(C)`` → ``BatchNorm2d(P·C)``: batch statistics are per channel, hence per model;
* ``Linear(in, out)`` → :class:`PackedLinear` (one batched matmul over P weight matrices);
* :class:`~kdfair_utils.train.Normalize`, ReLU, pooling and residual sums act per channel and
  need no change; ``flatten`` keeps each model's block contiguous.

So P small kernels become one wide kernel (much better use of the cores of a CPU or of a GPU),
while every model keeps its own initialisation (packed from models built one by one, exactly
as :func:`~kdfair_utils.grid.run_grid` builds them), its own batch order and augmentation (its
seed's generator, as :func:`~kdfair_utils.train.train_model` draws it), its own loss (CE, or KD
with its own T and α), its own momentum and its own gradient-norm cap. Models that share a seed
see the same batches, so their inputs are drawn (and, with augmentation, their teacher is run)
once per step, not once per model.

**Equivalence.** Each model's arithmetic is the same as in :func:`~kdfair_utils.train.train_model`
(same initial weights, batches, loss, optimiser), but a grouped convolution sums its products
in another order than a plain one, so floats agree to about 1e-6 relative after one step, and
(as for any two float orders) trained models drift apart slowly: the tests bound the one-step
difference and the disagreement of trained models' predictions. Packing supports the CIFAR
ResNets and LeNet-5 (:data:`PACKABLE`); other architectures train one at a time.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .validation import SEED_RANGE, check_int
from .distill import KDLoss, check_logits
from .models import CIFAR_RESNET_DEPTHS
from .train import (Normalize, TrainConfig, _augment, _autocast, _lr_at, build_optimizer, check_training_data, resident,
                    exact_fp32, record_epoch_loss, resolve_device, resolve_precision)

PACKABLE = tuple(f"resnet{d}" for d in CIFAR_RESNET_DEPTHS) + ("lenet5",)


class PackedLinear(nn.Module):
    """P linear layers applied to the P blocks of a ``[batch, P·in]`` input → ``[batch, P·out]``."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.members = len(layers)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]).clone())  # [P, out, in]
        self.bias = (nn.Parameter(torch.stack([m.bias.detach() for m in layers]).clone())     # [P, out]
                     if layers[0].bias is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, out_features, in_features = self.weight.shape
        xs = x.reshape(x.shape[0], p, in_features).transpose(0, 1)            # [P, B, in]
        if self.bias is None:
            y = torch.bmm(xs, self.weight.transpose(1, 2))
        else:
            y = torch.baddbmm(self.bias.unsqueeze(1), xs, self.weight.transpose(1, 2))  # [P, B, out]
        return y.transpose(0, 1).reshape(x.shape[0], p * out_features)


def _packed_layer(layers: list[nn.Module]) -> nn.Module:
    first, p = layers[0], len(layers)
    if isinstance(first, nn.Conv2d):
        conv = nn.Conv2d(p * first.in_channels, p * first.out_channels, first.kernel_size, first.stride,
                         first.padding, first.dilation, groups=p * first.groups, bias=first.bias is not None,
                         device=first.weight.device, dtype=first.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(torch.cat([m.weight for m in layers]))
            if first.bias is not None:
                conv.bias.copy_(torch.cat([m.bias for m in layers]))
        return conv
    if isinstance(first, nn.BatchNorm2d):
        bn = nn.BatchNorm2d(p * first.num_features, first.eps, first.momentum, first.affine,
                            first.track_running_stats, device=first.running_mean.device,
                            dtype=first.running_mean.dtype)
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, name).copy_(torch.cat([getattr(m, name) for m in layers]))
            bn.num_batches_tracked.copy_(first.num_batches_tracked)
        return bn
    if isinstance(first, nn.Linear):
        return PackedLinear(layers)
    if isinstance(first, Normalize):
        norm = copy.deepcopy(first)
        norm.mean = torch.cat([m.mean for m in layers], dim=1)
        norm.std = torch.cat([m.std for m in layers], dim=1)
        return norm
    if list(first.parameters(recurse=False)) or list(first.buffers(recurse=False)):
        raise ValueError(f"cannot pack a {type(first).__name__} layer")
    return copy.deepcopy(first)


def _pack_into(target: nn.Module, members: list[nn.Module]) -> None:
    for name, child in list(target.named_children()):
        layers = [getattr(m, name) for m in members]
        if isinstance(child, (nn.Conv2d, nn.BatchNorm2d, nn.Linear, Normalize)):
            setattr(target, name, _packed_layer(layers))
        else:
            _pack_into(child, layers)
            if not list(child.children()):
                setattr(target, name, _packed_layer(layers))


def pack(models: Sequence[nn.Module]) -> nn.Module:
    """One network holding ``models`` (same architecture) side by side; see the module docstring.
    Its input is ``[batch, P·channels, H, W]`` (:func:`pack_inputs`), its output ``[batch, P·classes]``."""
    models = list(models)
    if not models:
        raise ValueError("pack needs at least one model")
    shapes = [[tuple(v.shape) for v in m.state_dict().values()] for m in models]
    if any(s != shapes[0] for s in shapes):
        raise ValueError("pack needs models of one architecture (their state dicts differ in shape)")
    packed = copy.deepcopy(models[0])
    _pack_into(packed, models)
    return packed


def pack_inputs(xs: torch.Tensor) -> torch.Tensor:
    """``[P, B, C, H, W]`` → ``[B, P·C, H, W]`` (channels_last)."""
    p, b, c, h, w = xs.shape
    return xs.transpose(0, 1).reshape(b, p * c, h, w).contiguous(memory_format=torch.channels_last)


def unpack_outputs(out: torch.Tensor, members: int) -> torch.Tensor:
    """``[B, P·classes]`` → ``[P, B, classes]``."""
    return out.reshape(out.shape[0], members, -1).transpose(0, 1)


def unpack(packed: nn.Module, models: Sequence[nn.Module]) -> None:
    """Copy the packed weights and buffers back into ``models`` (the ones it was packed from)."""
    state = packed.state_dict()
    p = len(models)
    for i, model in enumerate(models):
        own = model.state_dict()
        for name, value in own.items():
            src = state[name]
            if name.endswith("num_batches_tracked"):
                value.copy_(src)
            elif src.shape[0] == p and src.ndim == value.ndim + 1:           # PackedLinear [P, ...]
                value.copy_(src[i])
            elif src.ndim == 4 and src.shape[0] == 1:                        # Normalize [1, P·C, 1, 1]
                value.copy_(src.chunk(p, dim=1)[i])
            else:                                                            # conv / BN: concatenated
                value.copy_(src.chunk(p, dim=0)[i])


@dataclass(frozen=True)
class Member:
    """One model of a population: its seed (initialisation already applied by the caller, batch
    order and augmentation drawn from it), its loss (``kd=None``: cross-entropy) and its teacher
    (``teacher_logits`` on the training set without augmentation, or a ``teacher`` model)."""

    seed: int
    kd: KDLoss | None = None
    teacher_logits: np.ndarray | None = None
    teacher: nn.Module | None = None
    name: str = "model"


def _member_view(param: torch.Tensor, p: int) -> torch.Tensor:
    """A packed parameter (or its gradient) as ``[P, -1]``: member i's entries in row i (a copy
    where the memory format needs one, so read it, never write to it)."""
    return param.reshape(p, -1)


def _clip_per_member(params: list[nn.Parameter], p: int, max_norm: float) -> None:
    """Each member's gradient norm capped at ``max_norm`` (as ``clip_grad_norm_`` on its own)."""
    sq = torch.zeros(p, device=params[0].device)
    for param in params:
        if param.grad is not None:
            sq += _member_view(param.grad, p).float().pow(2).sum(1)
    coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for param in params:  # members own consecutive blocks of dim 0 (in any memory format)
        if param.grad is not None:
            rows = coef.repeat_interleave(param.shape[0] // p).to(param.grad.dtype)
            param.grad.mul_(rows.view(-1, *([1] * (param.grad.ndim - 1))))


def _loss_knobs(kds: Sequence[KDLoss | None], device: torch.device,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-member ``(T [P, 1, 1], α [P], T² or 1 [P])``; cross-entropy members get T = 1, α = 0."""
    temps = torch.tensor([kd.temperature if kd else 1.0 for kd in kds], device=device, dtype=dtype)
    alphas = torch.tensor([kd.alpha if kd else 0.0 for kd in kds], device=device, dtype=dtype)
    scale = torch.tensor([(kd.temperature ** 2 if kd.t2_scaling else 1.0) if kd else 0.0 for kd in kds],
                         device=device, dtype=dtype)
    return temps.view(-1, 1, 1), alphas, scale


def population_loss(out: torch.Tensor, teacher_out: torch.Tensor | None, y: torch.Tensor,
                    kds: Sequence[KDLoss | None],
                    knobs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Per-member losses ``[P]`` for logits ``out [P, B, C]``: cross-entropy for ``kd=None``,
    else α·[T²·]KL(teacher^T ‖ student^T) + (1 − α)·CE, each batch-mean (as :class:`KDLoss`).
    ``y`` is ``[P, B]``; ``teacher_out [P, B, C]`` is ignored for cross-entropy members; ``knobs``:
    :func:`_loss_knobs` computed once by a training loop (else here)."""
    p, b, c = out.shape
    ce = F.cross_entropy(out.reshape(p * b, c), y.reshape(p * b), reduction="none").view(p, b).mean(1)
    if teacher_out is None or all(kd is None for kd in kds):
        return ce
    temps, alphas, scale = knobs if knobs is not None else _loss_knobs(kds, out.device, out.dtype)
    log_s = F.log_softmax(out / temps, dim=-1)
    log_t = F.log_softmax(teacher_out.detach() / temps, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1).mean(1)
    return alphas * scale * kl + (1.0 - alphas) * ce


def train_population(models: Sequence[nn.Module], members: Sequence[Member], images: np.ndarray,
                     labels: np.ndarray, cfg: TrainConfig, *, device: str | torch.device = "auto",
                     progress: bool = True, desc: str = "population", precision: str = "auto",
                     compile: bool = False) -> list[dict[str, list[float]]]:
    """Train ``models`` (one architecture, already initialised) together, in place; member i
    trains ``models[i]`` as :func:`~kdfair_utils.train.train_model` would with ``members[i]``'s
    seed, loss and teacher (``precision`` as there). ``compile=True`` runs the packed network
    through ``torch.compile`` (off by default: on a CPU it was slower, see
    ``benchmarks/bench_compile.py``). Returns each model's per-epoch mean loss."""
    from tqdm.auto import tqdm

    cfg.validate()
    models, members = list(models), list(members)
    if len(models) != len(members) or not models:
        raise ValueError(f"need one member per model, got {len(models)} models and {len(members)} members")
    for m in members:
        check_int(m.seed, f"{m.name}: seed", minimum=SEED_RANGE[0], maximum=SEED_RANGE[1])
        if (m.kd is None) != (m.teacher is None and m.teacher_logits is None):
            raise ValueError(f"{m.name}: a teacher (or teacher_logits) and kd go together")
        if m.teacher is not None and m.teacher_logits is not None:
            raise ValueError(f"{m.name}: pass either teacher or teacher_logits, not both")
        if m.kd is not None and not isinstance(m.kd, KDLoss):
            raise ValueError(f"{m.name}: kd must be a KDLoss(temperature, alpha), got {m.kd!r}")
        if m.teacher_logits is not None and cfg.augment != "none":
            raise ValueError(f"{m.name}: teacher_logits are for un-augmented training; with augment="
                             f"{cfg.augment!r} pass the teacher model instead")
    images, labels = check_training_data(images, labels)
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    p = len(models)
    single = models[0]
    packed = pack(models).to(dev).to(memory_format=torch.channels_last).train()
    x_all = resident(images, dev)
    # Normalise the training set once instead of every batch, where every model (and teacher) has
    # the same input statistics (always so in a grid): the same elementwise arithmetic, in the
    # same order, so bit-identical inputs; flips and shifts commute with it. Under bf16 autocast
    # the first convolution casts its input to bf16 anyway, so it is stored as bf16.
    stats = _shared_normalization(packed, [m.teacher for m in members if m.teacher is not None], p)
    if stats is not None:
        x_all = _normalized(x_all, *stats, torch.bfloat16 if precision == "bf16" else torch.float32)
        x_all = x_all.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # stored NHWC (channels_last)
        entry = packed[0]
        packed[0] = nn.Identity()
    y_all = torch.as_tensor(labels, dtype=torch.long, device=dev)
    # distinct batch streams (one per seed) and distinct teachers, each used once per step
    seeds = sorted({m.seed for m in members})
    stream = [seeds.index(m.seed) for m in members]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    logit_tables: dict[int, torch.Tensor] = {}
    teachers: dict[int, nn.Module] = {}
    for m in members:
        if m.teacher_logits is not None and id(m.teacher_logits) not in logit_tables:
            logit_tables[id(m.teacher_logits)] = torch.as_tensor(m.teacher_logits, dtype=torch.float32, device=dev)
        if m.teacher is not None and id(m.teacher) not in teachers:
            teachers[id(m.teacher)] = m.teacher.to(dev).to(memory_format=torch.channels_last).eval()
    distilling = any(m.kd is not None for m in members)
    kds = [m.kd for m in members]

    params = dict(packed.named_parameters())
    shapes = dict(single.named_parameters())  # a packed parameter decays where the member's would
    opt = build_optimizer(cfg, [(param, shapes[name].ndim > 1) for name, param in params.items()])
    knobs = _loss_knobs(kds, dev, torch.float32)  # once, not per step
    forward = torch.compile(packed.forward) if compile else packed.forward
    n = len(labels)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    histories: list[dict[str, list[float]]] = [{"loss": []} for _ in members]
    step = 0
    with exact_fp32(dev, precision):  # fp32 on CUDA: TF32 off for the whole step
        bar = tqdm(range(cfg.epochs), desc=desc, leave=False, disable=not progress)
        for _ in bar:
            perms = [torch.randperm(n, generator=g).to(dev) for g in gens]
            running = torch.zeros(p, dtype=torch.float32 if dev.type == "mps" else torch.float64, device=dev)
            for start in range(0, n, cfg.batch_size):
                idx = [perm[start:start + cfg.batch_size] for perm in perms]
                if stats is not None and cfg.augment == "none":  # one copy into the packed layout
                    xs = [x_all[i] for i in idx]
                    b, c, h, w = xs[0].shape
                    x = torch.stack([xs[s].permute(0, 2, 3, 1) for s in stream], dim=3).view(b, h, w, p * c)
                    x = x.permute(0, 3, 1, 2)
                elif stats is not None:
                    xs = [_augment(x_all[i], cfg.augment, g) for i, g in zip(idx, gens)]
                    x = pack_inputs(torch.stack([xs[s] for s in stream]))
                elif cfg.augment == "none":  # gather and pack as uint8, convert once
                    xs = [x_all[i] for i in idx]
                    x = pack_inputs(torch.stack([xs[s] for s in stream])).float().div_(255.0)
                else:
                    xs = [_augment(x_all[i].float().div_(255.0), cfg.augment, g) for i, g in zip(idx, gens)]
                    x = pack_inputs(torch.stack([xs[s] for s in stream]))
                y = torch.stack([y_all[idx[s]] for s in stream])
                for group in opt.param_groups:
                    group["lr"] = _lr_at(cfg, step, total, steps_per_epoch)
                with _autocast(dev, precision):
                    out = unpack_outputs(forward(x), p).float()
                    t_out = None
                    if distilling:
                        t_out = _teacher_outputs(members, stream, idx, xs, logit_tables, out, stats is not None)
                if step == 0:
                    for i, m in enumerate(members):
                        check_logits(out[i], t_out[i] if t_out is not None else out[i], y[i])
                    if int(y_all.max()) >= out.shape[2]:
                        raise ValueError(f"labels must lie in [0, {out.shape[2]}) (the model's classes), "
                                         f"got a label {int(y_all.max())}")
                losses = population_loss(out, t_out, y, kds, knobs)
                opt.zero_grad(set_to_none=True)
                losses.sum().backward()
                if cfg.grad_clip is not None:
                    _clip_per_member(list(params.values()), p, cfg.grad_clip)
                opt.step()
                step += 1
                running += losses.detach().to(running.dtype) * y.shape[1]
            epoch = (running / n).tolist()
            for history, value, member in zip(histories, epoch, members):
                record_epoch_loss(history, value, member.name)
            bar.set_postfix(loss=f"{float(np.mean(epoch)):.3f}")
    if stats is not None:
        packed[0] = entry
    packed.eval()
    unpack(packed.cpu(), models)
    for model in models:
        model.to(dev).eval()
    return histories


def _shared_normalization(packed: nn.Module, teachers: list[nn.Module],
                          p: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(mean, std)`` ``[1, C, 1, 1]`` when the packed network starts with a :class:`Normalize`
    whose P blocks are equal and every teacher starts with the same one; else None."""
    if not isinstance(packed, nn.Sequential) or not isinstance(packed[0], Normalize):
        return None
    mean, std = packed[0].mean.chunk(p, dim=1), packed[0].std.chunk(p, dim=1)
    if any(not torch.equal(m, mean[0]) for m in mean) or any(not torch.equal(s, std[0]) for s in std):
        return None
    for t in teachers:
        if (not isinstance(t, nn.Sequential) or not isinstance(t[0], Normalize)
                or not torch.equal(t[0].mean.to(mean[0].device), mean[0])
                or not torch.equal(t[0].std.to(std[0].device), std[0])):
            return None
    return mean[0], std[0]


def _normalized(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, dtype: torch.dtype,
                chunk: int = 4096) -> torch.Tensor:
    """uint8 images → ``(x / 255 − mean) / std`` (as :class:`Normalize` after the loader's scaling), in chunks."""
    out = torch.empty(x.shape, dtype=dtype, device=x.device)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].float().div_(255.0)
        out[start:start + chunk] = (part - mean.to(x.device)) / std.to(x.device)
    return out


def _teacher_outputs(members: Sequence[Member], stream: list[int], idx: list[torch.Tensor], xs: list[torch.Tensor],
                     logit_tables: dict[int, torch.Tensor], out: torch.Tensor, normalized: bool) -> torch.Tensor:
    """Teacher logits ``[P, B, C]``: rows of the cached tables, or one forward of each distinct
    (teacher, batch stream) pair on the augmented batch, shared by every member that needs it
    (``normalized``: the batch is already normalised, so the teacher's own :class:`Normalize` is skipped)."""
    rows: list[torch.Tensor] = []
    computed: dict[tuple[int, int], torch.Tensor] = {}
    zeros = None
    for m, s in zip(members, stream):
        if m.teacher_logits is not None:
            rows.append(logit_tables[id(m.teacher_logits)][idx[s]])
        elif m.teacher is not None:
            key = (id(m.teacher), s)
            if key not in computed:
                x = xs[s].float().div(255.0) if xs[s].dtype == torch.uint8 else xs[s]
                net = m.teacher[1:] if normalized else m.teacher
                with torch.no_grad():
                    computed[key] = net(x.contiguous(memory_format=torch.channels_last)).float()
            rows.append(computed[key])
        else:
            zeros = zeros if zeros is not None else torch.zeros_like(out[0])
            rows.append(zeros)
    return torch.stack(rows)

