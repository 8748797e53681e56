"""Argument checks shared by the optimisation entry points (:func:`hrinv_nb.project`,
:func:`hrinv_nb.projector.project_batch`, :func:`hrinv_nb.lso`).

A bad step count, weight, learning rate or image otherwise runs to completion and returns NaN (or a
loss of ~1e6 for a [0, 255] image) without a word; these checks refuse it up front with a message
that names the argument. :func:`check_finite_loss` stops an optimisation at the first non-finite
loss and says which term went first, and whether the generator's own output was already non-finite
(e.g. NaN weights). Every refusal is an :class:`~hrinv_nb.errors.HrinvError` (a ``ValueError``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import torch

from .errors import HrinvError

RANGE_TOLERANCE = 1e-3  # images may overshoot [-1, 1] by this much (resampling, float rounding)


class NonFiniteLossError(HrinvError):
    """An optimisation produced a non-finite loss (or code); the message names the step and the term."""


def check_steps(name: str, value: object) -> int:
    """``value`` as an int >= 1; bools, floats and non-positive values are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise HrinvError(f"{name} must be a positive integer, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise HrinvError(f"{name} must be a positive integer, got {value}")
    return int(value)


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise HrinvError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise HrinvError(f"{name} must be finite, got {value}")
    return value


def check_weight(name: str, value: object) -> float:
    """A loss weight (or any scale that may be 0): finite and >= 0."""
    value = _real(name, value)
    if value < 0:
        raise HrinvError(f"{name} must be >= 0, got {value}")
    return value


def check_positive(name: str, value: object) -> float:
    """A learning rate (or any scale that must be > 0): finite and > 0."""
    value = _real(name, value)
    if value <= 0:
        raise HrinvError(f"{name} must be > 0, got {value}")
    return value


def check_images(name: str, images: torch.Tensor, tolerance: float = RANGE_TOLERANCE) -> None:
    """Refuse images that are not floating point, not finite or outside [-1, 1] (± ``tolerance``)."""
    if not isinstance(images, torch.Tensor):
        raise HrinvError(f"{name} must be a tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise HrinvError(
            f"{name} has dtype {images.dtype}; images must be floating point scaled to [-1, 1] "
            "(e.g. loaded with hrinv_nb.load_image, or u8 / 127.5 - 1)"
        )
    if not torch.isfinite(images).all():
        raise HrinvError(f"{name} contains non-finite values")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1 - tolerance or hi > 1 + tolerance:
        raise HrinvError(
            f"{name} has values in [{lo:.4g}, {hi:.4g}]; images must be scaled to [-1, 1] "
            "(e.g. loaded with hrinv_nb.load_image; a [0, 255] image x becomes x / 127.5 - 1)"
        )


def check_finite_loss(
    step: int, terms: Mapping[str, torch.Tensor], total: torch.Tensor, image: torch.Tensor | None = None
) -> None:
    """Raise :class:`NonFiniteLossError` when ``total`` is not finite, naming ``step`` and the first bad term.

    ``terms`` are the unweighted loss terms in the order they are reported; ``image`` the generator
    output of this step (checked first: a non-finite image means G or the code itself is broken).
    """
    if bool(torch.isfinite(total).all()):
        return
    if image is not None and not bool(torch.isfinite(image).all()):
        raise NonFiniteLossError(
            f"non-finite loss at step {step}: the generator output itself is non-finite "
            "(NaN/inf generator weights, or a code that diverged, e.g. from too large a learning rate)"
        )
    bad = [name for name, value in terms.items() if not bool(torch.isfinite(value).all())]
    what = f"term {bad[0]!r} is non-finite" if bad else "the weighted sum overflowed (every term is finite)"
    raise NonFiniteLossError(f"non-finite loss at step {step}: {what}")


def check_finite_result(name: str, value: torch.Tensor) -> None:
    """Raise :class:`NonFiniteLossError` when the optimised ``value`` is not finite after the last step."""
    if not bool(torch.isfinite(value).all()):
        raise NonFiniteLossError(f"{name} is non-finite after the last optimisation step (the update diverged)")
