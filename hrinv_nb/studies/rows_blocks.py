"""Which W+ rows drive which synthesis layers: the meaning of LSO's "early codes".

The paper optimises "latent codes of early layers (e.g. w_opt^i, i = 0 … 4)" of the 18 W+ rows of its
1024² StyleGAN2. What those rows *are* is fixed by the synthesis network, not by their count: a
StyleGAN2 (skip architecture) block b4 holds ``conv1`` and ``torgb``; every later block b(r) holds
``conv0`` (the upsampling conv), ``conv1`` and ``torgb``. The rows are consumed in order, one per conv;
a block's ``torgb`` reads the row *after* its last conv, which is also the next block's ``conv0`` row
(:meth:`hrinv_nb.networks.SynthesisNetwork.block_ws`). So row 0 drives b4.conv1, row 1 b4.torgb and
b8.conv0, row 2 b8.conv1, …, and rows 0–4 drive the convs of b4, b8 and b16 at *every* resolution
(1024²: 18 rows, b4–b1024; the toy world's 128²: 12 rows, b4–b128).

:func:`row_layers` reads the mapping off a generator; :func:`architecture_row_layers` computes it from
the resolution alone (no weights needed, e.g. for the paper's 1024² generator); :func:`rows_for_blocks`
gives the rows whose convs lie in a set of blocks, and :func:`plot_row_layers` draws the mapping.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from ..networks import Generator

RowLayers = list[list[str]]
"""Per W+ row, the layers it modulates, as ``"b<res>.<layer>"`` names in forward order."""


def architecture_row_layers(resolution: int) -> RowLayers:
    """Row → layers of a StyleGAN2 (skip architecture) synthesis network of ``resolution``² (a power of 2 ≥ 4).

    b4 has ``conv1`` and ``torgb``; every later block ``conv0``, ``conv1`` and ``torgb``. Rows advance by
    one per conv; a ``torgb`` reads the row after its block's last conv. num_ws = 2·log2(R) − 2.
    """
    assert resolution >= 4 and resolution & (resolution - 1) == 0, f"resolution must be a power of 2 ≥ 4: {resolution}"
    blocks = [2**i for i in range(2, int(math.log2(resolution)) + 1)]
    num_ws = 2 * len(blocks)  # one conv in b4, two in every other block, plus the last torgb
    rows: RowLayers = [[] for _ in range(num_ws)]
    idx = 0
    for r in blocks:
        convs = ["conv1"] if r == 4 else ["conv0", "conv1"]
        for k, name in enumerate(convs):
            rows[idx + k].append(f"b{r}.{name}")
        rows[idx + len(convs)].append(f"b{r}.torgb")
        idx += len(convs)
    assert idx + 1 == num_ws, (idx, num_ws)
    return rows


def row_layers(G: Generator) -> RowLayers:
    """Row → layers read off ``G``'s synthesis blocks (their ``conv0`` / ``conv1`` / ``torgb`` modules and
    ``num_conv`` / ``num_torgb``), in the order :meth:`~hrinv_nb.networks.SynthesisNetwork.block_ws` slices ``ws``."""
    synth = G.synthesis
    rows: RowLayers = [[] for _ in range(synth.num_ws)]
    idx = 0
    for r in synth.block_resolutions:
        block = getattr(synth, f"b{r}")
        names = [n for n in ("conv0", "conv1") if hasattr(block, n)]
        assert len(names) == block.num_conv, (r, names, block.num_conv)
        names += ["torgb"] * block.num_torgb
        for k, name in enumerate(names):
            rows[idx + k].append(f"b{r}.{name}")
        idx += block.num_conv
    assert all(rows), "every W+ row must drive at least one layer"
    return rows


def blocks_of_rows(rows: Iterable[int], mapping: RowLayers, *, convs_only: bool = False) -> list[int]:
    """The block resolutions that ``rows`` modulate (sorted); ``convs_only`` ignores ``torgb`` layers."""
    out = set()
    for i in rows:
        assert 0 <= i < len(mapping), f"row {i} outside 0..{len(mapping) - 1}"
        for layer in mapping[i]:
            block, name = layer.split(".")
            if not (convs_only and name == "torgb"):
                out.add(int(block[1:]))
    return sorted(out)


def rows_for_blocks(blocks: Iterable[int], mapping: RowLayers) -> tuple[int, ...]:
    """The rows that modulate a conv of one of ``blocks`` (e.g. b4, b8, b16 -> rows 0–4 at any resolution)."""
    wanted = {int(b) for b in blocks}
    rows = tuple(i for i, layers in enumerate(mapping) if any(_conv_block(x) in wanted for x in layers))
    assert rows, f"no row drives a conv of blocks {sorted(wanted)}"
    return rows


def _conv_block(layer: str) -> int | None:
    block, name = layer.split(".")
    return None if name == "torgb" else int(block[1:])


def describe_rows(rows: Sequence[int], mapping: RowLayers) -> str:
    """One line: the rows and the layers they drive, e.g. ``rows 0–4 of 18: b4.conv1, b4.torgb, …``."""
    layers = [x for i in rows for x in mapping[i]]
    span = f"{rows[0]}–{rows[-1]}" if list(rows) == list(range(rows[0], rows[-1] + 1)) else ",".join(map(str, rows))
    return f"rows {span} of {len(mapping)}: " + ", ".join(layers)


def plot_row_layers(ax: Any, mapping: RowLayers, selected: Sequence[int] = (), *, title: str = "") -> None:
    """Draw the row → layer mapping on a matplotlib ``ax``: one column per W+ row, one line per layer
    (conv0 / conv1 / torgb of each block, bottom = b4); ``selected`` rows are filled dark."""
    layers = [x for row in mapping for x in row]
    order = list(dict.fromkeys(sorted(layers, key=_layer_key)))
    y = {name: k for k, name in enumerate(order)}
    chosen = set(selected)
    for i, row in enumerate(mapping):
        for layer in row:
            colour = "#1f3b73" if i in chosen else "#c9d3e6"
            ax.add_patch(_rect(i - 0.45, y[layer] - 0.4, 0.9, 0.8, colour))
    ax.set_xlim(-0.6, len(mapping) - 0.4)
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.set_xticks(range(len(mapping)))
    ax.set_xticklabels([str(i) for i in range(len(mapping))], fontsize=6)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels(order, fontsize=5)
    ax.set_xlabel("W+ row", fontsize=7)
    ax.tick_params(length=0)
    if title:
        ax.set_title(title, fontsize=8)


def _layer_key(layer: str) -> tuple[int, int]:
    block, name = layer.split(".")
    return int(block[1:]), {"conv0": 0, "conv1": 1, "torgb": 2}[name]


def _rect(x: float, y: float, w: float, h: float, colour: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, facecolor=colour, edgecolor="none")
