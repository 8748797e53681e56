"""Model and latent blending (Eq. 6, 7), layer swapping, and the four mixing methods of Fig. 2.

A γ schedule maps each synthesis block resolution r to γ_r: θ_m = θ_s + γ_r (θ_t − θ_s) for every
parameter and buffer of block ``b{r}`` of the synthesis network (the mapping network and any INR
head are never touched). W+ rows are paired with blocks the authors' way: rows (2j, 2j+1) belong to
block b(4·2^j). The rows a block's layers actually read are offset by one; the authors' pairing is
kept so that a γ schedule means on w what it means in their code (the shift is one row of a smooth
schedule, hence harmless).

:func:`mix` is the one dispatcher from a mixing-method name to a mixed generator and code; every
stylisation (:func:`hrinv_nb.gallery.stylize_pairs`) goes through it.

The paper's default, 0.2 for b4–b64 and 0.7 for b128–b1024 at 1024², is scaled to other
resolutions by block *index*: the first half of the blocks above b4 (b4 included) get the low γ.
At 64² that is 0.2 for b4–b16 and 0.7 for b32–b64.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .errors import HrinvError
from .networks import Generator

Gamma = float | Mapping[int, float]
MIXING_METHODS = ("layer_swap", "swap_g_and_w", "lerp", "lerp_lso")


def block_resolutions(G: Generator) -> list[int]:
    """Synthesis block resolutions of ``G`` (4, 8, ..., img_resolution)."""
    return list(G.synthesis.block_resolutions)


def paper_gamma(G: Generator, low: float = 0.2, high: float = 0.7) -> dict[int, float]:
    """The paper's γ schedule (0.2 for b4–b64, 0.7 above at 1024²), scaled to ``G``'s block count."""
    res = block_resolutions(G)
    split = 2 + (int(math.log2(res[-1])) - 2) / 2  # 6 (b64) at 1024², 4 (b16) at 64²
    return {r: (low if math.log2(r) <= split else high) for r in res}


def gamma_schedule(G: Generator, gamma: Gamma | None) -> dict[int, float]:
    """Normalise ``gamma`` (a float, a dict resolution -> γ, or None for the paper's) to every block."""
    res = block_resolutions(G)
    if gamma is None:
        return paper_gamma(G)
    if isinstance(gamma, (int, float)):
        return {r: float(gamma) for r in res}
    unknown = sorted(set(gamma) - set(res))
    if unknown:
        raise ValueError(f"gamma has resolutions {unknown} that are not blocks of this generator ({res})")
    return {r: float(gamma.get(r, 0.0)) for r in res}


def _check_compatible(G_s: Generator, G_t: Generator) -> None:
    a, b = G_s.synthesis.state_dict(), G_t.synthesis.state_dict()
    if a.keys() != b.keys():
        diff = sorted(set(a) ^ set(b))[:8]
        raise ValueError(f"generators have different synthesis parameters, e.g. {diff}")
    bad = [k for k in a if a[k].shape != b[k].shape]
    if bad:
        raise ValueError(f"generators differ in shape at {bad[:8]}")


def blend_generators(G_s: Generator, G_t: Generator, gamma: Gamma | None = None) -> Generator:
    """G_m: a deep copy of ``G_s`` whose synthesis block b{r} is θ_s + γ_r (θ_t − θ_s) (Eq. 6).

    Parameters and buffers of the synthesis blocks are blended; the mapping and any ``inr_net``
    head come from ``G_s``. Neither input is modified.
    """
    _check_compatible(G_s, G_t)
    schedule = gamma_schedule(G_s, gamma)
    G_m = copy.deepcopy(G_s)
    target = G_t.synthesis.state_dict()
    with torch.no_grad():
        for name, tensor in G_m.synthesis.state_dict(keep_vars=True).items():
            block = name.split(".", 1)[0]
            if not block.startswith("b") or not block[1:].isdigit():
                continue  # e.g. an INR head: never blended
            g = schedule[int(block[1:])]
            if not tensor.is_floating_point() or g == 0.0:
                continue
            tensor.copy_(torch.lerp(tensor, target[name].to(tensor), g))  # exact at γ = 0 and γ = 1
    return G_m


def row_blocks(num_ws: int, resolutions: list[int]) -> list[int]:
    """Block resolution owning each W+ row under the authors' pairing (2j, 2j+1) -> b(4·2^j)."""
    owners = [resolutions[min(i // 2, len(resolutions) - 1)] for i in range(num_ws)]
    return owners


def blend_latents(
    w_s: torch.Tensor, w_t: torch.Tensor, gamma: Gamma | None = None, resolutions: list[int] | None = None
) -> torch.Tensor:
    """w_m = w_s + γ_r (w_t − w_s), row pairs (2j, 2j+1) taking block b(4·2^j)'s γ (Eq. 7).

    ``w_s``, ``w_t``: [B, num_ws, w_dim]. A dict ``gamma`` needs ``resolutions`` only when its
    generator is not the usual one with num_ws = 2·log2(R) − 2 rows.
    """
    assert w_s.ndim == 3 and w_s.shape[1:] == w_t.shape[1:], f"w_s {tuple(w_s.shape)} vs w_t {tuple(w_t.shape)}"
    num_ws = w_s.shape[1]
    if resolutions is None:
        resolutions = [2**i for i in range(2, num_ws // 2 + 2)]
    if gamma is None or isinstance(gamma, Mapping):
        if gamma is None:
            split = 2 + (math.log2(resolutions[-1]) - 2) / 2
            sched = {r: (0.2 if math.log2(r) <= split else 0.7) for r in resolutions}
        else:
            sched = {r: float(gamma.get(r, 0.0)) for r in resolutions}
        g = torch.tensor([sched[r] for r in row_blocks(num_ws, resolutions)], dtype=w_s.dtype, device=w_s.device)
        g = g.view(1, num_ws, 1).expand_as(w_s)
    else:
        g = torch.full_like(w_s, float(gamma))
    return torch.lerp(w_s, w_t.to(w_s), g)  # exact at γ = 0 and γ = 1


def default_swap_res(G: Generator) -> int:
    """The first block that the paper's schedule gives the high γ (b128 at 1024², b32 at 64²)."""
    return min(r for r, g in paper_gamma(G).items() if g > 0.5)


def swap_schedule(
    G: Generator, swap_res: int, blend_width: float | None = None, high_from_target: bool = True
) -> dict[int, float]:
    """Pinkney's resolution-dependent layer swap as a γ schedule (γ ∈ {0, 1}, or sigmoid-smoothed).

    With ``high_from_target`` (HRInversion, Fig. 2a) blocks at ``swap_res`` and above come from G_t;
    otherwise (Toonify) the *low* blocks do. ``blend_width`` (in blocks) smooths the step with
    y = sigmoid((p − p_swap) / blend_width).
    """
    res = block_resolutions(G)
    if swap_res not in res:
        raise ValueError(f"swap_res {swap_res} is not a block resolution of this generator ({res})")
    p_swap = math.log2(swap_res)
    out = {}
    for r in res:
        p = math.log2(r)
        if blend_width is None:
            y = 1.0 if p >= p_swap else 0.0
        else:
            y = 1.0 / (1.0 + math.exp(-(p - p_swap) / blend_width))
        out[r] = y if high_from_target else 1.0 - y
    return out


def layer_swap(
    G_s: Generator, G_t: Generator, swap_res: int, blend_width: float | None = None, high_from_target: bool = True
) -> Generator:
    """Layer swapping [Pinkney]: :func:`blend_generators` with :func:`swap_schedule`."""
    return blend_generators(G_s, G_t, swap_schedule(G_s, swap_res, blend_width, high_from_target))


@dataclass
class Mix:
    """A mixed generator and code (Fig. 2): render with ``G_m.synthesis(w_m, noise_mode='const')``."""

    method: str
    G_m: Generator
    w_m: torch.Tensor
    gamma: dict[int, float]


def method_schedule(
    G: Generator, method: str, gamma: Gamma | None = None, swap_res: int | None = None
) -> dict[int, float]:
    """The γ schedule of a Fig. 2 ``method``: a 0/1 swap at ``swap_res`` (default :func:`default_swap_res`)
    for ``layer_swap`` and ``swap_g_and_w``, :func:`gamma_schedule` of ``gamma`` (default: the paper's)
    for ``lerp`` and ``lerp_lso``. Raises :class:`~hrinv_nb.errors.HrinvError` for an unknown name."""
    if method not in MIXING_METHODS:
        raise HrinvError(f"unknown mixing method {method!r}; expected one of {MIXING_METHODS}")
    if method in ("layer_swap", "swap_g_and_w"):
        return swap_schedule(G, swap_res if swap_res is not None else default_swap_res(G))
    return gamma_schedule(G, gamma)


def mixed_generator(
    G_s: Generator, G_t: Generator, method: str, gamma: Gamma | None = None, swap_res: int | None = None
) -> tuple[Generator, dict[int, float]]:
    """The mixed generator G_m of ``method`` (Eq. 6 with :func:`method_schedule`) and its schedule.

    G_m does not depend on the codes, so one G_m serves every (content, style) pair of a method.
    """
    sched = method_schedule(G_s, method, gamma, swap_res)
    return blend_generators(G_s, G_t, sched), sched


def mix(
    method: str,
    G_s: Generator,
    G_t: Generator,
    w_s: torch.Tensor,
    w_t: torch.Tensor | None = None,
    gamma: Gamma | None = None,
    swap_res: int | None = None,
) -> Mix:
    """The mixing methods of Fig. 2 by name, for codes ``w_s`` (and ``w_t``) [B, num_ws, w_dim].

    * ``layer_swap`` (a): high blocks of G_s replaced by G_t's (γ ∈ {0,1}), w = w_s (``w_t`` unused);
    * ``swap_g_and_w`` (b): the same γ ∈ {0,1} on G and on w (w_t from a style gallery);
    * ``lerp`` and ``lerp_lso`` (c, d): γ-interpolation of G and w (LSO is then run by
      :func:`hrinv_nb.lso.lso` on the returned mix; :func:`hrinv_nb.gallery.stylize_pairs` does both).
    """
    G_m, sched = mixed_generator(G_s, G_t, method, gamma, swap_res)
    if method == "layer_swap":
        w_m = w_s.clone()
    else:
        if w_t is None:
            raise HrinvError(f"method {method!r} needs the style code w_t")
        w_m = blend_latents(w_s, w_t, sched, resolutions=block_resolutions(G_s))
    return Mix(method=method, G_m=G_m, w_m=w_m, gamma=sched)
