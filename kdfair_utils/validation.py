"""The one place argument values are checked: by type and by value, naming the argument.

Every config (``GridConfig``, ``TrainConfig``, ``TrifeatureSpec``, ``AnalysisConfig``) and every
entry point (``run_grid``, ``setup``, ``run_series``, the CLI) validates with these helpers before
any data is generated, any model trained or any file written, and raises ``ValueError`` whose
message starts with the argument's name. Booleans are never accepted as numbers, strings never
as numbers, and non-finite floats only where a caller asks for them.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

SEED_RANGE = (0, 2**31 - 1)  # accepted by random, numpy and torch alike


def check_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (not a bool, not a float such as 2.0) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_number(value: Any, name: str, *, minimum: float | None = None, maximum: float | None = None,
                 min_inclusive: bool = True, max_inclusive: bool = True) -> float:
    """A finite real number (int or float, not a bool or a string) within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None and (value < minimum or (value == minimum and not min_inclusive)):
        raise ValueError(f"{name} must be {'>=' if min_inclusive else '>'} {minimum:g}, got {value:g}")
    if maximum is not None and (value > maximum or (value == maximum and not max_inclusive)):
        raise ValueError(f"{name} must be {'<=' if max_inclusive else '<'} {maximum:g}, got {value:g}")
    return value


def check_significance(value: Any, name: str = "significance") -> float:
    """A level (significance, confidence) strictly between 0 and 1."""
    return check_number(value, name, minimum=0, maximum=1, min_inclusive=False, max_inclusive=False)


def check_bool(value: Any, name: str) -> bool:
    """``True`` or ``False`` exactly (a string such as ``"no"`` is truthy, hence refused)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


def check_sequence(value: Any, name: str) -> tuple:
    """A non-empty list or tuple (a single value is not silently wrapped)."""
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        raise ValueError(f"{name} must be a non-empty list, got {value!r}")
    return tuple(value)


def check_seeds(values: Any, name: str) -> tuple[int, ...]:
    """Distinct integer seeds in :data:`SEED_RANGE`."""
    seeds = tuple(check_int(v, f"{name}[{i}]", minimum=SEED_RANGE[0], maximum=SEED_RANGE[1])
                  for i, v in enumerate(check_sequence(values, name)))
    check_distinct(seeds, name)
    return seeds


def check_distinct(values: Iterable[Any], name: str, label: Any = None) -> None:
    """No two values equal (or, with ``label``, no two with the same label)."""
    seen: dict[Any, Any] = {}
    for v in values:
        key = label(v) if label is not None else v
        if key in seen:
            same = f" (both shown as {key})" if label is not None and seen[key] != v else ""
            raise ValueError(f"{name} has duplicates: {seen[key]!r} and {v!r}{same}")
        seen[key] = v


def check_mapping(value: Any, name: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a dict of options, got {value!r}")
    return value


def check_device(device: Any, name: str = "device"):
    """``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``, present on this machine;
    returns the resolved ``torch.device``."""
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str):
        raise ValueError(f"{name} must be a string such as 'auto', 'cpu' or 'cuda:0', got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name} {device!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} {device!r}: CUDA is not available on this machine; use auto or cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{name} {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{name} {device!r}: MPS is not available on this machine; use auto or cpu")
        return dev
    raise ValueError(f"{name} {device!r}: kdfair trains on cpu, cuda or mps, not {dev.type}")


def check_dir_path(path: Any, name: str) -> Path:
    """A folder path (existing or not) with no file in the way; nothing is created."""
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise ValueError(f"{name} must be a folder path, got {path!r}")
    path = Path(path)
    probe = _nearest_existing(path)
    if not probe.is_dir():
        raise ValueError(f"{name} {str(path)!r}: {str(probe)!r} is not a folder")
    return path


def is_writable_dir(path: Path) -> bool:
    """Whether ``path`` exists as a writable folder or could be created (its nearest existing
    ancestor is a writable folder); nothing is written."""
    probe = _nearest_existing(path)
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def check_writable_dir(path: Any, name: str) -> Path:
    """:func:`check_dir_path` and :func:`is_writable_dir`: checked without writing anything."""
    path = check_dir_path(path, name)
    if not is_writable_dir(path):
        probe = _nearest_existing(path)
        what = "is not writable" if probe == path.absolute() else f"cannot be created: {str(probe)!r} is not writable"
        raise ValueError(f"{name} {str(path)!r} {what} (check its permissions or choose another folder)")
    return path


def _nearest_existing(path: Path) -> Path:
    probe = path.absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe
