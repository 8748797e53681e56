"""Style galleries (style codes of a target generator) and the package's one way to stylise contents
against them.

A gallery holds W+ codes of G_t (with their images): either sampled from G_t with their exact w
(as the authors' gallery of 1000 samples, seed 0, ψ = 1), or w-only projections of style images.

:func:`stylize_pairs` stylises N content codes against S style codes (all N·S pairs, or given
(content, style) index pairs from :func:`pair_indices` or a subset of them) with any mixing method of
Fig. 2, and runs LSO (Eq. 8) on the pairs in batches of independent problems. It lives here, not in
:mod:`hrinv_nb.blending` or :mod:`hrinv_nb.lso`, because it is the step above both: the mixing is
:func:`hrinv_nb.blending.mix` (the one method-name dispatcher) and the optimisation is
:func:`hrinv_nb.lso.lso`; the style side is a gallery's codes. :func:`stylize` is the same call for one
content code and a :class:`StyleGallery`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .blending import Gamma, mix
from .errors import HrinvError
from .losses import PerceptualLoss
from .lso import LSOResult, lso, split_result
from .networks import Generator
from .projector import project


@dataclass
class StyleGallery:
    """``w`` [N, num_ws, w_dim] style codes in G_t and their ``images`` [N, 3, H, W]."""

    w: torch.Tensor
    images: torch.Tensor
    source: str

    def __len__(self) -> int:
        return self.w.shape[0]


def gallery_from_samples(
    G_t: Generator, n: int, seed: int = 0, truncation_psi: float = 1.0, batch_size: int = 16
) -> StyleGallery:
    """``n`` samples of ``G_t`` with their exact W+ codes (z from ``torch.Generator(seed)``)."""
    z = torch.randn([n, G_t.z_dim], generator=torch.Generator().manual_seed(seed)).to(next(G_t.parameters()).device)
    ws, imgs = [], []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            w = G_t.mapping(z[i : i + batch_size], None, truncation_psi=truncation_psi)
            ws.append(w)
            imgs.append(G_t.synthesis(w, noise_mode="const"))
    return StyleGallery(torch.cat(ws), torch.cat(imgs), source=f"samples(seed={seed}, psi={truncation_psi})")


def gallery_from_images(
    G_t: Generator,
    images: torch.Tensor,
    *,
    loss: PerceptualLoss | str,
    num_steps: int = 1000,
    seed: int = 0,
    progress: bool = True,
    **project_kwargs,
) -> StyleGallery:
    """w-only projections (Eq. 5: no noise maps) of style ``images`` [N, 3, H, W] into ``G_t``."""
    ws, recon = [], []
    for i in tqdm(range(images.shape[0]), disable=not progress, desc="project styles"):
        res = project(
            G_t,
            images[i : i + 1],
            loss=loss,
            num_steps=num_steps,
            optimize_noise=False,
            seed=seed + i,
            progress=False,
            **project_kwargs,
        )
        ws.append(res.w)
        recon.append(res.image)
    return StyleGallery(torch.cat(ws), torch.cat(recon), source="projections")


def pair_indices(n_contents: int, n_styles: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(content index, style index) [N·S] each of every pair, content-major: pair p = c · n_styles + s."""
    if n_contents < 1 or n_styles < 1:
        raise HrinvError(f"need at least one content and one style, got {n_contents} and {n_styles}")
    return torch.arange(n_contents).repeat_interleave(n_styles), torch.arange(n_styles).repeat(n_contents)


@dataclass
class Stylized:
    """P stylised (content, style) pairs, in the order of ``content_index`` / ``style_index`` [P].

    ``images`` [P, 3, H, W] the method's output (after LSO when it ran); ``mixed`` the images before
    LSO; ``w`` the codes of ``images``; ``w_mixed`` the mixed codes (``w`` = ``w_mixed`` without LSO);
    ``schedule`` the γ per synthesis block; ``lso`` the LSO result of all P pairs (``None`` without
    LSO): ``offset``, ``distances`` (lists of P) and ``history`` (per step, summed over all pairs;
    ``lr`` is the schedule).
    """

    images: torch.Tensor
    mixed: torch.Tensor
    w: torch.Tensor
    w_mixed: torch.Tensor
    content_index: torch.Tensor
    style_index: torch.Tensor
    schedule: dict[int, float]
    lso: LSOResult | None = None

    def __len__(self) -> int:
        return int(self.content_index.numel())

    @property
    def lso_results(self) -> list[LSOResult]:
        """One single-pair :class:`LSOResult` per pair (empty without LSO)."""
        return split_result(self.lso) if self.lso is not None else []


def lso_initial_variables(n: int, w_dim: int, lso_kwargs: dict) -> torch.Tensor:
    """The initial LSO variables of ``n`` problems: what :func:`hrinv_nb.lso` draws for one batch of all ``n``.

    ``init_scale · randn`` from ``torch.Generator(seed)``, shaped [n, |rows|, w_dim] (or [n, K] with
    ``directions``), with ``seed``, ``init_scale``, ``rows`` and ``directions`` taken from ``lso_kwargs``
    or lso's defaults. Slicing these per batch makes every batching of the problems start alike.
    """
    defaults = {k: p.default for k, p in inspect.signature(lso).parameters.items()}
    kw = {**defaults, **lso_kwargs}
    directions = kw["directions"]
    if directions is not None:
        shape = [n, int(directions.shape[0])]
    else:
        shape = [n, len({int(r) for r in kw["rows"]}), w_dim]
    return float(kw["init_scale"]) * torch.randn(shape, generator=torch.Generator().manual_seed(int(kw["seed"])))


def _concat_lso(results: list[LSOResult]) -> LSOResult:
    """One :class:`LSOResult` from the results of consecutive batches (distances as lists, history summed)."""
    first = results[0]
    history = {
        k: ([sum(r.history[k][t] for r in results) for t in range(len(v))] if k != "lr" else list(v))
        for k, v in first.history.items()
    }
    distances = {
        k: [x for r in results for x in (r.distances[k] if isinstance(r.distances[k], list) else [r.distances[k]])]
        for k in first.distances
    }
    return LSOResult(
        w=torch.cat([r.w for r in results]),
        image=torch.cat([r.image for r in results]),
        mixed_image=torch.cat([r.mixed_image for r in results]),
        offset=torch.cat([r.offset for r in results]),
        rows=first.rows,
        history=history,
        distances=distances,
    )


def stylize_pairs(
    G_s: Generator,
    G_t: Generator,
    w_s: torch.Tensor,
    w_t: torch.Tensor,
    method: str,
    *,
    pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
    contents: torch.Tensor | None = None,
    gamma: Gamma | None = None,
    swap_res: int | None = None,
    run_lso: bool | None = None,
    lso_kwargs: dict | None = None,
    batch_size: int = 32,
    lso_batch_size: int | None = None,
    progress: bool = True,
) -> Stylized:
    """Stylise contents ``w_s`` [N, num_ws, w_dim] (codes in G_s) with styles ``w_t`` [S, num_ws, w_dim] (in G_t).

    ``method``: ``layer_swap`` | ``swap_g_and_w`` | ``lerp`` | ``lerp_lso`` (Fig. 2), mixed by
    :func:`hrinv_nb.blending.mix` with ``gamma`` / ``swap_res``; ``pairs`` = (content index, style
    index) [P] each (default: all N·S, :func:`pair_indices`). Without LSO the mixed codes are rendered
    ``batch_size`` at a time. ``lerp_lso`` (or ``run_lso=True`` after any method, as Fig. 7 does) runs
    :func:`hrinv_nb.lso` towards ``contents`` [N, 3, H, W] on ``lso_batch_size`` (default
    ``batch_size``) pairs at a time, with ``lso_kwargs``. The initial variables of all P problems are
    drawn at once (:func:`lso_initial_variables`), so a pair's result does not depend on the batching:
    with batches of all P it is exactly one ``lso`` call; smaller batches agree up to float summation
    order. (ε, with ``latent_noise_std`` > 0, is drawn per batch and so depends on the batching.)
    """
    num_ws, w_dim = G_s.num_ws, G_s.w_dim
    assert w_s.ndim == 3 and w_s.shape[1:] == (num_ws, w_dim), (
        f"w_s must be [N,{num_ws},{w_dim}], got {tuple(w_s.shape)}"
    )
    assert w_t.ndim == 3 and w_t.shape[1:] == (num_ws, w_dim), (
        f"w_t must be [S,{num_ws},{w_dim}], got {tuple(w_t.shape)}"
    )
    run_lso = (method == "lerp_lso") if run_lso is None else bool(run_lso)
    if method == "lerp_lso" and not run_lso:
        raise HrinvError("lerp_lso is lerp followed by LSO: use method='lerp' for the mix alone")
    lso_step = batch_size if lso_batch_size is None else lso_batch_size
    if batch_size < 1 or lso_step < 1:
        raise HrinvError(f"batch sizes must be >= 1, got {batch_size} and {lso_step}")
    ci, si = pairs if pairs is not None else pair_indices(w_s.shape[0], w_t.shape[0])
    ci, si = torch.as_tensor(ci).long().reshape(-1).cpu(), torch.as_tensor(si).long().reshape(-1).cpu()
    if ci.numel() == 0 or ci.shape != si.shape:
        raise HrinvError(
            f"pairs must be two equally long, non-empty index vectors, got {tuple(ci.shape)}, {tuple(si.shape)}"
        )
    if int(ci.min()) < 0 or int(ci.max()) >= w_s.shape[0] or int(si.min()) < 0 or int(si.max()) >= w_t.shape[0]:
        raise HrinvError(f"pair indices out of range: {w_s.shape[0]} contents, {w_t.shape[0]} styles")
    if run_lso:
        if contents is None:
            raise HrinvError("LSO needs the content images (its target)")
        assert contents.ndim == 4 and contents.shape[0] == w_s.shape[0] and contents.shape[1] == 3, (
            f"contents must be [{w_s.shape[0]},3,H,W], got {tuple(contents.shape)}"
        )
    m = mix(method, G_s, G_t, w_s[ci], w_t.to(w_s)[si], gamma=gamma, swap_res=swap_res)
    n = m.w_m.shape[0]
    if not run_lso:
        with torch.no_grad():
            mixed = torch.cat(
                [m.G_m.synthesis(m.w_m[i : i + batch_size], noise_mode="const") for i in range(0, n, batch_size)]
            )
        return Stylized(
            images=mixed, mixed=mixed, w=m.w_m, w_mixed=m.w_m, content_index=ci, style_index=si, schedule=m.gamma
        )
    kw = dict(lso_kwargs or {})
    if kw.pop("optimize_noise", False):
        raise HrinvError("optimize_noise changes the noise maps that all pairs share: run hrinv_nb.lso on one pair")
    kw.pop("progress", None)  # the bar is over the batches
    init = kw.pop("init", None)
    init = lso_initial_variables(n, w_dim, kw) if init is None else init
    assert init.shape[0] == n, f"init must hold one variable per pair ({n}), got {tuple(init.shape)}"
    results = []
    for i in tqdm(range(0, n, lso_step), disable=not progress, desc="LSO batches", leave=False):
        idx = slice(i, i + lso_step)
        results.append(lso(m.G_m, m.w_m[idx], contents[ci[idx]], init=init[idx], progress=False, **kw))
    res = _concat_lso(results)
    return Stylized(
        images=res.image,
        mixed=res.mixed_image,
        w=res.w,
        w_mixed=m.w_m,
        content_index=ci,
        style_index=si,
        schedule=m.gamma,
        lso=res,
    )


def stylize(
    G_s: Generator,
    G_t: Generator,
    w_s: torch.Tensor,
    gallery: StyleGallery,
    *,
    method: str = "lerp",
    gamma: Gamma | None = None,
    swap_res: int | None = None,
    content: torch.Tensor | None = None,
    lso_kwargs: dict | None = None,
    batch_size: int = 16,
    progress: bool = True,
    judge: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
    lso_batch_size: int = 1,
) -> Stylized:
    """Stylise one content code ``w_s`` [1, num_ws, w_dim] against every gallery entry: :func:`stylize_pairs`
    with N = 1 and ``content`` [1, 3, H, W] as the LSO target; ``judge(a, b)`` fills the LSO distances."""
    assert w_s.ndim == 3 and w_s.shape[0] == 1, f"w_s must be one code [1,num_ws,w_dim], got {tuple(w_s.shape)}"
    kw = {**(lso_kwargs or {}), **({"judge": judge} if judge is not None else {})}
    return stylize_pairs(
        G_s,
        G_t,
        w_s,
        gallery.w,
        method,
        contents=content,
        gamma=gamma,
        swap_res=swap_res,
        lso_kwargs=kw,
        batch_size=batch_size,
        lso_batch_size=lso_batch_size,
        progress=progress,
    )
