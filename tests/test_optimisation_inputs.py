"""The optimisation entry points (project, project_batch, lso) refuse bad inputs and stop on a non-finite loss.

Before these checks, a [0, 255] or uint8 target, ``mse_weight=nan``, ``lr=inf``, ``num_steps=True``
or a generator with NaN weights all ran to completion and returned NaN (or a huge loss) silently.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_generator

from hrinv_nb.errors import HrinvError
from hrinv_nb.lso import lso
from hrinv_nb.networks import Generator
from hrinv_nb.projector import project, project_batch


@pytest.fixture(scope="module")
def G() -> Generator:
    return tiny_generator()


@pytest.fixture(scope="module")
def sample(G) -> tuple[torch.Tensor, torch.Tensor]:
    """(w [2, num_ws, w_dim], images [2, 3, 32, 32] in [-1, 1])."""
    with torch.no_grad():
        w = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1)), None)
        return w, G.synthesis(w, noise_mode="const").clamp(-1, 1)


def _call(fn: str, G: Generator, sample, **kwargs):
    """Run one entry point on the tiny problem (2 steps, MSE loss) with ``kwargs`` overriding the defaults."""
    w, images = sample
    if fn == "project":
        args = dict(loss="mse", num_steps=2, progress=False, w_avg_samples=64) | kwargs
        target = args.pop("target", images[:1])
        return project(G, target, **args)
    if fn == "project_batch":
        args = dict(loss="mse", num_steps=2, progress=False, w_avg_samples=64) | kwargs
        target = args.pop("target", images)
        return project_batch(G, target, **args)
    args = dict(loss="mse", num_steps=2, progress=False, rows=(0, 1)) | kwargs
    target = args.pop("target", images)
    return lso(G, w, target, **args)


ENTRY_POINTS = ("project", "project_batch", "lso")


@pytest.mark.parametrize("fn", ENTRY_POINTS)
@pytest.mark.parametrize("steps", [0, -3, True, 2.0, 2.5, "2", None])
def test_step_counts_must_be_positive_integers(G, sample, fn, steps):
    with pytest.raises(HrinvError, match="num_steps"):
        _call(fn, G, sample, num_steps=steps)


@pytest.mark.parametrize(
    ("fn", "name"),
    [
        ("project", "mse_weight"),
        ("project", "noise_reg_weight"),
        ("project", "latent_noise_factor"),
        ("project_batch", "mse_weight"),
        ("project_batch", "noise_reg_weight"),
        ("project_batch", "latent_noise_factor"),
        ("lso", "reg_weight"),
        ("lso", "latent_noise_std"),
        ("lso", "init_scale"),
    ],
)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, True])
def test_weights_must_be_finite_and_non_negative(G, sample, fn, name, value):
    with pytest.raises(HrinvError, match=name):
        _call(fn, G, sample, **{name: value})


@pytest.mark.parametrize("fn", ENTRY_POINTS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -0.1])
def test_learning_rate_must_be_finite_and_positive(G, sample, fn, value):
    with pytest.raises(HrinvError, match="lr"):
        _call(fn, G, sample, lr=value)


@pytest.mark.parametrize("fn", ENTRY_POINTS)
def test_targets_must_be_float_images_in_minus_one_one(G, sample, fn):
    images = sample[1] if fn != "project" else sample[1][:1]
    as_255 = (images + 1) * 127.5  # the common mistake: an image in [0, 255]
    with pytest.raises(HrinvError, match=r"scaled to \[-1, 1\].*load_image"):
        _call(fn, G, sample, target=as_255)
    with pytest.raises(HrinvError, match="floating point"):
        _call(fn, G, sample, target=as_255.round().to(torch.uint8))
    with pytest.raises(HrinvError, match="non-finite"):
        _call(fn, G, sample, target=images.clone().index_fill_(3, torch.tensor([0]), float("nan")))
    # a small overshoot (resampling, rounding) is accepted
    _call(fn, G, sample, target=(images * 1.0005).clamp(-1.0005, 1.0005), num_steps=1)


@pytest.mark.parametrize("fn", ENTRY_POINTS)
def test_nan_generator_weights_stop_at_step_zero(G, sample, fn):
    broken = copy.deepcopy(G)
    with torch.no_grad():
        next(p for n, p in broken.synthesis.named_parameters() if "torgb.weight" in n).fill_(float("nan"))
    with pytest.raises(HrinvError, match=r"step 0.*generator output") as info:
        _call(fn, broken, sample, num_steps=3)
    assert type(info.value).__name__ == "NonFiniteLossError"


class _LossTurningNaN:
    """An MSE loss that returns NaN from its ``nan_from``-th call on: a term that goes bad mid-run."""

    def __init__(self, nan_from: int) -> None:
        self.nan_from, self.calls, self.target = nan_from, 0, None

    def set_target(self, target: torch.Tensor) -> None:
        self.target = target

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        value = (image - self.target).square().mean()
        return value * float("nan") if self.calls > self.nan_from else value


@pytest.mark.parametrize("fn", ENTRY_POINTS)
def test_a_non_finite_term_stops_the_run_and_is_named(G, sample, fn):
    with pytest.raises(HrinvError, match=r"step 2: term 'perceptual'"):
        _call(fn, G, sample, loss=_LossTurningNaN(nan_from=2), num_steps=5)


def test_project_batch_chunk_size_must_be_a_positive_integer(G, sample):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(HrinvError, match="chunk_size"):
            _call("project_batch", G, sample, chunk_size=bad)
