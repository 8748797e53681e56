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
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .blending import Gamma, mix
from .errors import HrinvError
from .losses import PerceptualLoss
from .lso import LSOResult, concat_results, lso, split_result
from .memory import default_batch_size, resolve_batch_size
from .networks import Generator
from .projector import project
from .stream import ImageSource, StreamFileError, image_rows, iter_chunks, npz_writer, open_store


@dataclass
class StyleGallery:
    """``w`` [N, num_ws, w_dim] style codes in G_t and their ``images`` [N, 3, H, W]."""

    w: torch.Tensor
    images: torch.Tensor
    source: str

    def __len__(self) -> int:
        return self.w.shape[0]


def style_codes(
    G_t: Generator, n: int, seed: int = 0, truncation_psi: float = 1.0, batch_size: int = 16
) -> torch.Tensor:
    """The W+ codes [n, num_ws, w_dim] of :func:`gallery_from_samples` without rendering their images."""
    z = torch.randn([n, G_t.z_dim], generator=torch.Generator().manual_seed(seed)).to(next(G_t.parameters()).device)
    with torch.no_grad():
        w = torch.cat(
            [G_t.mapping(z[i : i + batch_size], None, truncation_psi=truncation_psi) for i in range(0, n, batch_size)]
        )
    assert w.shape == (n, G_t.num_ws, G_t.w_dim), tuple(w.shape)
    return w


def gallery_from_samples(
    G_t: Generator, n: int, seed: int = 0, truncation_psi: float = 1.0, batch_size: int = 16
) -> StyleGallery:
    """``n`` samples of ``G_t`` with their exact W+ codes (z from ``torch.Generator(seed)``, :func:`style_codes`)."""
    w = style_codes(G_t, n, seed, truncation_psi, batch_size)
    with torch.no_grad():
        imgs = [G_t.synthesis(w[i : i + batch_size], noise_mode="const") for i in range(0, n, batch_size)]
    return StyleGallery(w, torch.cat(imgs), source=f"samples(seed={seed}, psi={truncation_psi})")


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


def stylize_pairs(
    G_s: Generator,
    G_t: Generator,
    w_s: torch.Tensor,
    w_t: torch.Tensor,
    method: str,
    *,
    pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
    contents: torch.Tensor | ImageSource | None = None,
    gamma: Gamma | None = None,
    swap_res: int | None = None,
    run_lso: bool | None = None,
    lso_kwargs: dict | None = None,
    batch_size: int | None = None,
    lso_batch_size: int | None = None,
    progress: bool = True,
    out_dir: str | os.PathLike | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    image_format: str = "npz",
) -> Stylized | StreamedStylized:
    """Stylise contents ``w_s`` [N, num_ws, w_dim] (codes in G_s) with styles ``w_t`` [S, num_ws, w_dim] (in G_t).

    ``method``: ``layer_swap`` | ``swap_g_and_w`` | ``lerp`` | ``lerp_lso`` (Fig. 2), mixed by
    :func:`hrinv_nb.blending.mix` with ``gamma`` / ``swap_res``; ``pairs`` = (content index, style
    index) [P] each (default: all N·S, :func:`pair_indices`). Without LSO the mixed codes are rendered
    ``batch_size`` at a time. ``lerp_lso`` (or ``run_lso=True`` after any method, as Fig. 7 does) runs
    :func:`hrinv_nb.lso` towards ``contents`` [N, 3, H, W] on ``lso_batch_size`` pairs at a time, with
    ``lso_kwargs``; ``contents`` may also be anything sliced like such a tensor (``contents[a:b]``, e.g.
    :class:`hrinv_nb.stream.ImageFiles`): only the current batch's content images are then in memory. Batch sizes ``None`` (or 0): what fits the device's free memory
    (:func:`hrinv_nb.memory.default_batch_size`, kinds ``render`` and ``lso``). The initial variables of
    all P problems are drawn at once (:func:`lso_initial_variables`), so a pair's result does not depend
    on the batching: with batches of all P it is exactly one ``lso`` call; smaller batches agree up to
    float summation order. (ε, with ``latent_noise_std`` > 0, is drawn per batch and so depends on the batching.)

    ``out_dir``: stream instead of keeping the images: every batch's pairs are written to that folder as
    they are done (``items/<p>_pair.npz``: ``image``, ``mixed``, ``w``, ``w_mixed``, the last two only
    after LSO since they equal the first two without it; ``image_format='png'`` writes the images as
    8-bit ``items/<p>_image.png`` / ``_mixed.png`` instead, about 1/8 of the disk; a metrics line per
    pair with its indices and LSO distances), and a rerun with the same folder and parameters skips the
    finished batches (:func:`hrinv_nb.stream.open_store`; other parameters raise
    :class:`hrinv_nb.stream.ResumeMismatchError`). Returns a :class:`StreamedStylized` then;
    ``on_chunk(start, stop)`` is called after each batch computed.
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
    for name, value in (("batch_size", batch_size), ("lso_batch_size", lso_batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise HrinvError(f"{name} must be a positive integer (or None/0 for the memory default), got {value!r}")
    ci, si = pairs if pairs is not None else pair_indices(w_s.shape[0], w_t.shape[0])
    ci, si = torch.as_tensor(ci).long().reshape(-1).cpu(), torch.as_tensor(si).long().reshape(-1).cpu()
    if ci.numel() == 0 or ci.shape != si.shape:
        raise HrinvError(
            f"pairs must be two equally long, non-empty index vectors, got {tuple(ci.shape)}, {tuple(si.shape)}"
        )
    if int(ci.min()) < 0 or int(ci.max()) >= w_s.shape[0] or int(si.min()) < 0 or int(si.max()) >= w_t.shape[0]:
        raise HrinvError(f"pair indices out of range: {w_s.shape[0]} contents, {w_t.shape[0]} styles")
    if image_format not in ("npz", "png"):
        raise HrinvError(f"image_format must be 'npz' or 'png', got {image_format!r}")
    resolution = (G_s.img_resolution, G_s.img_resolution)
    if run_lso:
        if contents is None:
            raise HrinvError("LSO needs the content images (its target)")
        first = contents[0:1]
        assert len(contents) == w_s.shape[0] and first.ndim == 4 and first.shape[:2] == (1, 3), (
            f"contents must be [{w_s.shape[0]},3,H,W] (or sliced like it), got {len(contents)} of {tuple(first.shape)}"
        )
        resolution = tuple(first.shape[-2:])
    device = w_s.device
    kind = "lso" if run_lso else "render"
    explicit = (lso_batch_size or batch_size) if run_lso else batch_size
    m = mix(method, G_s, G_t, w_s[ci], w_t.to(w_s)[si], gamma=gamma, swap_res=swap_res)
    n = m.w_m.shape[0]
    kw = dict(lso_kwargs or {})
    init = None
    if run_lso:
        if kw.pop("optimize_noise", False):
            raise HrinvError("optimize_noise changes the noise maps that all pairs share: run hrinv_nb.lso on one pair")
        if "batch_size" in kw:
            raise HrinvError("give the LSO batch size as lso_batch_size, not in lso_kwargs")
        kw.pop("progress", None)  # the bar is over the batches
        init = kw.pop("init", None)
        init = lso_initial_variables(n, w_dim, kw) if init is None else init
        assert init.shape[0] == n, f"init must hold one variable per pair ({n}), got {tuple(init.shape)}"

    def run(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor, LSOResult | None]:
        """Pairs ``start .. stop-1``: (images, w, LSO result or None)."""
        idx = slice(start, stop)
        if not run_lso:
            with torch.no_grad():
                return m.G_m.synthesis(m.w_m[idx], noise_mode="const"), m.w_m[idx], None
        target = image_rows(contents, ci[idx]).to(device)
        res = lso(m.G_m, m.w_m[idx], target, init=init[idx], progress=False, batch_size=stop - start, **kw)
        return res.image, res.w, res

    if out_dir is not None:
        params = {
            "G_s": G_s, "G_t": G_t, "w_s": w_s, "w_t": w_t, "method": method, "content_index": ci,
            "style_index": si, "contents": contents if run_lso else None, "gamma": gamma, "swap_res": swap_res,
            "run_lso": run_lso, "lso_kwargs": kw, "init": init, "device": str(device), "image_format": image_format,
        }  # fmt: skip
        return _stream_pairs(
            out_dir, params, n, explicit or None, lambda: default_batch_size(kind, resolution, device),
            run, m, ci, si, progress, on_chunk, image_format,
        )  # fmt: skip
    step = resolve_batch_size(explicit or None, kind, resolution, device)
    if not run_lso:
        mixed = torch.cat([run(i, min(i + step, n))[0] for i in range(0, n, step)])
        return Stylized(
            images=mixed, mixed=mixed, w=m.w_m, w_mixed=m.w_m, content_index=ci, style_index=si, schedule=m.gamma
        )
    results = []
    for i in tqdm(range(0, n, step), disable=not progress, desc="LSO batches", leave=False):
        results.append(run(i, min(i + step, n))[2])
    res = concat_results(results)
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


@dataclass
class StreamedStylized:
    """Stylised pairs streamed to ``folder`` by :func:`stylize_pairs` (``out_dir``): the indices, the
    schedule and per-pair ``records`` in memory; images and codes read from disk (:meth:`pair`,
    :meth:`image`, :meth:`iter_images`, :meth:`load_w`). ``computed``: the batches this call ran (not the
    resumed ones)."""

    folder: Path
    content_index: torch.Tensor
    style_index: torch.Tensor
    schedule: dict[int, float]
    records: list[dict[str, Any]]
    batch_size: int
    computed: list[tuple[int, int]]

    def __len__(self) -> int:
        return int(self.content_index.numel())

    def pair(self, index: int) -> dict[str, torch.Tensor]:
        """Pair ``index``'s ``image``, ``mixed`` ([1, 3, H, W]), ``w`` and ``w_mixed`` ([1, num_ws, w_dim])."""
        return load_pair(self.folder, self.records[index])

    def image(self, index: int, key: str = "image") -> torch.Tensor:
        """Pair ``index``'s ``image`` or ``mixed`` [1, 3, H, W] alone (the codes are not read)."""
        return load_pair(self.folder, self.records[index], keys=(key,))[key]

    def iter_images(
        self, batch: int = 16, key: str = "image", indices: Sequence[int] | None = None
    ) -> Iterator[torch.Tensor]:
        """``key`` (``image`` or ``mixed``) of every pair (or of ``indices``) in order, ``batch`` at a time
        ([b, 3, H, W] each): at most ``batch`` images are in memory."""
        assert key in ("image", "mixed"), key
        assert batch >= 1, batch
        chosen = list(range(len(self))) if indices is None else [int(i) for i in indices]
        for start in range(0, len(chosen), batch):
            yield torch.cat([self.image(i, key) for i in chosen[start : start + batch]])

    def load_w(self, key: str = "w") -> torch.Tensor:
        """``w`` or ``w_mixed`` of every pair [P, num_ws, w_dim]."""
        assert key in ("w", "w_mixed"), key
        return torch.cat([load_pair(self.folder, r, keys=(key,))[key] for r in self.records])


_PAIR_KEYS = ("image", "mixed", "w", "w_mixed")
_SAME_WITHOUT_LSO = {"mixed": "image", "w_mixed": "w"}  # keys a pair without LSO does not store


def load_pair(
    folder: str | os.PathLike, record: dict[str, Any], keys: Sequence[str] = _PAIR_KEYS
) -> dict[str, torch.Tensor]:
    """The ``keys`` of a streamed pair (its metrics ``record`` names the files in ``folder``), read without pickle.

    Codes come from the pair's ``.npz``; images from it too, or from 8-bit PNGs (``image_format='png'``).
    Without LSO ``mixed`` is ``image`` and ``w_mixed`` is ``w`` (stored once).
    """
    from .images import load_image

    folder = Path(folder)
    unknown = set(keys) - set(_PAIR_KEYS)
    assert not unknown, f"unknown pair keys {sorted(unknown)}"
    path = folder / record["file"]
    single = record.get("lso") is False  # (folders written before the "lso" flag stored all four keys)
    stored = {k: _SAME_WITHOUT_LSO.get(k, k) if single else k for k in keys}
    arrays: dict[str, torch.Tensor] = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key, source in stored.items():
                if source in record.get("png", {}):
                    png = folder / record["png"][source]
                    arrays[key] = load_image(png, crop=False, min_short_side=1)
                else:
                    arrays[key] = torch.from_numpy(np.array(data[source]))
    except (OSError, KeyError, ValueError) as err:
        raise StreamFileError(f"{path}: not a streamed pair ({err})") from err
    for key, value in arrays.items():
        if value.ndim not in (3, 4) or value.shape[0] != 1 or not value.is_floating_point():
            raise StreamFileError(
                f"{path}: {key} must be a float [1, ...] array, got {value.dtype} {tuple(value.shape)}"
            )
    return arrays


def _png_writer(image: torch.Tensor) -> Callable[[str], None]:
    """A writer of one image [1, 3, H, W] in [-1, 1] as an 8-bit PNG for :func:`hrinv_nb.files.atomic_write`."""
    from PIL import Image

    from .images import to_uint8

    pil = Image.fromarray(to_uint8(image))
    return lambda tmp: pil.save(tmp, format="PNG")


def _stream_pairs(
    out_dir: str | os.PathLike,
    params: dict[str, Any],
    n: int,
    batch_size: int | None,
    default: Callable[[], int],
    run: Callable[[int, int], tuple[torch.Tensor, torch.Tensor, LSOResult | None]],
    m: Any,
    ci: torch.Tensor,
    si: torch.Tensor,
    progress: bool,
    on_chunk: Callable[[int, int], None] | None,
    image_format: str = "npz",
) -> StreamedStylized:
    """Run the batches of :func:`stylize_pairs` that ``out_dir`` does not hold yet, writing each as it is done."""
    store = open_store(out_dir, "stylize_pairs", params, n, batch_size, default)
    computed = []
    chunks = list(iter_chunks(store))
    for start, stop, record in tqdm(chunks, disable=not progress, desc="stylise batches", leave=False):
        if record is not None:
            continue
        images, w, res = run(start, stop)
        files, items = [], []
        for j in range(stop - start):
            p = start + j
            path = store.item_path(p, "pair.npz")
            arrays = {"w": w[j : j + 1].float()}
            pictures = {"image": images[j : j + 1].float()}
            if res is not None:
                arrays["w_mixed"] = m.w_m[p : p + 1].float()
                pictures["mixed"] = res.mixed_image[j : j + 1].float()
            item: dict[str, Any] = {
                "index": p,
                "content": int(ci[p]),
                "style": int(si[p]),
                "file": str(path.relative_to(store.folder)),
                "lso": res is not None,
            }
            if image_format == "png":
                item["png"] = {}
                for key, picture in pictures.items():
                    png = store.item_path(p, f"{key}.png")
                    files.append((png, _png_writer(picture)))
                    item["png"][key] = str(png.relative_to(store.folder))
            else:
                arrays.update(pictures)
            files.append((path, npz_writer(arrays)))
            if res is not None:
                item["offset_norm"] = float(res.offset[j].flatten().norm())
                for key, values in res.distances.items():
                    item[key] = float(values[j] if isinstance(values, list) else values)
            items.append(item)
        store.write_chunk(start, stop, files, items)
        computed.append((start, stop))
        if on_chunk is not None:
            on_chunk(start, stop)
    store.finish()
    return StreamedStylized(store.folder, ci, si, m.gamma, store.records(), store.batch_size, computed)


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
    batch_size: int | None = None,
    progress: bool = True,
    judge: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
    lso_batch_size: int | None = None,
) -> Stylized:
    """Stylise one content code ``w_s`` [1, num_ws, w_dim] against every gallery entry: :func:`stylize_pairs`
    with N = 1 and ``content`` [1, 3, H, W] as the LSO target; ``judge(a, b)`` fills the LSO distances.
    Batch sizes ``None``: the memory defaults of :func:`stylize_pairs`."""
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
