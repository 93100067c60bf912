"""One training loop for teachers, non-distilled students (NDS) and distilled students (DS).

* The whole training set lives on the device as a uint8 tensor; batches are sliced from a
  seeded permutation and augmented on the device (no DataLoader workers), so a run is
  deterministic per seed on the CPU.
* Inputs are scaled to [0, 1] and normalised by the training set's per-channel mean/std inside
  the model (:class:`Normalize` is its first layer, so checkpoints carry it).
* CUDA when available, CPU otherwise; channels_last everywhere. ``precision="auto"`` trains
  under bfloat16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16 or AMX: ~1.8× on a
  ResNet-20 step there), fp32 elsewhere; weights, optimiser state and losses stay fp32.
* Distillation: pass ``teacher`` (run in eval mode under ``no_grad`` on each augmented batch) or,
  when ``augment="none"``, ``teacher_logits`` precomputed once on the training set — identical
  targets at a fraction of the cost, since the teacher forward dominates a DS step.
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .validation import SEED_RANGE, check_bool, check_choice, check_device, check_int, check_number
from .distill import KDLoss, check_logits

SCHEDULES = ("cosine", "step", "constant")
OPTIMIZERS = ("sgd", "adamw")
AUGMENTATIONS = ("none", "flip", "flip_translate")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation recipe: SGD with (Nesterov) momentum or AdamW (decoupled weight decay),
    weight decay on weights only (not biases/BN), and a per-step LR schedule.

    ``schedule="step"`` divides the LR by 10 at 50 % and 75 % of training; ``"cosine"`` anneals
    it to 0 after ``warmup_epochs`` of linear warm-up. ``grad_clip`` caps the global gradient
    norm: at initialisation the T²-scaled KD gradient is up to T times the cross-entropy's
    (∂/∂z of T²·KL is T·(p_s − p_t)), which makes high-T distillation diverge without it.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    augment: str = "none"
    grad_clip: float | None = None

    def validate(self, prefix: str = "") -> None:
        """``ValueError`` naming the field (``prefix`` names the recipe, e.g. ``student_train.``)."""
        check_int(self.epochs, f"{prefix}epochs", minimum=1)
        check_int(self.batch_size, f"{prefix}batch_size", minimum=1)
        check_choice(self.optimizer, f"{prefix}optimizer", OPTIMIZERS)
        check_number(self.lr, f"{prefix}lr", minimum=0, min_inclusive=False)
        check_number(self.momentum, f"{prefix}momentum", minimum=0, maximum=1, max_inclusive=False)
        check_number(self.weight_decay, f"{prefix}weight_decay", minimum=0)
        check_bool(self.nesterov, f"{prefix}nesterov")
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise ValueError(f"{prefix}nesterov needs {prefix}momentum > 0 (or set {prefix}nesterov=false)")
        check_choice(self.schedule, f"{prefix}schedule", SCHEDULES)
        check_number(self.warmup_epochs, f"{prefix}warmup_epochs", minimum=0)
        check_choice(self.augment, f"{prefix}augment", AUGMENTATIONS)
        if self.grad_clip is not None:
            check_number(self.grad_clip, f"{prefix}grad_clip", minimum=0, min_inclusive=False)

    def replace(self, changes: dict, prefix: str = "") -> "TrainConfig":
        """A copy with ``changes`` (a dict of field values); unknown fields are refused by name."""
        from dataclasses import fields, replace

        known = [f.name for f in fields(self)]
        for key in changes:
            if key not in known:
                raise ValueError(f"unknown field {prefix}{key}; known: {', '.join(prefix + k for k in known)}")
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` → CUDA if available, else CPU; a device this machine lacks is a ``ValueError``."""
    return check_device(device)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX tiles)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: str, device: str | torch.device | None = "auto") -> str:
    """``"fp32"`` or ``"bf16"`` (autocast); ``"auto"`` → bf16 on CUDA and on CPUs with native bf16
    (:func:`cpu_has_bf16`), fp32 otherwise. ``ValueError`` for anything else."""
    check_choice(precision, "precision", PRECISIONS)
    if precision != "auto":
        return precision
    dev = resolve_device(device)
    return "bf16" if dev.type == "cuda" or (dev.type == "cpu" and cpu_has_bf16()) else "fp32"


def numerics(device: str | torch.device | None = "auto", precision: str = "auto") -> dict:
    """What changes a trained model's floating-point results on one machine, beyond its config:
    the device type, the precision (:func:`resolve_precision`) and, on the CPU, torch's thread
    count (the order of parallel float sums). Part of every model's cache key, so a cache
    resumed under another thread count or precision retrains instead of silently mixing models."""
    dev = resolve_device(device)
    found = {"device": dev.type, "precision": resolve_precision(precision, dev)}
    return {**found, "threads": torch.get_num_threads()} if dev.type == "cpu" else found


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Normalize(nn.Module):
    """uint8-range or [0, 1] images → (x − mean) / std, per channel."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 images scaled to [0, 1]."""
    x = images.astype(np.float64) / 255.0
    return x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3)) + 1e-8


def with_normalization(net: nn.Module, train_images: np.ndarray,
                       stats: tuple[np.ndarray, np.ndarray] | None = None) -> nn.Sequential:
    """``Normalize`` (by ``stats``, or :func:`channel_stats` of ``train_images``) then ``net``."""
    mean, std = stats if stats is not None else channel_stats(train_images)
    return nn.Sequential(Normalize(mean, std), net)


def _lr_at(cfg: TrainConfig, step: int, total: int, steps_per_epoch: int) -> float:
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    frac = (step - warm) / max(1, total - warm)
    if cfg.schedule == "step":
        return cfg.lr * (0.1 ** ((frac >= 0.5) + (frac >= 0.75)))
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * frac))


def _augment(x: torch.Tensor, mode: str, gen: torch.Generator) -> torch.Tensor:
    if mode == "none":
        return x
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=gen).to(x.device) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if mode == "flip_translate":
        pad = max(1, h // 8)
        xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
        rows = (dy.view(-1, 1) + torch.arange(h, device=x.device)).view(b, 1, h, 1)
        cols = (dx.view(-1, 1) + torch.arange(w, device=x.device)).view(b, 1, 1, w)
        batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
        chan = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
        x = xp[batch, chan, rows, cols]
    return x


def _autocast(device: torch.device, precision: str = "auto"):
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


@contextmanager
def exact_fp32(device: torch.device, precision: str) -> Iterator[None]:
    """For fp32 on CUDA, TF32 off (cuDNN and matmul) while inside, restored after: "fp32" means
    fp32 there too (TF32 keeps 10 mantissa bits). Nothing changes elsewhere."""
    if device.type != "cuda" or resolve_precision(precision, device) != "fp32":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def record_epoch_loss(history: dict[str, list[float]], loss: float, desc: str) -> None:
    """Append an epoch's mean loss; ``RuntimeError`` if it is not finite (so a diverged model is
    never cached)."""
    history["loss"].append(loss)
    if not math.isfinite(loss):
        raise RuntimeError(f"{desc}: training diverged (mean loss {loss} in epoch {len(history['loss'])}); "
                           "lower the learning rate or set grad_clip")


def check_training_data(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` as arrays: non-empty uint8 ``[N, C, H, W]`` and non-negative integers
    ``[N]`` (``ValueError`` otherwise)."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be non-empty uint8 [N, C, H, W], got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or (labels < 0).any():
        raise ValueError(f"labels must be non-negative integers [N], got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"images ({len(images)}) and labels ({len(labels)}) differ in length")
    return images, labels


def build_optimizer(cfg: TrainConfig, params: list[tuple[nn.Parameter, bool]]) -> torch.optim.Optimizer:
    """The recipe's optimiser over ``(parameter, decays)`` pairs: weight decay on the weights
    (``decays``), none on biases and batch-norm parameters."""
    decay = [p for p, decays in params if decays]
    no_decay = [p for p, decays in params if not decays]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def train_model(model: nn.Module, images: np.ndarray, labels: np.ndarray, cfg: TrainConfig, *, seed: int,
                device: str | torch.device = "auto", teacher: nn.Module | None = None,
                teacher_logits: np.ndarray | None = None, kd: KDLoss | None = None, progress: bool = True,
                desc: str = "train", precision: str = "auto") -> dict[str, list[float]]:
    """Train ``model`` in place on uint8 ``images`` [N, C, H, W] and int ``labels`` [N].

    With ``teacher`` or ``teacher_logits`` the loss is ``kd`` (a
    :class:`~kdfair_utils.distill.KDLoss`: T, α on the KL term, T²), which is then required;
    otherwise plain cross-entropy. ``precision``: see :func:`resolve_precision`. Returns the
    per-epoch mean loss.
    """
    cfg.validate()
    if teacher is not None and teacher_logits is not None:
        raise ValueError("pass either teacher or teacher_logits, not both")
    distilling = teacher is not None or teacher_logits is not None
    if distilling and not isinstance(kd, KDLoss):
        raise ValueError(f"distillation needs kd=KDLoss(temperature, alpha), got kd={kd!r}")
    if kd is not None and not distilling:
        raise ValueError("kd is set but there is no teacher or teacher_logits to distil from")
    if teacher_logits is not None and cfg.augment != "none":
        raise ValueError("teacher_logits are for un-augmented training; with augment="
                         f"{cfg.augment!r} pass the teacher model instead")
    check_int(seed, "seed", minimum=SEED_RANGE[0], maximum=SEED_RANGE[1])
    images, labels = check_training_data(images, labels)
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(dev).to(memory_format=torch.channels_last).train()
    if teacher is not None:
        teacher.to(dev).to(memory_format=torch.channels_last).eval()
    x_all = resident(images, dev)
    y_all = torch.as_tensor(labels, dtype=torch.long, device=dev)
    t_all = torch.as_tensor(teacher_logits, dtype=torch.float32, device=dev) if teacher_logits is not None else None

    def batch(idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = _augment(x_all[idx].float().div_(255.0), cfg.augment, gen)
        return (x.contiguous(memory_format=torch.channels_last),)

    return fit(model, cfg, batch, y_all, t_all, teacher, kd, gen, dev, precision, desc, progress)


def fit(model, cfg, batch, y_all, t_all, teacher, kd, gen, dev, precision, desc, progress) -> dict[str, list[float]]:
    """The training of every model kind, after its trainer has checked its inputs and placed them on
    ``dev``: the recipe's optimiser, then the epochs (``batch(idx)`` gives the model's inputs for
    the example indices ``idx``: images, augmented; or token ids and attention mask) in exact fp32
    where asked; leaves the model in eval mode and returns the per-epoch mean loss."""
    opt = build_optimizer(cfg, [(p, p.ndim > 1) for p in model.parameters()])
    history: dict[str, list[float]] = {"loss": []}
    with exact_fp32(dev, precision):
        _train_epochs(model, opt, cfg, batch, y_all, t_all, teacher, kd, gen, dev, precision, history, desc, progress)
    model.eval()
    return history


def _train_epochs(model, opt, cfg, batch, y_all, t_all, teacher, kd, gen, dev, precision, history, desc,
                  progress) -> None:
    from tqdm.auto import tqdm

    n = len(y_all)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    step = 0
    bar = tqdm(range(cfg.epochs), desc=desc, leave=False, disable=not progress)
    for _ in bar:
        perm = torch.randperm(n, generator=gen).to(dev)
        running, seen = 0.0, 0
        for start in range(0, n, cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            x = batch(idx)
            y = y_all[idx]
            for group in opt.param_groups:
                group["lr"] = _lr_at(cfg, step, total, steps_per_epoch)
            with _autocast(dev, precision):
                out = model(*x)
                if teacher is not None:
                    with torch.no_grad():
                        t_out = teacher(*x)
                elif t_all is not None:
                    t_out = t_all[idx]
                if step == 0:  # shapes, ranges and finiteness once; a NaN later shows in the epoch loss
                    check_logits(out.float(), t_out.float() if kd is not None else out.float(), y)
                    if int(y_all.max()) >= out.shape[1]:
                        raise ValueError(f"labels must lie in [0, {out.shape[1]}) (the model's classes), "
                                         f"got a label {int(y_all.max())}")
                if kd is not None:
                    loss = kd(out.float(), t_out.float(), y, check=False)
                else:
                    loss = F.cross_entropy(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            running += float(loss.detach()) * len(idx)
            seen += len(idx)
        record_epoch_loss(history, running / seen, desc)
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")


def resident(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 ``images`` as a tensor on ``device`` (training keeps its data resident there). A
    read-only array, such as a memory-mapped prepared data set, is wrapped without a copy on the
    CPU; nothing ever writes to it, so torch's warning about non-writable arrays is silenced."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(images, device=device)


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, *, device: str | torch.device = "auto",
                   batch_size: int = 256, precision: str = "auto") -> np.ndarray:
    """Eval-mode logits (float32 ``[N, classes]``) for uint8 images ``[N, C, H, W]``.
    ``batch_size`` 256: on a 2-core CPU 1.4× (ResNet-20) and 1.4× (LeNet-5) faster than 1000
    (cache-sized activations), with the same logits there (a GPU may pick other kernels per
    batch size; the batch size is fixed, so results stay deterministic on one machine)."""
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    model.to(dev).to(memory_format=torch.channels_last).eval()
    outs = []
    for start in range(0, len(images), batch_size):
        x = resident(images[start:start + batch_size], dev).float().div_(255.0)
        with _autocast(dev, precision), exact_fp32(dev, precision):
            outs.append(model(x.contiguous(memory_format=torch.channels_last)).float().cpu())
    return torch.cat(outs).numpy() if outs else np.zeros((0, 0), dtype=np.float32)
