"""Matplotlib helpers shared by the notebooks: image grids, close-up crops, before/after scatters.

Every function returns the ``Figure`` (never calls ``plt.show``), so a notebook can both display
it and hand it to :func:`hrinv_nb.notebook.report.save_figure`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch


def to_numpy_image(img: torch.Tensor) -> np.ndarray:
    """[3, H, W] or [1, 3, H, W] in [-1, 1] → float [H, W, 3] in [0, 1] for ``imshow``."""
    if img.ndim == 4:
        assert img.shape[0] == 1, f"expected one image, got a batch of {img.shape[0]}"
        img = img[0]
    assert img.ndim == 3 and img.shape[0] in (1, 3), f"expected [3,H,W], got {tuple(img.shape)}"
    arr = ((img.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr


_CHAR_EM = 0.62  # DejaVu Sans: a generous mean glyph width in em (wraps before a title outgrows its cell)
_LINE_EM = 1.3  # line height in em (matplotlib's linespacing 1.2, plus descent)


def _wrap(text: str, width_in: float, fontsize: float) -> str:
    """``text`` with each line broken at spaces to fit ``width_in`` inches at ``fontsize`` points."""
    chars = max(6, int(width_in * 72 / (_CHAR_EM * fontsize)))
    out: list[str] = []
    for line in text.split("\n"):
        out += textwrap.wrap(line, chars, break_long_words=False, break_on_hyphens=False) or [""]
    return "\n".join(out)


def _text_height(text: str, fontsize: float) -> float:
    """Height in inches of ``text`` (its lines) at ``fontsize`` points; 0 for an empty text."""
    return 0.0 if not text else (text.count("\n") + 1) * _LINE_EM * fontsize / 72


def image_grid(
    rows: Sequence[Sequence[torch.Tensor | None]],
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    cell_titles: Sequence[Sequence[str]] | None = None,
    scale: float = 1.6,
    title: str | None = None,
):
    """A grid of images (each [3,H,W] or [1,3,H,W] in [-1,1]; ``None`` leaves a cell empty).

    The layout is explicit, in inches: every row gets the height its tallest title needs above its images
    (titles are wrapped at spaces to the cell's width), the figure title its own band on top, and the row
    labels a left margin as wide as the longest. So no title can reach into the frame above it or spill
    over its neighbours, at any dpi (``tight_layout`` fitted them at one dpi with a hair's margin: at 72 dpi
    three-line titles touched the frame above)."""
    import matplotlib.pyplot as plt

    n_rows = len(rows)
    n_cols = max(len(r) for r in rows)
    assert n_rows > 0 and n_cols > 0, "empty grid"
    assert cell_titles is None or len(cell_titles) >= n_rows, "one list of cell titles per row"
    assert row_labels is None or len(row_labels) >= n_rows, "one label per row"
    first = next((im for r in rows for im in r if im is not None), None)
    aspect = 1.0 if first is None else first.shape[-1] / first.shape[-2]
    cell_w, cell_h = scale * aspect, scale
    gap_w, pad, margin = 0.12, 4.0, 0.08  # inches between columns, title pad (points), outer margin (inches)
    fs_cell, fs_col, fs_row, fs_sup = 7, 8, 8, 9

    def cell_title(i: int, j: int) -> tuple[str, float]:
        if cell_titles is not None and j < len(cell_titles[i]) and cell_titles[i][j]:
            return _wrap(cell_titles[i][j], cell_w + gap_w, fs_cell), fs_cell
        if i == 0 and col_labels is not None and j < len(col_labels):
            return _wrap(col_labels[j], cell_w + gap_w, fs_col), fs_col
        return "", fs_cell

    titles = [[cell_title(i, j) if j < len(rows[i]) and rows[i][j] is not None else ("", 0.0)
               for j in range(n_cols)] for i in range(n_rows)]  # fmt: skip
    band = [max((_text_height(t, f) for t, f in row), default=0.0) for row in titles]
    band = [b + pad / 72 if b else 0.0 for b in band]
    labels = [str(x) for x in row_labels] if row_labels is not None else []
    label_w = max((_CHAR_EM * fs_row / 72 * max(len(x) for x in lab.split("\n")) for lab in labels), default=0.0)
    left = margin + (label_w + 0.08 if labels else 0.0)
    width = left + n_cols * cell_w + (n_cols - 1) * gap_w + margin
    sup = _wrap(title, width - 2 * margin, fs_sup) if title else ""
    top = margin + (_text_height(sup, fs_sup) + 0.06 if sup else 0.0)
    row_gap = 0.1
    height = top + sum(band) + n_rows * cell_h + (n_rows - 1) * row_gap + margin
    fig = plt.figure(figsize=(width, height))
    y = height - top  # inches from the bottom: the top of the next row's title band
    for i, r in enumerate(rows):
        y -= band[i] + cell_h
        for j in range(n_cols):
            x = left + j * (cell_w + gap_w)
            ax = fig.add_axes((x / width, y / height, cell_w / width, cell_h / height))
            ax.set_xticks([])
            ax.set_yticks([])
            im = r[j] if j < len(r) else None
            if im is None:
                ax.axis("off")
                continue
            ax.imshow(
                to_numpy_image(im),
                interpolation="nearest",
                aspect="auto" if im.shape[-1] / im.shape[-2] == aspect else "equal",
            )
            text, fs = titles[i][j]
            if text:
                ax.set_title(text, fontsize=fs, pad=pad)
        if labels:  # beside the row even when its first cell is empty
            fig.text(
                (left - 0.08) / width, (y + cell_h / 2) / height, labels[i], fontsize=fs_row, ha="right", va="center"
            )
        y -= row_gap
    if sup:
        fig.suptitle(sup, fontsize=fs_sup, y=1 - margin / height, va="top")
    return fig


def crop(img: torch.Tensor, box: tuple[int, int, int, int], zoom: int = 4) -> torch.Tensor:
    """The ``box = (top, left, height, width)`` region of ``img`` [.., 3, H, W], enlarged ``zoom``× by pixel repetition."""
    top, left, h, w = box
    assert h > 0 and w > 0 and top >= 0 and left >= 0, box
    assert top + h <= img.shape[-2] and left + w <= img.shape[-1], f"box {box} outside image {tuple(img.shape[-2:])}"
    region = img[..., top : top + h, left : left + w]
    return region.repeat_interleave(zoom, dim=-2).repeat_interleave(zoom, dim=-1)


def residual_image(img: torch.Tensor, target: torch.Tensor, gain: float = 4.0) -> torch.Tensor:
    """|img − target| amplified ``gain``× and shown in [-1, 1] (black = no error)."""
    assert img.shape == target.shape, (img.shape, target.shape)
    return ((img - target).abs().mean(dim=-3, keepdim=True) * gain).clamp(0, 2).sub(1).expand_as(img)


def before_after_scatter(before: Sequence[float], after: Sequence[float], *, label: str, title: str | None = None):
    """Scatter of per-item distances before (x) vs after (y), with the diagonal and the fraction below it."""
    import matplotlib.pyplot as plt

    b = np.asarray(before, dtype=float)
    a = np.asarray(after, dtype=float)
    assert b.shape == a.shape and b.ndim == 1 and b.size > 0, (b.shape, a.shape)
    below = float(np.mean(a < b))
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.scatter(b, a, s=8, alpha=0.6)
    lo, hi = float(min(b.min(), a.min())), float(max(b.max(), a.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel(f"{label} before")
    ax.set_ylabel(f"{label} after")
    ax.set_title(title or f"{below:.0%} of {b.size} points below the diagonal", fontsize=9)
    fig.tight_layout()
    return fig


def bar_panel(ax, values: Mapping[str, float], *, ylabel: str, paper: Mapping[str, float] | None = None) -> None:
    """Bars of ``values`` on ``ax``; with ``paper``, the paper's numbers as hollow bars beside them."""
    names = list(values)
    x = np.arange(len(names))
    width = 0.4 if paper else 0.7
    ax.bar(x - (width / 2 if paper else 0), [values[n] for n in names], width, label="ours (toy world)")
    if paper:
        ax.bar(x + width / 2, [paper.get(n, np.nan) for n in names], width, fill=False, hatch="//", label="paper")
        ax.legend(fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(ylabel, fontsize=8)


def stack_figures(figures: Sequence, *, dpi: int = 110):
    """One figure holding ``figures`` stacked vertically (each rasterised at ``dpi``), for a single saved PNG.

    The part figures are closed once rasterised, so a notebook shows only the stacked figure.
    """
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    assert len(figures) > 0, "no figures to stack"
    parts = []
    for f in figures:
        buf = io.BytesIO()
        f.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        buf.seek(0)
        parts.append(Image.open(buf).convert("RGB"))
        plt.close(f)
    canvas = Image.new("RGB", (max(p.width for p in parts), sum(p.height for p in parts)), "white")
    top = 0
    for p in parts:
        canvas.paste(p, ((canvas.width - p.width) // 2, top))
        top += p.height
    fig = plt.figure(figsize=(canvas.width / dpi, canvas.height / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(np.asarray(canvas))
    ax.axis("off")
    return fig


def close_figure(obj: Any) -> None:
    """Close ``obj`` if it is a matplotlib figure (so the inline backend does not show it again); else nothing."""
    from matplotlib.figure import Figure

    if isinstance(obj, Figure):
        import matplotlib.pyplot as plt

        plt.close(obj)


def control_panel(controls: Any, render: Callable[..., Any], *, live: bool, cost: str = "") -> None:
    """One or more ipywidgets ``controls`` with one view under them that updates in place.

    ``render(*values)`` (one value per control, in order) returns the view: a matplotlib ``Figure``, or
    anything IPython can display. A caption says whether the view is ``live`` (recomputed on demand on
    each change; ``cost`` says how long that takes, e.g. "about 2 s on 2 cores") or precomputed (the run
    computed every view; a change only switches between them). Then the controls, then the view of their
    current values with a display id; a change replaces that same output (``DisplayHandle.update``), so
    exactly one view is ever shown. Figures are closed once displayed, so the inline backend does not show
    them a second time. Live sliders get ``continuous_update=False`` (one recomputation per release, not
    one per pixel dragged). No output is captured by a widget ``Output`` (such captures can hang under
    papermill/nbclient: nteract/papermill#723, jupyter/nbclient#312); under papermill and nbval the cell
    simply shows the default view. Returns None, so a cell ending with this call echoes nothing.
    """
    from IPython.display import DisplayHandle, Markdown, display

    ctrls = list(controls) if isinstance(controls, list | tuple) else [controls]
    assert ctrls, "no controls"
    if live:
        how = "**Live**: each change recomputes the view" + (f" ({cost})" if cost else "")
        for c in ctrls:
            if hasattr(c, "continuous_update"):
                c.continuous_update = False
    else:
        how = "**Precomputed**: the run computed every view; a change only switches between them"
    display(Markdown(how + ". The controls move once the notebook runs in a live kernel (Run All)."))
    if len(ctrls) == 1:
        display(ctrls[0])
    else:
        import ipywidgets as widgets

        display(widgets.HBox(ctrls))

    def view_now() -> Any:
        values = [c.value for c in ctrls]
        view = render(*values)
        assert view is not None, (
            f"render{tuple(values)!r} returned None: return the view (e.g. a Figure) instead of showing it"
        )
        return view

    view = view_now()
    handle = DisplayHandle()  # its own display id (outside IPython, display and update just print)
    handle.display(view)
    close_figure(view)

    def on_change(change: Mapping[str, Any]) -> None:
        new_view = view_now()
        handle.update(new_view)
        close_figure(new_view)

    for c in ctrls:
        c.observe(on_change, names="value")


def precomputed_slider(control: Any, render: Callable[[Any], Any]) -> None:
    """One control (slider, dropdown) over precomputed views: :func:`control_panel` with ``live=False``."""
    control_panel(control, render, live=False)


def live_controls(controls: Any, render: Callable[..., Any], *, cost: str) -> None:
    """Controls whose view is recomputed on each change: :func:`control_panel` with ``live=True``.

    ``cost`` says how long one recomputation takes (measured, e.g. "about 3 s on 2 cores").
    """
    control_panel(controls, render, live=True, cost=cost)
