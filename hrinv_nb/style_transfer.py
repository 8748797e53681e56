"""Style transfer through noise maps (Fig. 11) and non-square inversion (Figs. 4, 10).

Noise style transfer: invert the *style* image with w only (noise maps fixed), then freeze that w
and optimise only fresh noise maps on the *content* image. The result G(w_style, n_content) keeps
the style image's global look (w) while the noise maps carry the content's spatial detail.
Its measurements are in :func:`hrinv_nb.studies.w_vs_noise.transfer_measures`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .inr import INRSynthesisNetwork, with_shape
from .losses import PerceptualLoss
from .networks import Generator
from .projector import ProjectionResult, project


@dataclass
class NoiseStyleTransfer:
    """``image`` = G(w_style, noise); ``style`` is the w-only projection of the style image."""

    w: torch.Tensor
    noise: dict[str, torch.Tensor]
    image: torch.Tensor
    style: ProjectionResult
    content: ProjectionResult


def noise_style_transfer(
    G: Generator,
    style_image: torch.Tensor,
    content_image: torch.Tensor,
    *,
    loss: PerceptualLoss | str,
    num_steps: int = 1000,
    seed: int = 0,
    progress: bool = True,
    style_projection: ProjectionResult | None = None,
    **project_kwargs,
) -> NoiseStyleTransfer:
    """Fig. 11: w from the style image (w-only inversion), then only noise maps fitted to the content.

    ``style_projection`` reuses an existing w-only inversion of the style image. Extra keyword
    arguments (``mse_weight``, ``lr``, ...) go to both :func:`hrinv_nb.project` calls.
    """
    if style_projection is None:
        style_projection = project(
            G,
            style_image,
            loss=loss,
            num_steps=num_steps,
            optimize_noise=False,
            seed=seed,
            progress=progress,
            **project_kwargs,
        )
    w_style = style_projection.w
    content = project(
        G,
        content_image,
        loss=loss,
        num_steps=num_steps,
        optimize_w=False,
        w_init=w_style,
        optimize_noise=True,
        seed=seed + 1,
        progress=progress,
        **project_kwargs,
    )
    assert torch.equal(content.w, w_style), "the style code must stay frozen"
    return NoiseStyleTransfer(
        w=content.w, noise=content.noise, image=content.image, style=style_projection, content=content
    )


def invert_nonsquare(
    G: Generator, target: torch.Tensor, *, loss: PerceptualLoss | str, **project_kwargs
) -> ProjectionResult:
    """Invert a [1,3,H,W] target of any shape with a Style-INR generator rendering exactly H x W.

    The loss runs at the full H x W (no crop, no resize). The optimised noise maps keep their native
    square sizes, except for a canvas Style-INR generator (``canvas=True``, see :mod:`hrinv_nb.inr`),
    whose layers run at the target's aspect: its maps (``result.noise``) have the canvas shapes,
    ``G.synthesis.noise_shapes((H, W))``, and ``G.synthesis(w, shape=(H, W), noise=result.noise)``
    re-renders the result. Keyword arguments go to :func:`hrinv_nb.project`.
    """
    if not isinstance(G.synthesis, INRSynthesisNetwork):
        raise TypeError("non-square inversion needs a Style-INR generator (hrinv_nb.inr.StyleINRGenerator)")
    assert target.ndim == 4 and target.shape[:2] == (1, 3), f"target must be [1,3,H,W], got {tuple(target.shape)}"
    return project(with_shape(G, tuple(target.shape[-2:])), target, loss=loss, **project_kwargs)
