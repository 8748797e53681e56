"""One protocol for the cross-domain notebooks (07–13), which invert contents and stylise them.

Every such notebook takes its projection and LSO step counts, its content and style seeds and its
λ_reg from here, so that "150 steps" or "content seed 1000" means the same run, and the same face,
in every notebook (``tests/test_protocol.py`` checks the notebooks' parameter defaults against these).
A notebook that needs another count says so in its parameters cell and its JSON record.

The step counts are the paper's LSO count (50) and a tenth of its projection count: on the toy world's
128² G_s a projection step costs about 42 ms per image and an LSO step about 38 ms per pair on one
CPU thread (measured 2026-11-28, batch 8), so 100 projection steps for 10 contents and 50 LSO steps
for 40 pairs fit a notebook's 5-minute budget.
"""

from __future__ import annotations

from ..lso import resolution_reg_weight

PROJECTION_STEPS = 100
"""w-only projection steps per content image (the paper: 1000)."""

LSO_STEPS = 50
"""LSO steps per (content, style) pair (the paper's 50)."""

CONTENT_SEED = 1000
"""Seed of the held-out content renders: content ``i`` of seed 1000 is the same face in every notebook
(:func:`hrinv_nb.toy.render.render_from_seed` draws the i-th face independently of how many are drawn)."""

STYLE_SEED = 7
"""Seed of the style gallery samples of G_t (:func:`hrinv_nb.gallery.gallery_from_samples`)."""

TOY_REG_WEIGHT = 1e-5
"""λ_reg of LSO on the toy world, measured rather than assumed (2026-11-28): lerp + LSO of 6 contents × 2
G_t samples per style, 100 projection / 50 LSO steps, λ_reg in {0, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 1.6e-4}.
The rule, fixed before the sweep: the largest mean over the three styles of (identity restored − style
changed), the two shares of :mod:`hrinv_nb.studies.lso_calibration`. Means per λ_reg: −0.14, 0.003, 0.042,
**0.048**, 0.035, 0.012, 0.009. The paper's 0.01 at 1024² rescaled by pixel count, 0.01·(128/1024)² ≈ 1.6e-4,
all but pins LSO on the toy VGG (offset norm 0.23 against 2.2 at 1e-5; identity restored ≤ 0.02), since the
toy d_h features are on another scale than the real VGG16's. Notebook 09 re-runs the sweep and shows it."""


def default_reg_weight(world: str, resolution: int) -> float:
    """λ_reg when a notebook's ``reg_weight`` parameter is negative.

    ``world`` is :func:`hrinv_nb.notebook.assets.world_of`'s answer: on ``"the toy world"`` the
    calibrated :data:`TOY_REG_WEIGHT`; on real weights the paper's 0.01 scaled by ``(resolution/1024)²``
    (d_h is a sum over feature elements, so it shrinks with the pixel count; factor 1 at 1024²).
    """
    assert resolution > 0, resolution
    return TOY_REG_WEIGHT if world == "the toy world" else resolution_reg_weight(resolution)
