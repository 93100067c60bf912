"""Hinton et al. (2015) knowledge distillation.

Conventions (the paper's, where it states them; ours otherwise):

* ``alpha`` weights the **distillation** term and ``1 - alpha`` the hard-label cross-entropy
  (the paper's slides; α = 0.8 in all its experiments). torchdistill uses the opposite.
* The distillation term is ``KL(softmax(teacher/T) ‖ softmax(student/T))`` summed over classes
  and averaged over the batch (PyTorch ``reduction="batchmean"``). ``reduction="mean"`` would
  also divide by the number of classes: a 1/C-scaled loss, a known trap.
* ``t2_scaling=True`` multiplies the KL by T², which keeps its gradient magnitude roughly
  constant across T (the soft gradients scale as 1/T²). The paper does not state it; Hinton
  et al. and most libraries do it.
* The hard-label term uses the student's logits at T = 1.
* The teacher must be in eval mode and run without gradients; :func:`kd_loss` detaches its
  logits, and :func:`kdfair_utils.train.train_model` runs it under ``torch.no_grad()``.

:class:`KDLoss` holds the knobs (T, α, T²) once, like torchdistill's ``KDLoss``;
:func:`kd_loss` is the same loss as a plain function.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F

from .validation import check_bool, check_number


TEMPERATURE_RANGE = (0.01, 1000.0)  # beyond it T² overflows or logits/T loses every digit


def check_temperature(temperature: float, name: str = "temperature") -> float:
    """A number in :data:`TEMPERATURE_RANGE` (the paper uses 1..40)."""
    return check_number(temperature, name, minimum=TEMPERATURE_RANGE[0], maximum=TEMPERATURE_RANGE[1])


def check_kd_args(temperature: float, alpha: float) -> None:
    """``ValueError`` unless T lies in :data:`TEMPERATURE_RANGE` and 0 ≤ α ≤ 1 (numbers, not bools)."""
    check_temperature(temperature)
    check_number(alpha, "alpha", minimum=0, maximum=1)


def check_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 targets: torch.Tensor | None = None) -> None:
    """Shapes and values :func:`kd_loss` needs: student and teacher logits both ``[batch, classes]``
    floating and finite; targets (if given) integer ``[batch]`` in ``[0, classes)``. An unbatched
    ``[classes]`` vector is refused: ``batchmean`` would divide its KL by the number of classes."""
    for name, t in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not isinstance(t, torch.Tensor) or t.ndim != 2 or not t.is_floating_point():
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a floating tensor [batch, classes], got {shape}")
        if t.shape[0] == 0 or t.shape[1] < 2:
            raise ValueError(f"{name} must have at least one row and two classes, got {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contain NaN or inf")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")
    if targets is not None:
        n, c = student_logits.shape
        if (not isinstance(targets, torch.Tensor) or targets.shape != (n,) or targets.is_floating_point()
                or targets.dtype == torch.bool):
            shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
            raise ValueError(f"targets must be an integer tensor [batch={n}], got {shape}")
        lo, hi = int(targets.min()), int(targets.max())
        if lo < 0 or hi >= c:
            raise ValueError(f"targets must lie in [0, {c}), got values in [{lo}, {hi}] "
                             "(ignore_index is not supported)")


def soft_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) along the last dimension."""
    check_kd_args(temperature, 0.0)
    return F.softmax(logits / temperature, dim=-1)


def distillation_term(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
                      t2_scaling: bool = True) -> torch.Tensor:
    """[T² ·] KL(softmax(teacher/T) ‖ softmax(student/T)), summed over classes, batch-mean."""
    check_kd_args(temperature, 0.0)
    check_bool(t2_scaling, "t2_scaling")
    check_logits(student_logits, teacher_logits)
    return _distillation_term(student_logits, teacher_logits, temperature, t2_scaling)


def _distillation_term(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
                       t2_scaling: bool) -> torch.Tensor:
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2 if t2_scaling else kl


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            temperature: float, alpha: float, t2_scaling: bool = True) -> torch.Tensor:
    """α·[T²·]KL(p_teacher^T ‖ p_student^T) + (1 − α)·CE(targets, student), batch-mean.

    See the module docstring for every convention; :func:`check_logits` for the inputs it accepts
    (a ``ValueError`` otherwise, never a silent NaN).
    """
    check_kd_args(temperature, alpha)
    check_bool(t2_scaling, "t2_scaling")
    check_logits(student_logits, teacher_logits, targets)
    soft = _distillation_term(student_logits, teacher_logits, temperature, t2_scaling)
    hard = F.cross_entropy(student_logits, targets)
    loss = alpha * soft + (1.0 - alpha) * hard
    if not bool(torch.isfinite(loss)):
        raise ValueError(f"kd_loss is {float(loss)}: logits too large for temperature {temperature:g}")
    return loss


@dataclass(frozen=True)
class KDLoss:
    """The distillation loss with its knobs set once: ``KDLoss(4.0, 0.8)(student, teacher, y)``.

    Equal to :func:`kd_loss` with the same arguments; ``to_dict()`` gives the knobs as a dict.
    """

    temperature: float
    alpha: float = 0.8
    t2_scaling: bool = True

    def __post_init__(self) -> None:
        check_kd_args(self.temperature, self.alpha)
        check_bool(self.t2_scaling, "t2_scaling")

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 targets: torch.Tensor, *, check: bool = True) -> torch.Tensor:
        """The loss; ``check=False`` skips :func:`check_logits` (a training loop that checked its
        first batch and watches the loss for NaN saves three device syncs per step)."""
        if check:
            return kd_loss(student_logits, teacher_logits, targets, self.temperature, self.alpha, self.t2_scaling)
        soft = _distillation_term(student_logits, teacher_logits, self.temperature, self.t2_scaling)
        return self.alpha * soft + (1.0 - self.alpha) * F.cross_entropy(student_logits, targets)

    def to_dict(self) -> dict:
        return asdict(self)
